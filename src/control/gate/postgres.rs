//! The PostgreSQL gate (SPEC.md section 13): replication caught up, read
//! from log sequence numbers, then optionally the replica promoted.
//!
//! The connections to both servers are opened when the hold starts
//! ([`Connecting`]) and closed when the gate ends (dropped). Once the
//! writes in flight have drained, the primary's `pg_current_wal_lsn()` is
//! what the replica must replay; its `pg_last_wal_replay_lsn()` is polled
//! every `poll_interval` until it is at most `max_lag_bytes` behind. Every
//! query is bounded by `gate.timeout` and by the deadline; any failure
//! before promotion ends the gate at once, with its reason.

use super::lsn::Lsn;
use super::password::{self, Target};
use super::{DatabaseFigures, GateEvent, GateOutcome, LagPoint};
use crate::config::gate::conninfo::{self, TlsMode};
use crate::config::gate::PROMOTE_WAIT;
use crate::config::{GateConfig, PostgresGate};
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::config::Host;
use tokio_postgres::Client;

/// Why the gate could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{role}: bad connection string: {message}")]
    Config { role: Role, message: String },
    #[error("{role}: cannot read sslrootcert {}: {source}", path.display())]
    RootCert {
        role: Role,
        path: PathBuf,
        #[source]
        source: crate::config::tls_files::TlsFileError,
    },
    #[error("{role}: {}", conninfo::with_source(.source))]
    Postgres {
        role: Role,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{role}: no answer within {}", humantime::format_duration(*.after))]
    Timeout { role: Role, after: Duration },
    #[error("{role}: {message}")]
    Unexpected { role: Role, message: String },
}

/// Which server a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

/// Both servers, connected.
pub struct Session {
    primary: Client,
    replica: Client,
    connections: [JoinHandle<()>; 2],
}

impl Drop for Session {
    fn drop(&mut self) {
        for c in &self.connections {
            c.abort();
        }
    }
}

/// The connections being opened while the writes drain.
pub struct Connecting(Option<JoinHandle<Result<Session, GateError>>>);

impl Connecting {
    pub fn start(pg: PostgresGate, timeout: Duration) -> Connecting {
        Connecting(Some(tokio::spawn(async move {
            // Two tasks: a SCRAM login is CPU work, each may take a core.
            let (a, b) = (pg.clone(), pg.clone());
            let p = tokio::spawn(async move { open(Role::Primary, &a.primary, &a, timeout).await });
            let r = tokio::spawn(async move { open(Role::Replica, &b.replica, &b, timeout).await });
            let joined = |j: Result<_, tokio::task::JoinError>, role| {
                j.unwrap_or_else(|e| {
                    Err(GateError::Unexpected {
                        role,
                        message: format!("connecting failed: {e}"),
                    })
                })
            };
            let (p, r) = tokio::join!(p, r);
            let (p, r) = (joined(p, Role::Primary), joined(r, Role::Replica));
            let ((primary, pc), (replica, rc)) = (p?, r?);
            Ok(Session {
                primary,
                replica,
                connections: [pc, rc],
            })
        })))
    }

    async fn finish(mut self) -> Result<Session, String> {
        let Some(handle) = self.0.take() else {
            return Err("the connections were already taken".into());
        };
        match handle.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("connecting failed: {e}")),
        }
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// Connect to one server; the connection's I/O runs in a task of its own.
async fn open(
    role: Role,
    conn: &str,
    pg: &PostgresGate,
    timeout: Duration,
) -> Result<(Client, JoinHandle<()>), GateError> {
    let bad = |message: String| GateError::Config { role, message };
    let info = conninfo::parse(conn).map_err(bad)?;
    let mut cfg: tokio_postgres::Config = info.rest.parse().map_err(|e| bad(format!("{e}")))?;
    if cfg.get_user().is_none() {
        let user = ["PGUSER", "USER"]
            .iter()
            .find_map(|v| std::env::var(v).ok());
        cfg.user(user.ok_or_else(|| bad("no user=... and neither $PGUSER nor $USER".into()))?);
    }
    if cfg.get_password().is_none() {
        if let Some(pw) = find_password(&cfg, pg, info.passfile.as_deref()) {
            cfg.password(pw);
        }
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("switchyard gate");
    }
    cfg.connect_timeout(timeout);
    let connected = async {
        match info.tls {
            TlsMode::Off => {
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                Ok((client, spawn_connection(role, conn)))
            }
            TlsMode::Verified => {
                let tls = tls_config(role, info.root_cert)?;
                let (client, conn) = cfg.connect(tls).await?;
                Ok((client, spawn_connection(role, conn)))
            }
        }
    };
    let connected = async {
        connected.await.map_err(|e: Either| match e {
            Either::Pg(source) => GateError::Postgres { role, source },
            Either::Gate(g) => g,
        })
    };
    tokio::time::timeout(timeout, connected)
        .await
        .map_err(|_| GateError::Timeout {
            role,
            after: timeout,
        })?
}

