//! How a view is drawn: colour or not, and the time countdowns count from.
//!
//! Colour only on a terminal, never with `NO_COLOR` set (no-color.org: any
//! non-empty value), `TERM=dumb` or `--json`: escapes in a file or a pipe
//! are noise. Countdowns compare the server's RFC 3339 times with this
//! machine's clock (ctl usually runs next to the proxy).

use std::io::IsTerminal;

/// ANSI colours used by the views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Red,
    Yellow,
    Green,
    Cyan,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Colour::Red => "31",
            Colour::Yellow => "33",
            Colour::Green => "32",
            Colour::Cyan => "36",
        }
    }
}

/// How to draw: with colour or not, and "now" for countdowns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
    /// Unix milliseconds countdowns count from; 0: no countdowns.
    pub now_unix_ms: u64,
}

impl Style {
    /// Plain text, no countdowns: what tests and pipes get.
    pub fn plain() -> Self {
        Style {
            colour: false,
            now_unix_ms: 0,
        }
    }

    /// For this process's stdout: colour when it is a terminal and nothing
    /// asks for none; countdowns from this machine's clock.
    pub fn for_stdout(json: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|v| v == "dumb");
        Style {
            colour: !json && !no_color && !dumb && std::io::stdout().is_terminal(),
            now_unix_ms: crate::clock::unix_ms(),
        }
    }

    /// `text` in `colour` when colour is on.
    pub fn paint(&self, text: &str, colour: Colour) -> String {
        if self.colour {
            format!("\x1b[{}m{text}\x1b[0m", colour.code())
        } else {
            text.to_string()
        }
    }

    /// `in 1m 05s` until an RFC 3339 time, `now` once it has passed; None
    /// without countdowns or for a time that does not parse.
    pub fn countdown(&self, rfc3339: &str) -> Option<String> {
        if self.now_unix_ms == 0 {
            return None;
        }
        let at = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')).ok()?;
        let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        let left_ms = u64::try_from(at_ms).ok()?.saturating_sub(self.now_unix_ms);
        Some(if left_ms == 0 {
            "now".to_string()
        } else {
            format!("in {}", short_duration(left_ms.div_ceil(1000)))
        })
    }
}

/// `45s`, `4m 05s`, `2h 03m`: a countdown that stays the same width-ish.
pub fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_count_from_now_and_stop_at_now() {
        let s = Style {
            colour: false,
            now_unix_ms: 1_000_000,
        };
        // 1970-01-01T00:16:40Z is 1_000_000 ms.
        assert_eq!(
            s.countdown("1970-01-01T00:17:45.000Z").as_deref(),
            Some("in 1m 05s")
        );
        assert_eq!(
            s.countdown("1970-01-01T00:16:41.200Z").as_deref(),
            Some("in 2s")
        );
        assert_eq!(s.countdown("1970-01-01T00:16:00Z").as_deref(), Some("now"));
        assert_eq!(s.countdown("not a time"), None);
        assert_eq!(Style::plain().countdown("1970-01-01T00:17:45Z"), None);
        assert_eq!(short_duration(7380), "2h 03m");
    }

    #[test]
    fn paint_only_with_colour_on() {
        let on = Style {
            colour: true,
            now_unix_ms: 0,
        };
        assert_eq!(on.paint("LOCKED", Colour::Red), "\x1b[31mLOCKED\x1b[0m");
        assert_eq!(Style::plain().paint("LOCKED", Colour::Red), "LOCKED");
    }
}
