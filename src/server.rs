//! Assembling a running switchyard: the controller, the proxy listeners and
//! the admin API, started together and stopped together.
//!
//! `main` and the end-to-end tests call the same [`start`] and [`run`]; tests
//! bind `127.0.0.1:0` and read the real addresses back.

use crate::admin::{self, AdminState};
use crate::config::{Config, PoolName};
use crate::control::{Actor, Command, CommandError, Controller, ControllerHandle, Shared};
use crate::proxy::listener::{http_builder, serve, ListenerCtx};
use crate::proxy::listener_tls::{self, CertStore, TlsListener};
use crate::routing::PoolRuntime;
use crate::telemetry::metrics::Metrics;
use crate::upstream::health::{CheckSettings, HealthChecks, HealthConfigError, HealthStop};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] admin::auth::AuthError),
    #[error(transparent)]
    Token(#[from] crate::config::token::TokenError),
    #[error("cannot build the routing table: {0}")]
    Controller(#[from] CommandError),
    #[error(transparent)]
    Health(#[from] HealthConfigError),
    #[cfg(feature = "fleet")]
    #[error("fleet: {0}")]
    Fleet(#[from] crate::control::fleet::FleetError),
    #[error("TLS listener {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: listener_tls::TlsError,
    },
}

/// A running proxy. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    pub proxy_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub controller: ControllerHandle,
    stop_watch: CancellationToken,
    /// The certificate of each TLS listener, in listener order.
    pub certs: Vec<Arc<CertStore>>,
    stop_accepting: CancellationToken,
    stop_admin: CancellationToken,
    tunnels: TaskTracker,
    tunnels_cancel: CancellationToken,
    listeners: JoinSet<()>,
    admin_task: tokio::task::JoinHandle<()>,
    health: HealthStop,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Start everything for `cfg`; `config_path` is what reloads read.
pub async fn start(cfg: Config, config_path: Option<PathBuf>) -> Result<Server, StartError> {
    let token = crate::config::token::load_token(cfg.admin.token_file.as_deref())?;
    if token.is_none() && !cfg.admin.bind.ip().is_loopback() {
        return Err(admin::auth::AuthError::TokenRequired(cfg.admin.bind).into());
    }
    let metrics = Arc::new(Metrics::new());
    let window = cfg.rollback.window;
    let runtimes =
        PoolName::ALL.map(|p| Arc::new(PoolRuntime::new(p, window, metrics.pool(p).clone())));
    let client_header = cfg.timeouts.client_header;
    let request_limits = crate::proxy::limits::RequestLimits::from_config(&cfg.limits);
    let connections = crate::proxy::limits::ConnectionLimit::with_gauges(
        cfg.limits.max_connections,
        metrics.register_client_connections(),
    );
    let listener_cfgs = cfg.listeners.clone();
    let admin_bind = cfg.admin.bind;

    // Bind everything before starting anything, so a busy port fails cleanly.
    // Certificates too: a TLS listener without a usable one does not start.
    let mut bound = Vec::new();
    for l in &listener_cfgs {
        let listener = bind(l.bind).await?;
        let cert = match &l.tls {
            Some(files) => {
                Some(
                    CertStore::load(l.bind, files).map_err(|source| StartError::Tls {
                        addr: l.bind,
                        source,
                    })?,
                )
            }
            None => None,
        };
        bound.push((listener, l.clone(), cert));
    }
    let admin_listener = bind(admin_bind).await?;

    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: admin_bind,
            source,
        })?;

    let checks = CheckSettings::from_config(&cfg.health_check)?;
    #[cfg(feature = "fleet")]
    let fleet = match &cfg.fleet {
        Some(_) => Some(crate::control::membership::connect(&cfg, admin_addr, &metrics).await?),
        None => None,
    };
    #[cfg(feature = "fleet")]
    let (mut controller, handle, shared) = match &fleet {
        Some(link) => {
            let store =
                crate::control::store::etcd::EtcdStore::new(link.clone(), cfg.state_file.clone());
            Controller::with_store(cfg, config_path.clone(), runtimes, metrics, Box::new(store))
                .await?
        }
        None => Controller::new(cfg, config_path.clone(), runtimes, metrics).await?,
    };
    #[cfg(not(feature = "fleet"))]
    let (mut controller, handle, shared) =
        Controller::new(cfg, config_path.clone(), runtimes, metrics).await?;
    #[cfg(feature = "fleet")]
    let fence = fleet.as_ref().map(|_| {
        let fence = Arc::new(crate::routing::WriteFence::default());
        controller.set_write_fence(fence.clone());
        fence
    });
    let mut health = HealthChecks::new(
        checks.clone(),
        Arc::new(handle.clone()),
        shared.metrics.clone(),
        shared.table.clone(),
    );
    health.reconcile(shared.table.load().endpoints(), &checks);
    let health_stop = health.stopper();
    controller.set_health_checks(health);
    let token = Arc::new(arc_swap::ArcSwapOption::from(token.map(Arc::new)));
    controller.set_admin_token(token.clone());
    tokio::spawn(controller.run());
    let stop_watch = CancellationToken::new();
    if let Some(path) = config_path {
        if let Err(e) =
            crate::control::watch_config(path, handle.clone(), shared.clone(), stop_watch.clone())
        {
            tracing::error!(error = %e, "config file is not watched; reload with SIGHUP or the API");
        }
    }

    let stop_accepting = CancellationToken::new();
    let stop_admin = CancellationToken::new();
    spawn_idle_sweep(shared.table.clone(), stop_admin.clone());
    let tunnels = TaskTracker::new();
    let tunnels_cancel = CancellationToken::new();
    let builder = Arc::new(http_builder(client_header, &request_limits));
    let mut listeners = JoinSet::new();
    let mut proxy_addrs = Vec::new();
    let mut certs = Vec::new();
    for (listener, lc, cert) in bound {
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: lc.bind,
            source,
        })?;
        proxy_addrs.push(addr);
        // The TLS handshake is bounded like the request head (nginx does the same).
        let tls = match cert {
            Some(store) => {
                let tls = TlsListener::new(&store, client_header)
                    .map_err(|source| StartError::Tls { addr, source })?;
                listener_tls::cert_watch::spawn(store.clone(), stop_accepting.clone());
                certs.push(store);
                Some(tls)
            }
            None => None,
        };
        let ctx = Arc::new(ListenerCtx {
            table: shared.table.clone(),
            writes: shared.writes.clone(),
            tls: lc.tls.is_some(),
            preview: lc.pool,
            tunnels: tunnels.clone(),
            tunnels_cancel: tunnels_cancel.clone(),
            connections: connections.clone(),
            limits: request_limits,
        });
        listeners.spawn(serve(
            listener,
            ctx,
            builder.clone(),
            tls,
            stop_accepting.clone(),
            {
                let shared = shared.clone();
                move || shared.config.load().drain.timeout
            },
        ));
    }

    #[cfg(feature = "fleet")]
    if let (Some(link), Some(fence)) = (fleet, fence) {
        crate::control::membership::spawn(
            link,
            shared.clone(),
            fence,
            admin_addr,
            stop_admin.clone(),
        )?;
    }
    let history = Arc::new(crate::telemetry::history::History::default());
    admin::history::spawn(shared.clone(), history.clone(), stop_admin.clone());
    let router = admin::router(AdminState {
        shared: shared.clone(),
        controller: handle.clone(),
        token,
        certs: certs.clone().into(),
        streams: admin::stream::Streams::new(stop_admin.clone()),
        history,
    });
    let admin_stop = stop_admin.clone();
    // The admin API's heads are bounded like the proxy's (a restart applies a new value).
    let admin_task = tokio::spawn(admin::serve::serve(
        admin_listener,
        router,
        client_header,
        admin_stop,
    ));
    tracing::info!(?proxy_addrs, %admin_addr, "switchyard is serving");
    Ok(Server {
        proxy_addrs,
        admin_addr,
        shared,
        controller: handle,
        stop_watch,
        certs,
        stop_accepting,
        stop_admin,
        tunnels,
        tunnels_cancel,
        listeners,
        admin_task,
        health: health_stop,
    })
}