/// The two ways connecting fails, before they get their role.
enum Either {
    Pg(tokio_postgres::Error),
    Gate(GateError),
}

impl From<tokio_postgres::Error> for Either {
    fn from(e: tokio_postgres::Error) -> Self {
        Either::Pg(e)
    }
}

impl From<GateError> for Either {
    fn from(e: GateError) -> Self {
        Either::Gate(e)
    }
}

fn spawn_connection<S, T>(role: Role, conn: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%role, error = %e, "gate connection closed");
        }
    })
}

/// TLS that verifies the server: `sslrootcert`, else the system's roots.
fn tls_config(
    role: Role,
    root_cert: Option<PathBuf>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, GateError> {
    let roots = match root_cert {
        Some(path) => crate::config::tls_files::ca_roots(&path)
            .map_err(|source| GateError::RootCert { role, path, source })?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        }
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GateError::Unexpected {
            role,
            message: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `$PGPASSWORD`, then the password files, as libpq looks.
fn find_password(
    cfg: &tokio_postgres::Config,
    pg: &PostgresGate,
    passfile: Option<&std::path::Path>,
) -> Option<String> {
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        return Some(pw);
    }
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let user = cfg.get_user().unwrap_or_default();
    let target = Target {
        host: &host,
        port: cfg.get_ports().first().copied().unwrap_or(5432),
        database: cfg.get_dbname().unwrap_or(user),
        user,
    };
    let files = password::candidate_files(pg.password_file.as_deref(), passfile);
    password::from_files(&files, &target)
}

/// One query's first column as text, bounded by `timeout`.
async fn text(
    role: Role,
    client: &Client,
    sql: &str,
    timeout: Duration,
) -> Result<Option<String>, GateError> {
    let row = tokio::time::timeout(timeout, client.query_one(sql, &[]))
        .await
        .map_err(|_| GateError::Timeout {
            role,
            after: timeout,
        })?
        .map_err(|source| GateError::Postgres { role, source })?;
    row.try_get::<_, Option<String>>(0)
        .map_err(|source| GateError::Postgres { role, source })
}

async fn lsn(
    role: Role,
    client: &Client,
    sql: &str,
    timeout: Duration,
) -> Result<Option<Lsn>, GateError> {
    text(role, client, sql, timeout)
        .await?
        .map(|s| {
            s.parse()
                .map_err(|message| GateError::Unexpected { role, message })
        })
        .transpose()
}

/// Whether the server is in recovery (a standby).
async fn in_recovery(role: Role, client: &Client, timeout: Duration) -> Result<bool, GateError> {
    let t = text(role, client, "SELECT pg_is_in_recovery()::text", timeout).await?;
    Ok(t.as_deref() == Some("true"))
}

fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// Run the gate: see the module's doc.
pub(super) async fn pass(
    gate: &GateConfig,
    connecting: Connecting,
    started: Instant,
    deadline: Instant,
    events: impl Fn(GateEvent) + Send,
) -> GateOutcome {
    let Some(pg) = gate.postgres.as_ref() else {
        return failed(DatabaseFigures::default(), "no postgres gate".into());
    };
    let mut f = DatabaseFigures {
        state: "connecting",
        max_lag_bytes: pg.max_lag_bytes,
        promote: pg.promote,
        ..DatabaseFigures::default()
    };
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let session = match tokio::time::timeout(remaining(), connecting.finish()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed(f, e),
        Err(_) => return timed_out(f, "connecting".into()),
    };
    f.connected_ms = Some(ms_since(started));
    let bound = || gate.timeout.min(remaining());
    // What the replica must replay: everything the drained writes wrote.
    let target = match lsn(
        Role::Primary,
        &session.primary,
        "SELECT pg_current_wal_lsn()::text",
        bound(),
    )
    .await
    {
        Ok(Some(l)) => l,
        Ok(None) => return failed(f, "primary: pg_current_wal_lsn() is null".into()),
        Err(e) => return failed(f, e.to_string()),
    };
    f.primary_lsn = Some(target);
    f.state = "waiting";
    let mut tick = tokio::time::interval(gate.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if remaining().is_zero() {
            let answer = lag_answer(&f);
            return timed_out(f, answer);
        }
        let sql = "SELECT pg_last_wal_replay_lsn()::text";
        let replay = match lsn(Role::Replica, &session.replica, sql, bound()).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                return failed(
                    f,
                    "replica: pg_last_wal_replay_lsn() is null: it is not a streaming replica (or was promoted already)".into(),
                )
            }
            Err(e) => return failed(f, e.to_string()),
        };
        let lag = replay.behind(target);
        f.replay_lsn = Some(replay);
        f.lag_bytes = Some(lag);
        f.push_lag(LagPoint {
            ms: ms_since(started),
            bytes: lag,
        });
        if lag <= pg.max_lag_bytes {
            f.caught_up_ms = Some(ms_since(started));
            f.state = "caught_up";
            events(GateEvent::Figures(Box::new(f.clone())));
            break;
        }
        events(GateEvent::Figures(Box::new(f.clone())));
    }
    if !pg.promote {
        return passed(f);
    }
    // A standby that is not in recovery any more would be promoted twice.
    match in_recovery(Role::Replica, &session.replica, bound()).await {
        Ok(true) => {}
        Ok(false) => {
            return failed(
                f,
                "replica: not in recovery any more; not promoting it".into(),
            )
        }
        Err(e) => return failed(f, e.to_string()),
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    events(GateEvent::Promote(tx));
    if rx.await != Ok(true) {
        // Past `max_hold`, shutting down, or taken over by a rollback: the
        // coordinator knows which; not an error of the database's.
        f.error = Some("not promoted: the switch ended or ran out of time first".into());
        let answer = lag_answer(&f);
        return timed_out(f, answer);
    }
    promote(gate, &session.replica, f, events).await
}

/// Promote the replica and wait until it leaves recovery, at most
/// [`PROMOTE_WAIT`]. From here on the gate passes whatever happens: the
/// switch must complete once promotion has begun.
async fn promote(
    gate: &GateConfig,
    replica: &Client,
    mut f: DatabaseFigures,
    events: impl Fn(GateEvent),
) -> GateOutcome {
    f.state = "promoting";
    events(GateEvent::Figures(Box::new(f.clone())));
    let began = Instant::now();
    let until = began + PROMOTE_WAIT;
    let bound = || {
        gate.timeout
            .max(Duration::from_secs(1))
            .min(until.saturating_duration_since(Instant::now()))
    };
    if let Err(e) = text(
        Role::Replica,
        replica,
        "SELECT pg_promote(false)::text",
        bound(),
    )
    .await
    {
        f.error = Some(e.to_string());
    }
    let mut tick = tokio::time::interval(gate.poll_interval.min(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        tick.tick().await;
        match in_recovery(Role::Replica, replica, bound()).await {
            Ok(false) => {
                f.promoted = true;
                f.error = None;
                break;
            }
            Ok(true) => {}
            Err(e) => f.error = Some(e.to_string()),
        }
    }
    f.promote_ms = Some(began.elapsed().as_millis() as u64);
    f.state = if f.promoted { "promoted" } else { "failed" };
    if !f.promoted && f.error.is_none() {
        f.error = Some(format!(
            "replica: still in recovery {} after pg_promote",
            humantime::format_duration(PROMOTE_WAIT)
        ));
    }
    let mut out = passed(f);
    out.promoted = true;
    out
}

/// `replica at 0/3000060, 1024 bytes behind 0/3000460`.
fn lag_answer(f: &DatabaseFigures) -> String {
    match (f.replay_lsn, f.lag_bytes, f.primary_lsn) {
        (Some(r), Some(lag), Some(p)) => format!("replica at {r}, {lag} bytes behind {p}"),
        _ => "no position read from the replica".into(),
    }
}

fn passed(f: DatabaseFigures) -> GateOutcome {
    GateOutcome {
        passed: true,
        answer: Some(lag_answer(&f)),
        error: None,
        database: Some(f),
        promoted: false,
    }
}

fn failed(mut f: DatabaseFigures, error: String) -> GateOutcome {
    f.state = "failed";
    f.error = Some(error.clone());
    GateOutcome {
        passed: false,
        answer: Some(lag_answer(&f)),
        error: Some(error),
        database: Some(f),
        promoted: false,
    }
}

/// The deadline came first: not an error of the gate's, `max_hold`'s.
fn timed_out(mut f: DatabaseFigures, answer: String) -> GateOutcome {
    f.state = "failed";
    GateOutcome {
        passed: false,
        answer: Some(answer),
        error: None,
        database: Some(f),
        promoted: false,
    }
}
