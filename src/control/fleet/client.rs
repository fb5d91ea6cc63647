//! Connecting to etcd, and the deadline around every call.
//!
//! Owns the client options that suit etcd 3.4: gRPC keep-alive pings no
//! more often than its `--grpc-keepalive-min-time` (5 s) allows and only
//! while a stream is open (it refuses pings without one), `require_leader`
//! on every request so a member cut off from the etcd quorum fails fast
//! instead of waiting, and a token refresh for user authentication. It
//! must not retry: a caller that wants another try makes it.

use super::contact::Contact;
use super::keys::Keys;
use super::FleetError;
use crate::config::fleet::FleetConfig;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// TLS to etcd, read from the files of `fleet.etcd.tls`.
#[derive(Clone)]
pub struct TlsPem {
    /// The CA that signed etcd's certificate (PEM).
    pub ca: Vec<u8>,
    /// This member's certificate and key (PEM), for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Everything the layer needs: the config's values and the timings that
/// are not in the config.
#[derive(Clone)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    /// Ends with `/`.
    pub prefix: String,
    pub tls: Option<TlsPem>,
    /// User name and password.
    pub user: Option<(String, String)>,
    /// The member lease's TTL (whole seconds, at least 2).
    pub member_ttl: Duration,
    /// `write_fence`, when the member fences writes on the lease's
    /// keep-alives: they must come more often than it (see
    /// [`EtcdSettings::renew_every`]).
    pub write_fence: Option<Duration>,
    /// The deadline of each call to etcd.
    pub request_timeout: Duration,
    /// The deadline of a whole commit, resolving an ambiguous result included.
    pub commit_deadline: Duration,
    /// How often the watcher asks etcd for progress when the stream is quiet.
    pub watchdog_interval: Duration,
    /// A watch stream silent this long is dead.
    pub watchdog_deadline: Duration,
    /// gRPC keep-alive ping interval (its timeout is half of it); at least
    /// 5 s, etcd 3.4's `--grpc-keepalive-min-time`.
    pub grpc_keep_alive: Duration,
    /// Back-off of the background tasks between two failed tries.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("tls", &self.tls.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("member_ttl", &self.member_ttl)
            .field("write_fence", &self.write_fence)
            .field("request_timeout", &self.request_timeout)
            .field("commit_deadline", &self.commit_deadline)
            .field("watchdog_interval", &self.watchdog_interval)
            .field("watchdog_deadline", &self.watchdog_deadline)
            .finish_non_exhaustive()
    }
}