impl Server {
    /// SPEC.md section 6: readiness off, stop accepting, let in-flight work
    /// finish (up to the drain timeout), close upgraded connections, stop.
    pub async fn shutdown(mut self) {
        self.shared.set_shutting_down();
        // A switch holding writes aborts now: they go to the old pool. One
        // whose replica is being promoted flips once that has ended: the
        // answer waits for it, at most as long as a held write may wait.
        let bound = self.shared.config.load().cutover.hold_bound() + Duration::from_secs(1);
        let aborted = self.controller.request(|reply| Command::Shutdown { reply });
        match tokio::time::timeout(bound, aborted).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "controller gone before shutdown"),
            Err(_) => tracing::warn!("the switch in flight did not end within {bound:?}; stopping"),
        }
        self.stop_watch.cancel();
        // The drain timeout in force now: a reload may have changed it.
        let deadline = tokio::time::Instant::now() + self.shared.config.load().drain.timeout;
        self.stop_accepting.cancel();
        while self.listeners.join_next().await.is_some() {}
        self.tunnels.close();
        if tokio::time::timeout_at(deadline, self.tunnels.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout: closing upgraded connections");
            self.tunnels_cancel.cancel();
            self.tunnels.wait().await;
        }
        self.health.stop().await;
        self.stop_admin.cancel();
        if let Err(e) = self.admin_task.await {
            tracing::error!(error = %e, "admin task failed");
        }
        tracing::info!("switchyard stopped");
    }
}

