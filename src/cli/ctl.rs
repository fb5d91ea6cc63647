//! `switchyard ctl`: a client of the admin API. Human-readable output by
//! default, `--json` for scripts, and on any error the server's message
//! and an exit code a script can branch on ([`api::exit`], listed in
//! `ctl --help`).
//!
//! - [`args`]: the command line; [`target`]: which admin API, which token.
//! - [`api`]: one request and its answer; [`wait`]: `--wait`;
//!   [`watch`]: the live view.

pub mod api;
pub mod args;
pub mod target;
mod wait;
mod watch;

use super::output;
use super::render::{render_change, render_events, render_maintenance, render_status, Style};
use api::{Api, CtlError};
pub use args::{CtlArgs, CtlCmd, EndpointCmd, MirrorCmd, RolloutCmd, WaitArgs};
use http::Method;
use serde_json::{json, Value};
use std::process::ExitCode;

pub use api::DEFAULT_ADMIN;

pub fn main(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::err(&format!("cannot start the runtime: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    let json = args.json;
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader has what it wanted (`ctl status | head -1`): the
        // request itself succeeded.
        Err(CtlError::Output(e)) if output::reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // A script asked for JSON: it gets the API's error document
            // (code, message, and for a reload every error's line and
            // column) on stdout; people still read the message on stderr.
            if let (true, CtlError::Api { body, .. }) = (json, &e) {
                if let Err(w) = output::out(&pretty(body)) {
                    if !output::reader_gone(&w) {
                        output::err(&format!("switchyard ctl: cannot print the answer: {w}\n"));
                    }
                }
            }
            output::err(&format!("switchyard ctl: {e}\n"));
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(args: CtlArgs) -> Result<(), CtlError> {
    let t = target::resolve(
        args.admin.as_deref(),
        args.token.as_deref(),
        args.config.as_deref(),
    )?;
    let api = Api::new(&t.admin, t.token.as_deref())?;
    let json = args.json;
    let (method, path, body) = match &args.cmd {
        CtlCmd::Status => (Method::GET, "/api/v1/status".to_string(), None),
        CtlCmd::Fleet => {
            let value = api.call(Method::GET, "/api/v1/status", None).await?;
            let fleet = value.get("fleet").cloned().unwrap_or(Value::Null);
            let text = if json {
                pretty(&fleet)
            } else {
                crate::cli::render::render_fleet(&fleet)
            };
            return print(&text);
        }
        CtlCmd::Watch => return watch::run(&api, json).await,
        CtlCmd::Weights { blue, green, force } => (
            Method::PUT,
            "/api/v1/weights".into(),
            Some(json!({"blue": blue, "green": green, "force": force})),
        ),
        CtlCmd::Switch { to, force, wait } => {
            let body = json!({"to": to, "force": force});
            return change_and_wait(&api, "/api/v1/switch", body, wait, json).await;
        }
        CtlCmd::Rollout(RolloutCmd::Start {
            to,
            steps,
            step_interval,
            wait,
        }) => {
            let mut b = json!({"to": to});
            if let Some(s) = steps {
                b["steps"] = json!(s);
            }
            if let Some(i) = step_interval {
                b["step_interval"] = json!(i);
            }
            return change_and_wait(&api, "/api/v1/rollout", b, wait, json).await;
        }
        CtlCmd::Rollout(RolloutCmd::Status { wait }) => {
            return rollout_status(&api, wait, json).await;
        }
        CtlCmd::Rollout(r) => {
            let action = match r {
                RolloutCmd::Pause => "pause",
                RolloutCmd::Resume => "resume",
                RolloutCmd::Promote => "promote",
                _ => "abort",
            };
            (Method::POST, format!("/api/v1/rollout/{action}"), None)
        }
        CtlCmd::Rollback { reason } => (
            Method::POST,
            "/api/v1/rollback".into(),
            Some(match reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            }),
        ),
        CtlCmd::Rearm => (Method::POST, "/api/v1/rearm".into(), None),
        CtlCmd::Events { limit } => (Method::GET, format!("/api/v1/events?limit={limit}"), None),
        CtlCmd::Reload => (Method::POST, "/api/v1/reload".into(), None),
        CtlCmd::Explain => (Method::GET, "/api/v1/explain".into(), None),
        CtlCmd::Mirror(MirrorCmd::Diffs { limit }) => (
            Method::GET,
            format!("/api/v1/mirror/diffs?limit={limit}"),
            None,
        ),
        CtlCmd::Endpoint(e) => {
            let (action, address) = match e {
                EndpointCmd::Drain { address } => ("drain", address),
                EndpointCmd::Enable { address } => ("enable", address),
            };
            let path = format!("/api/v1/endpoints/{}/{action}", path_segment(address));
            (Method::POST, path, None)
        }
    };
    let value = api.call(method, &path, body).await?;
    let text = if json {
        pretty(&value)
    } else {
        match &args.cmd {
            CtlCmd::Status => render_status(&value, &Style::for_stdout(json)),
            CtlCmd::Events { .. } => render_events(&value),
            CtlCmd::Explain => crate::cli::explain::render(&value),
            CtlCmd::Endpoint(_) => render_maintenance(&value),
            CtlCmd::Mirror(_) => crate::cli::mirror::render_diffs(&value),
            _ => format!("{}\n", render_change(&value)),
        }
    };
    print(&text)
}

/// A switch or a rollout start, then with `--wait` its end.
async fn change_and_wait(
    api: &Api,
    path: &str,
    body: Value,
    wait: &WaitArgs,
    json: bool,
) -> Result<(), CtlError> {
    let since = match wait.wait {
        true => wait::newest_event(api).await?,
        false => 0,
    };
    let value = match api.call(Method::POST, path, Some(body)).await {
        Ok(v) => v,
        // An aborted switch is what --wait promises to report as such.
        Err(CtlError::Api { body, message, .. })
            if wait.wait && body["error"]["code"] == "switch_aborted" =>
        {
            return Err(CtlError::RolledBack(format!("switch aborted: {message}")));
        }
        Err(e) => return Err(e),
    };
    print(&if json {
        pretty(&value)
    } else {
        format!("{}\n", render_change(&value))
    })?;
    if !wait.wait {
        return Ok(());
    }
    // A switch to the pool already live changed nothing: nothing to wait for.
    if value["outcome"] == "unchanged" && value["phase"] == "stable" {
        return Ok(());
    }
    wait::until_done(api, since, wait.timeout, json).await
}

/// `rollout status`: the rollout lines of status; with `--wait`, its end.
async fn rollout_status(api: &Api, wait: &WaitArgs, json: bool) -> Result<(), CtlError> {
    let since = wait::newest_event(api).await?;
    let status = api.call(Method::GET, "/api/v1/status", None).await?;
    let style = Style::for_stdout(json);
    if !wait.wait || !json {
        print(&if json {
            pretty(&json!({
                "phase": status["phase"], "rollout": status["rollout"],
                "bake": status["bake"], "weights": status["weights"],
                "rollback_lock": status["rollback_lock"],
            }))
        } else {
            crate::cli::render::render_progress(&status, &style)
        })?;
    }
    if !wait.wait {
        return Ok(());
    }
    if wait::in_progress(&status).is_none() {
        return wait::last_outcome(api, json).await;
    }
    wait::until_done(api, since, wait.timeout, json).await
}

/// `text` as one path segment: anything but letters, digits and `.:-_~`
/// percent-encoded, so an address cannot reach another route.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b".:-_~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An API document as `--json` prints it.
fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

fn print(text: &str) -> Result<(), CtlError> {
    output::out(text).map_err(CtlError::Output)
}

/// A note for the person at the terminal, on stderr: never mixed into
/// the output a script reads.
fn say(text: &str) {
    output::err(text);
}

#[cfg(test)]
mod tests;
