//! Real PostgreSQL for the gate's tests: an `initdb` primary and a
//! `pg_basebackup -R` streaming replica on loopback ports, in a temporary
//! directory, run as the `postgres` user when the tests run as root
//! (PostgreSQL refuses root). Debian's binaries, from $PG_BIN or
//! /usr/lib/postgresql/*/bin. Both servers stop (immediate) when dropped.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// The superuser's password; the gate reads it from a password file.
pub const PASSWORD: &str = "gate-s3cret";

/// Where Debian keeps the server binaries.
fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PG_BIN") {
        return PathBuf::from(d);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (/usr/lib/postgresql): run .ci/checks/postgres.sh")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// The uid and gid to run the servers as: `postgres` when we are root.
fn run_as() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    if me != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a postgres user")
    };
    Some((id("-u"), id("-g")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One running server.
pub struct Server {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
}

impl Server {
    /// `host=127.0.0.1 port=P user=postgres dbname=postgres`.
    pub fn conn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// A client with the password, for the test's own queries.
    pub async fn client(&self) -> Client {
        let (client, conn) =
            tokio_postgres::connect(&format!("{} password={PASSWORD}", self.conn()), NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to {}: {e}", self.port));
        tokio::spawn(async move {
            // Closed when the server stops at the end of a test: no news.
            if let Err(e) = conn.await.map_err(|e| (e.is_closed(), e)) {
                if !e.0 {
                    eprintln!("test connection: {}", e.1);
                }
            }
        });
        client
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        if let Err(e) = run(
            &self.bin,
            self.user,
            "pg_ctl",
            &["stop", "-m", "immediate", "-w", "-D", &data],
        ) {
            eprintln!("stopping the server in {data}: {e}");
        }
    }
}

/// Run one of PostgreSQL's programs; its output on failure.
fn run(bin: &Path, user: Option<(u32, u32)>, prog: &str, args: &[&str]) -> Result<(), String> {
    let mut c = Command::new(bin.join(prog));
    c.args(args).env("LC_ALL", "C").env("PGPASSWORD", PASSWORD);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    let out = c.output().map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A primary and its streaming replica, with their directory.
pub struct Pair {
    pub primary: Server,
    pub replica: Server,
    /// A `.pgpass` file with the password, for the gate.
    pub password_file: PathBuf,
    pub dir: tempfile::TempDir,
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open conf");
    f.write_all(text.as_bytes()).expect("append conf");
}

fn settings(dir: &Path, port: u16) -> String {
    format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
         fsync = off\nfull_page_writes = off\nshared_buffers = 16MB\nmax_connections = 40\n\
         wal_receiver_status_interval = 1s\nlog_min_messages = warning\n",
        dir.display()
    )
}

/// TLS on both servers: their certificate (for 127.0.0.1), the CA that
/// signed it, and a CA that did not. Role [`TLS_ROLE`] may log in over TLS
/// only.
pub struct Tls {
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
}

/// The role that may connect only over TLS (a superuser, for pg_promote).
pub const TLS_ROLE: &str = "gate";

/// `server.crt` and `server.key` (signed by a new CA) in the primary's
/// data directory, which the backup copies to the replica; the CA and
/// another one beside them.
fn server_tls(dir: &Path, data: &Path, user: Option<(u32, u32)>) -> Tls {
    use crate::support::tls::Ca;
    use std::os::unix::fs::PermissionsExt;
    let ca = Ca::new("switchyard test postgres CA").expect("a CA");
    let issued = ca
        .issue(&["127.0.0.1", "localhost"])
        .expect("a server certificate");
    for (name, pem) in [
        ("server.crt", &issued.cert_pem),
        ("server.key", &issued.key_pem),
    ] {
        let path = data.join(name);
        std::fs::write(&path, pem).expect("write TLS file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown TLS file");
        }
    }
    let tls = Tls {
        ca: dir.join("ca.pem"),
        wrong_ca: dir.join("wrong-ca.pem"),
    };
    std::fs::write(&tls.ca, &ca.cert_pem).expect("write CA");
    let other = Ca::new("some other CA").expect("another CA");
    std::fs::write(&tls.wrong_ca, &other.cert_pem).expect("write the other CA");
    tls
}

impl Pair {
    /// Make and start both servers; the replica streams from the primary.
    pub fn start() -> Pair {
        Self::start_with(false).0
    }

    /// Both servers also serve TLS, and role [`TLS_ROLE`] is refused
    /// without it.
    pub fn start_tls() -> (Pair, Tls) {
        let (pair, tls) = Self::start_with(true);
        (pair, tls.expect("TLS files"))
    }

    fn start_with(with_tls: bool) -> (Pair, Option<Tls>) {
        let bin = bin_dir();
        let user = run_as();
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let d = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(d("pw"), format!("{PASSWORD}\n")).expect("password file");
        let password_file = dir.path().join("pgpass");
        let mut pgpass = format!("127.0.0.1:*:*:postgres:{PASSWORD}\n");
        if with_tls {
            pgpass.push_str(&format!("127.0.0.1:*:*:{TLS_ROLE}:{PASSWORD}\n"));
        }
        std::fs::write(&password_file, pgpass).expect("pgpass");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(d("pw"), Some(uid), Some(gid)).expect("chown pw");
        }
        let (pp, rp) = (free_port(), free_port());
        let initdb = [
            "-D",
            &d("primary"),
            "-U",
            "postgres",
            "--pwfile",
            &d("pw"),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        ];
        run(&bin, user, "initdb", &initdb).unwrap_or_else(|e| panic!("{e}"));
        let primary_dir = dir.path().join("primary");
        append(
            &primary_dir.join("postgresql.conf"),
            &settings(dir.path(), pp),
        );
        // Replication connections from loopback need no password; the
        // gate's own connections do (scram, from the password file).
        let hba = primary_dir.join("pg_hba.conf");
        let mut lines = "host replication all 127.0.0.1/32 trust\n".to_string();
        let tls = with_tls.then(|| server_tls(dir.path(), &primary_dir, user));
        if tls.is_some() {
            append(&primary_dir.join("postgresql.conf"), "ssl = on\n");
            lines.push_str(&format!("hostnossl all {TLS_ROLE} 127.0.0.1/32 reject\n"));
            lines.push_str(&format!(
                "hostssl all {TLS_ROLE} 127.0.0.1/32 scram-sha-256\n"
            ));
        }
        let rest = std::fs::read_to_string(&hba).expect("pg_hba");
        std::fs::write(&hba, format!("{lines}{rest}")).expect("pg_hba");
        let start = |data: &str| {
            let log = format!("{data}.log");
            run(
                &bin,
                user,
                "pg_ctl",
                &["start", "-w", "-t", "30", "-D", data, "-l", &log],
            )
            .unwrap_or_else(|e| {
                panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default())
            });
        };
        start(&d("primary"));
        let primary = Server {
            port: pp,
            data: primary_dir,
            bin: bin.clone(),
            user,
        };
        let port = pp.to_string();
        if tls.is_some() {
            // Made before the backup: the replica has the role too.
            let role = format!("CREATE ROLE {TLS_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'");
            let socket = d("");
            let psql = [
                "-h", &socket, "-p", &port, "-U", "postgres", "-d", "postgres", "-c", &role,
            ];
            run(&bin, user, "psql", &psql).unwrap_or_else(|e| panic!("{e}"));
        }
        let backup = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-D",
            &d("replica"),
            "-R",
            "-X",
            "stream",
            "--no-sync",
        ];
        run(&bin, user, "pg_basebackup", &backup).unwrap_or_else(|e| panic!("{e}"));
        let replica_dir = dir.path().join("replica");
        append(
            &replica_dir.join("postgresql.conf"),
            &settings(dir.path(), rp),
        );
        start(&d("replica"));
        let replica = Server {
            port: rp,
            data: replica_dir,
            bin,
            user,
        };
        (
            Pair {
                primary,
                replica,
                password_file,
                dir,
            },
            tls,
        )
    }

    /// Make the replica's promotion slow for real: PostgreSQL runs
    /// `recovery_end_command` at the end of recovery, before the server
    /// leaves it, so `pg_promote` answers at once but `pg_is_in_recovery()`
    /// stays true until [`Stall::release`] (or a minute passes).
    pub async fn stall_promotion(&self) -> Stall {
        let go = self.dir.path().join("promotion-may-end");
        let path = go.display().to_string();
        assert!(
            path.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
            "a path the shell takes as is: {path}"
        );
        // PostgreSQL runs this shell at the end of recovery: it polls for
        // the release file (bounded: 1 200 looks of 50 ms), which is what
        // stalls promotion for real; the test itself waits on conditions.
        let wait = format!(
            "i=0; while [ ! -e {path} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
        );
        let replica = self.replica.client().await;
        replica
            .batch_execute(&format!("ALTER SYSTEM SET recovery_end_command = '{wait}'"))
            .await
            .expect("set recovery_end_command");
        replica
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reload the replica's settings");
        let set = crate::support::poll_until(Duration::from_secs(10), || async {
            replica
                .query_one("SHOW recovery_end_command", &[])
                .await
                .map(|r| r.get::<_, String>(0) == wait)
                .unwrap_or(false)
        })
        .await;
        assert!(set, "the replica did not take recovery_end_command");
        Stall { go }
    }

    /// Wait until the replica streams (the primary sees its WAL sender).
    pub async fn wait_streaming(&self) {
        let c = self.primary.client().await;
        let streaming = crate::support::poll_until(Duration::from_secs(20), || async {
            c.query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
        })
        .await;
        assert!(streaming, "the replica did not start streaming");
    }
}

/// A promotion held at the end of recovery ([`Pair::stall_promotion`]).
pub struct Stall {
    go: PathBuf,
}

impl Stall {
    /// Let the promotion end.
    pub fn release(&self) {
        std::fs::write(&self.go, b"").expect("release the promotion");
    }
}

/// Whether `client`'s server is in recovery (a standby).
pub async fn in_recovery(client: &Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("pg_is_in_recovery()")
        .get(0)
}