/// Run until `shutdown` resolves, then drain and stop (mini-redis style).
pub async fn run(
    cfg: Config,
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let shutdown = arm(shutdown).await;
    // Before listening, like the shutdown signal: SIGHUP's default action
    // ends the process, and a reload sent as soon as the admin API answers
    // (`systemctl reload` right after a start) must find the handler there.
    let hup = hangup();
    let server = start(cfg, config_path).await?;
    let hup = reload_on_sighup(hup, server.controller.clone(), server.certs.clone());
    shutdown.await;
    hup.abort();
    tracing::info!("shutting down: draining in-flight requests");
    server.shutdown().await;
    Ok(())
}

/// `shutdown`, polled once now. A signal future (`cli::shutdown_signal`)
/// installs its handlers at its first poll; until then a SIGTERM kills the
/// process outright (no drain; the demo's temporary CA is left behind). So
/// arm it before listening, not after announcing readiness.
pub async fn arm(shutdown: impl Future<Output = ()>) -> impl Future<Output = ()> {
    let mut shutdown = Box::pin(shutdown);
    let done =
        std::future::poll_fn(|cx| std::task::Poll::Ready(shutdown.as_mut().poll(cx).is_ready()))
            .await;
    async move {
        if !done {
            shutdown.await;
        }
    }
}

/// How often idle upstream connections are checked for age
/// (`timeouts.upstream_idle`) and for having been closed by the upstream.
pub const IDLE_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Close pooled connections idle for `timeouts.upstream_idle`, and those the
/// upstream closed, without waiting for a request to find them: otherwise
/// the surplus a burst opened stays open (and its sockets in CLOSE_WAIT once
/// the upstream gives up on them) until traffic comes back.
fn spawn_idle_sweep(
    table: Arc<arc_swap::ArcSwap<crate::routing::RoutingTable>>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(IDLE_SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let table = table.load();
            let now = crate::clock::now_ms();
            for ep in table.endpoints() {
                ep.sweep_idle(now, table.settings.upstream_idle_ms);
            }
        }
    });
}

/// SIGHUP, watched from now on (`None` when it cannot be: said once).
#[cfg(unix)]
type HangUp = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type HangUp = ();

fn hangup() -> HangUp {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "cannot watch SIGHUP"))
            .ok()
    }
}

/// SIGHUP reloads the config file (SPEC.md section 1).
/// SIGHUP also re-reads every TLS listener's certificate files.
fn reload_on_sighup(
    hup: HangUp,
    controller: ControllerHandle,
    certs: Vec<Arc<CertStore>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let Some(mut hup) = hup else { return };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                controller.notify(Command::Reload {
                    actor: Actor::Signal,
                    if_generation: None,
                    reply: None,
                });
                for c in &certs {
                    if let Err(e) = c.reload() {
                        tracing::error!(error = %e, "certificate not reloaded; the old one keeps serving");
                    }
                }
            }
        }
        #[cfg(not(unix))]
        drop((hup, controller, certs));
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn arming_runs_the_shutdown_future_to_its_first_wait_at_once() {
        let armed_flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let flag = armed_flag.clone();
        let shutdown = super::arm(async move {
            flag.store(true, Ordering::SeqCst); // where handlers are installed
            let _sent = rx.await;
        })
        .await;
        assert!(armed_flag.load(Ordering::SeqCst), "not polled before start");
        tx.send(()).unwrap();
        shutdown.await;
    }

    #[tokio::test]
    async fn a_shutdown_that_ended_at_its_first_poll_is_not_polled_again() {
        // An async block polled after its end panics.
        let shutdown = super::arm(async {}).await;
        shutdown.await;
    }
}