impl EtcdSettings {
    /// Plain-text etcd at `endpoints`, keys under `prefix`, default timings.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> EtcdSettings {
        EtcdSettings {
            endpoints,
            prefix: prefix.into(),
            tls: None,
            user: None,
            member_ttl: Duration::from_secs(5),
            write_fence: None,
            request_timeout: Duration::from_secs(2),
            commit_deadline: Duration::from_secs(5),
            watchdog_interval: Duration::from_secs(1),
            watchdog_deadline: Duration::from_secs(3),
            grpc_keep_alive: Duration::from_secs(10),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
        }
    }

    /// How often the lease keeper renews the lease: a third of
    /// `member_ttl`, and of `write_fence` when it is shorter. The fence
    /// rises `write_fence` after the send time of the last acknowledged
    /// keep-alive, so renewing less often than that would fence writes now
    /// and then while in touch (write_fence 1s, member_ttl 5s: 0.7 s of
    /// every 1.7 s); a third lets two keep-alives be late first. Not below
    /// [`MIN_RENEW`].
    pub fn renew_every(&self) -> Duration {
        let every = self.member_ttl / 3;
        self.write_fence
            .map_or(every, |fence| every.min(fence / 3))
            .max(MIN_RENEW)
    }

    /// The settings of a validated `fleet` section, reading its TLS and
    /// password files.
    pub fn from_config(cfg: &FleetConfig) -> Result<EtcdSettings, FleetError> {
        let mut s = EtcdSettings::new(cfg.etcd.endpoints.clone(), cfg.etcd.prefix.clone());
        s.member_ttl = cfg.member_ttl;
        s.write_fence = Some(cfg.write_fence);
        if let Some(tls) = &cfg.etcd.tls {
            let identity = match (&tls.cert, &tls.key) {
                (Some(c), Some(k)) => Some((read("TLS certificate", c)?, read("TLS key", k)?)),
                _ => None,
            };
            s.tls = Some(TlsPem {
                ca: read("TLS CA", &tls.ca)?,
                identity,
            });
        }
        if let Some(auth) = &cfg.etcd.auth {
            let password = read("password file", &auth.password_file)?;
            let password = String::from_utf8_lossy(&password).trim().to_string();
            s.user = Some((auth.user.clone(), password));
        }
        Ok(s)
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, FleetError> {
    std::fs::read(path).map_err(|source| FleetError::File {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The shortest pause between two renewals of the lease.
pub const MIN_RENEW: Duration = Duration::from_millis(50);

/// A connection to the fleet's etcd. Cheap to clone; clones share the
/// connection and the [`Contact`].
#[derive(Clone)]
pub struct Etcd {
    pub(super) client: Client,
    pub(super) settings: Arc<EtcdSettings>,
    pub(super) keys: Keys,
    pub(super) contact: Arc<Contact>,
}

impl Etcd {
    /// Set up the client. Without user authentication this does not reach
    /// etcd yet (the first call does), so a member can start while etcd is
    /// down; with it, etcd must answer the authentication within
    /// `request_timeout`.
    pub async fn connect(settings: EtcdSettings) -> Result<Etcd, FleetError> {
        let ping = settings.grpc_keep_alive.max(Duration::from_secs(5));
        let mut opts = ConnectOptions::new()
            .with_keep_alive(ping, ping / 2)
            .with_keep_alive_while_idle(false)
            .with_connect_timeout(settings.request_timeout)
            .with_require_leader(true);
        if let Some(tls) = &settings.tls {
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(Identity::from_pem(cert, key));
            }
            opts = opts.with_tls(t);
        }
        if let Some((user, password)) = &settings.user {
            opts = opts
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        let deadline = settings.request_timeout;
        let client =
            match tokio::time::timeout(deadline, Client::connect(&settings.endpoints, Some(opts)))
                .await
            {
                Err(_) => {
                    return Err(FleetError::Timeout {
                        op: "connect",
                        deadline,
                    })
                }
                Ok(Err(e)) => return Err(FleetError::Setup(e)),
                Ok(Ok(c)) => c,
            };
        Ok(Etcd {
            client,
            keys: Keys::new(settings.prefix.clone()),
            settings: Arc::new(settings),
            contact: Arc::new(Contact::default()),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.settings
    }

    /// Whether this member is in touch with etcd (shared by every clone).
    pub fn contact(&self) -> &Arc<Contact> {
        &self.contact
    }

    /// One unary request within `request_timeout`: `attempt` is called
    /// with a client, again (after a short pause) when the connection was
    /// refused, since then nothing was sent: with one of several etcd
    /// members down, the client's balancer still picks it now and then.
    pub(super) async fn request<T, F, Fut>(
        &self,
        op: &'static str,
        mut attempt: F,
    ) -> Result<T, FleetError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = self.settings.request_timeout;
        let end = Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(end, attempt(self.client.clone())).await {
                Ok(Err(e)) if refused(&e) && Instant::now() + REFUSED_PAUSE < end => {
                    tokio::time::sleep(REFUSED_PAUSE).await;
                }
                Err(_) => return Err(FleetError::Timeout { op, deadline }),
                Ok(r) => return self.answered(op, r),
            }
        }
    }

    /// `fut` (a stream's message, a stream opened) within
    /// `request_timeout`; an answer counts as contact.
    pub(super) async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, FleetError> {
        let deadline = self.settings.request_timeout;
        match tokio::time::timeout(deadline, fut).await {
            Err(_) => Err(FleetError::Timeout { op, deadline }),
            Ok(r) => self.answered(op, r),
        }
    }

    fn answered<T>(
        &self,
        op: &'static str,
        r: Result<T, etcd_client::Error>,
    ) -> Result<T, FleetError> {
        match r {
            Err(source) => {
                // etcd answering "no" is contact too; a transport error is not.
                if matches!(source, etcd_client::Error::GRpcStatus(ref s) if s.code() != tonic::Code::Unavailable)
                {
                    self.contact.touch();
                }
                Err(FleetError::Etcd { op, source })
            }
            Ok(v) => {
                self.contact.touch();
                Ok(v)
            }
        }
    }
}

/// Between two tries of a request whose connection was refused.
const REFUSED_PAUSE: Duration = Duration::from_millis(20);

/// Whether the request never left: the TCP connection was refused.
fn refused(e: &etcd_client::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(s) => Some(s),
        etcd_client::Error::TransportError(t) => Some(t),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renew(ttl_s: u64, fence_ms: Option<u64>) -> Duration {
        let mut s = EtcdSettings::new(vec![], "/p/");
        s.member_ttl = Duration::from_secs(ttl_s);
        s.write_fence = fence_ms.map(Duration::from_millis);
        s.renew_every()
    }

    #[test]
    fn the_lease_is_renewed_three_times_per_ttl_and_per_write_fence() {
        assert_eq!(renew(6, None), Duration::from_secs(2));
        assert_eq!(renew(6, Some(5_400)), Duration::from_millis(1_800));
        // A fence shorter than the TTL: three keep-alives per fence, so
        // the fence never rises while etcd answers.
        assert_eq!(renew(5, Some(1_200)), Duration::from_millis(400));
        assert_eq!(renew(2, Some(60)), MIN_RENEW);
    }
}
