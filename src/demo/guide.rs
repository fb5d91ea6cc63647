//! The guide `switchyard demo` prints at start: where each part runs, and
//! commands to try, with `ctl` spelled so it reaches this demo's admin API.
//! It only formats text; it must not start or change anything.

use super::Demo;
use std::net::SocketAddr;

/// The admin address `ctl` uses when given none.
const CTL_DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// `switchyard ctl` as the guide's reader must type it: with `--admin` when
/// the demo's admin API is not where `ctl` looks by default (copied without
/// it, the hints would go to whatever listens on 9901, maybe a real proxy).
fn ctl_command(program: &str, admin: SocketAddr) -> String {
    if admin == CTL_DEFAULT_ADMIN {
        format!("{program} ctl")
    } else {
        format!("{program} ctl --admin http://{admin}")
    }
}

/// How the reader runs this very binary: `switchyard` when that name on
/// `path` (the `PATH`) is this program, else its absolute path, quoted for
/// a shell when it needs to be. A demo started with `cargo run` has nothing
/// on the PATH: a printed `switchyard ctl status` would not run.
pub(super) fn program(path: Option<&std::ffi::OsStr>) -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "switchyard".into();
    };
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("switchyard"))
        .find(|c| c.is_file())
        .and_then(|c| std::fs::canonicalize(c).ok());
    if on_path.as_ref() == Some(&me) {
        return "switchyard".into();
    }
    let shown = me.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+".contains(c);
    if shown.chars().all(plain) {
        shown
    } else {
        format!("'{}'", shown.replace('\'', "'\\''"))
    }
}

/// One line of the guide: a command, and what it does when `note` says.
fn hint(s: &mut String, command: &str, note: &str) {
    if note.is_empty() {
        s.push_str(&format!("  {command}\n"));
    } else {
        s.push_str(&format!("  {command:<46}  # {note}\n"));
    }
}

/// What the demo prints at start: where everything runs, and what to try.
pub(super) fn guide(demo: &Demo, program: &str) -> String {
    let proxy = demo.server.proxy_addrs[0];
    let admin = demo.server.admin_addr;
    let ctl = ctl_command(program, admin);
    let control = demo.control_addr;
    let mut s = String::new();
    // First, so it is what a reader sees: the page shows everything below.
    s.push_str(&format!("Dashboard: http://{admin}/\n\n"));
    s.push_str("switchyard demo is running.\n\n");
    for a in &demo.apps {
        s.push_str(&format!(
            "  upstream {:<8} ({:<5}) on {}\n",
            a.name,
            a.pool.as_str(),
            a.addr
        ));
    }
    s.push_str(&format!("  proxy              on http://{proxy}\n"));
    if let Some(tls) = demo.server.proxy_addrs.get(1) {
        s.push_str(&format!(
            "  proxy (HTTPS)      on https://localhost:{}  (CA: {})\n",
            tls.port(),
            demo.certs.ca.display()
        ));
    }
    s.push_str(&format!("  admin API          on http://{admin}\n\n"));
    s.push_str("Try, in another terminal:\n");
    hint(
        &mut s,
        &format!("curl -i http://{proxy}/"),
        "answered by blue",
    );
    if let Some(tls) = demo.server.proxy_addrs.get(1) {
        hint(
            &mut s,
            &format!(
                "curl --cacert {} --http2 https://localhost:{}/",
                demo.certs.ca.display(),
                tls.port()
            ),
            "",
        );
    }
    hint(
        &mut s,
        &format!("curl -s http://{admin}/api/v1/status"),
        "phase, weights, health",
    );
    hint(&mut s, &format!("{ctl} status"), "");
    hint(&mut s, &format!("{ctl} weights 90 10"), "10 % to green");
    hint(
        &mut s,
        &format!("for i in $(seq 20); do curl -s http://{proxy}/; done"),
        "",
    );
    hint(&mut s, &format!("{ctl} weights 100 0"), "back to blue");
    s.push('\n');
    if demo.traffic == 0 {
        s.push_str(
            "Watch an automatic rollback (--traffic 0: the demo sends no requests itself;\n\
             send some, e.g. with the loop above, or there is nothing to judge):\n",
        );
    } else {
        s.push_str(&format!(
            "Watch an automatic rollback (the demo sends {} requests/s itself):\n",
            demo.traffic
        ));
    }
    hint(&mut s, &format!("{ctl} watch"), "live view; Ctrl-C ends it");
    hint(
        &mut s,
        &format!("{ctl} rollout start green"),
        "10, 25, 50, 75, 100 % every 15 s",
    );
    hint(
        &mut s,
        &format!("curl -X POST 'http://{control}/fail/green?rate=0.2'"),
        "green now fails 20 %",
    );
    s.push_str("  # within about a second: weights back at 100/0, a rollback lock on green\n");
    hint(&mut s, &format!("{ctl} events"), "");
    hint(
        &mut s,
        &format!("curl -X POST 'http://{control}/fail/green?rate=0'"),
        "heal green",
    );
    hint(&mut s, &format!("{ctl} rearm"), "allow green again");
    s.push_str(
        "\nWatch a business check roll back while every answer stays 200\n\
         (the demo's `orders` check: green's orders per request against blue's):\n",
    );
    hint(&mut s, &format!("{ctl} rollout start green"), "");
    hint(
        &mut s,
        &format!("{ctl} explain"),
        "the orders check: value, threshold, verdict",
    );
    hint(
        &mut s,
        &format!("curl -X POST 'http://{control}/orders/green/stop'"),
        "green takes no orders, answers 200",
    );
    s.push_str(
        "  # within about 3 s (3 failed readings, one a second): a rollback, reason check\n",
    );
    hint(
        &mut s,
        &format!("curl -X POST 'http://{control}/orders/green/start'"),
        "green takes orders again",
    );
    hint(&mut s, &format!("{ctl} rearm"), "");
    s.push_str("\nCtrl-C stops everything.\n");
    s
}
