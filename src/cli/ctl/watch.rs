//! `ctl watch`: status refreshed every second, with countdowns to the next
//! step and the end of a bake, colour on a terminal, and a proxy that goes
//! away (a restart) waited for instead of ending the view.
//!
//! Only a terminal gets the screen cleared and redrawn; into a file or a
//! pipe each refresh is appended as plain text, or with `--json` as one
//! JSON line (a stream a script reads line by line). Losing the proxy is
//! said once, on the screen or on stderr, and so is finding it again.

use super::api::{Api, CtlError};
use crate::cli::render::{render_status, Colour, Style};
use http::Method;
use std::io::IsTerminal;
use std::time::Duration;

/// Retry delay while the proxy is away, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(api: &Api, json: bool) -> Result<(), CtlError> {
    let terminal = !json && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut lost: Option<(String, u32)> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return if terminal { super::print("\n") } else { Ok(()) },
        }
        let s = match api.call(Method::GET, "/api/v1/status", None).await {
            Ok(s) => s,
            Err(e) if e.transient() => {
                let attempts = lost.as_ref().map_or(0, |(_, n)| *n) + 1;
                let style = Style::for_stdout(json);
                let note = format!("lost the proxy: {e}; reconnecting (attempt {attempts})");
                if terminal {
                    super::print(&format!(
                        "\x1b[2J\x1b[H{}\n",
                        style.paint(&note, Colour::Red)
                    ))?;
                } else if lost.is_none() {
                    super::say(&format!("switchyard ctl: {note}\n"));
                }
                lost = Some((e.to_string(), attempts));
                // A retry back-off: the proxy is restarting or gone, and
                // asking every second changes nothing but the noise.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(e) => return Err(e),
        };
        backoff = FIRST_BACKOFF;
        let reconnected = lost.take().map(|(_, n)| n);
        if let (Some(n), false) = (reconnected, terminal) {
            super::say(&format!(
                "switchyard ctl: reconnected to the proxy after {n} attempt(s)\n"
            ));
        }
        let style = Style::for_stdout(json);
        super::print(&if json {
            format!("{s}\n")
        } else if terminal {
            let back = match reconnected {
                Some(_) => style.paint("reconnected; ", Colour::Green),
                None => String::new(),
            };
            // Clear the screen and draw from the top left.
            format!(
                "\x1b[2J\x1b[H{}\n({back}refreshing every second; Ctrl-C to stop)\n",
                render_status(&s, &style)
            )
        } else {
            format!("{}\n", render_status(&s, &style))
        })?;
    }
}
