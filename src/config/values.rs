//! What one value may be, free of positions: is this a valid weight, step
//! list, endpoint, header name, cookie name, gate URL, log level, readable
//! file, and how long may each kind of duration be?
//!
//! Each answer says what is wrong in words an operator understands. The
//! config validator attaches line and column; the admin API and the
//! controller ask the same questions of request bodies and commands.
//! Nothing here reads the YAML tree.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

/// A year as humantime counts it (365.25 days), so that it prints as `1year`.
pub const YEAR: Duration = Duration::from_secs(31_557_600);
pub const DAY: Duration = Duration::from_secs(86_400);
pub const HOUR: Duration = Duration::from_secs(3_600);

/// Upper bounds of durations. Without them `10000years` passed validation
/// and a bake or step that long could not even be written as a time (the
/// proxy crashed). A year is far beyond any real rollout, bake or cookie;
/// settings that bound a wait on the request path or a health verdict get
/// a day or an hour, and the write hold, during which a switch blocks the
/// controller and clients' writes wait, five minutes.
pub const MAX_STEP_INTERVAL: Duration = YEAR;
pub const MAX_BAKE_TIME: Duration = YEAR;
pub const MAX_STICKY_AGE: Duration = YEAR;
pub const MAX_TIMEOUT: Duration = DAY;
pub const MAX_CHECK_INTERVAL: Duration = HOUR;
pub const MAX_HOLD: Duration = Duration::from_secs(300);

/// Why a duration setting is too long, naming the bound.
pub fn duration_at_most(d: Duration, max: Duration) -> Result<(), String> {
    if d <= max {
        return Ok(());
    }
    Err(format!(
        "{} is longer than the maximum of {}",
        human_duration(d),
        human_duration(max)
    ))
}

/// A duration as an operator reads it: `3 days`, `1 day 2h`, `1 year`,
/// `1h 30m`, `250ms` (humantime writes `3days`, `1day`). Years and days
/// are words, smaller units the short forms the config accepts.
pub fn human_duration(d: Duration) -> String {
    let word = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let mut secs = d.as_secs();
    let mut parts = Vec::new();
    for (size, unit) in [(YEAR.as_secs(), "year"), (DAY.as_secs(), "day")] {
        if secs >= size {
            parts.push(word(secs / size, unit));
            secs %= size;
        }
    }
    let nanos = d.subsec_nanos();
    let small = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    parts.extend(
        small
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, unit)| format!("{n}{unit}")),
    );
    if parts.is_empty() {
        return "0s".into();
    }
    parts.join(" ")
}

/// Why a percentage is not one: out of `0..=100`, or finer than 0.01.
pub fn percent(x: f64) -> Result<(), String> {
    if !(0.0..=100.0).contains(&x) {
        return Err(format!("{x} is outside 0..=100"));
    }
    if hundredths(x).is_none() {
        return Err(format!("{x} is finer than the 0.01 resolution"));
    }
    Ok(())
}

/// `x` in hundredths of a percent when it has at most two decimals.
fn hundredths(x: f64) -> Option<i64> {
    let scaled = x * 100.0;
    let rounded = scaled.round();
    ((scaled - rounded).abs() < 1e-6 && rounded.is_finite()).then_some(rounded as i64)
}

/// Every problem with a blue/green split: per pool (`Some("blue")`) or for
/// the pair (`None`, the sum).
pub fn weight_problems(blue: f64, green: f64) -> Vec<(Option<&'static str>, String)> {
    let mut out = Vec::new();
    for (name, w) in [("blue", blue), ("green", green)] {
        if let Err(e) = percent(w) {
            out.push((Some(name), format!("{name} weight {e}")));
        }
    }
    if out.is_empty() && hundredths(blue).unwrap_or(0) + hundredths(green).unwrap_or(0) != 10_000 {
        out.push((
            None,
            format!(
                "weights must sum to 100, got {} (blue {blue} + green {green})",
                blue + green
            ),
        ));
    }
    out
}

/// Every problem with a list of rollout steps: at an index, or for the list
/// as a whole (`None`: empty).
pub fn step_problems(steps: &[f64]) -> Vec<(Option<usize>, String)> {
    let Some(&last) = steps.last() else {
        return vec![(None, "rollout steps must not be empty".into())];
    };
    let mut out = Vec::new();
    for (i, &s) in steps.iter().enumerate() {
        if !(s > 0.0 && s <= 100.0) {
            out.push((Some(i), format!("step {s} is outside (0, 100]")));
        } else if hundredths(s).is_none() {
            out.push((
                Some(i),
                format!("step {s} is finer than the 0.01 resolution"),
            ));
        } else if let Some(&prev) = i.checked_sub(1).and_then(|p| steps.get(p)) {
            if s <= prev {
                out.push((
                    Some(i),
                    format!("step {s} does not increase on the step before it ({prev})"),
                ));
            }
        }
    }
    let last_has_problem = out.last().is_some_and(|(i, _)| *i == Some(steps.len() - 1));
    if last != 100.0 && !last_has_problem {
        out.push((
            Some(steps.len() - 1),
            format!("the last step is {last}: a rollout must end at 100"),
        ));
    }
    out
}

/// An upstream endpoint: `host:port`, `ipv4:port` or `[ipv6]:port`.
pub fn endpoint(s: &str) -> Result<(), String> {
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!(
            "`{s}` has a scheme `{scheme}://`: write host:port only (HTTPS to upstreams is set with `tls`)"
        ));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{s}` is not host:port (IPv6 is written [::1]:8080)"))?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{ip}` in `{s}` is not an IPv6 address"))?;
        (None, port)
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}` has no port: expected host:port"))?;
        if host.contains(':') {
            return Err(format!(
                "`{s}`: an IPv6 address needs brackets, e.g. [::1]:8080"
            ));
        }
        (Some(host), port)
    };
    if let Some(host) = host {
        host_name(host).map_err(|e| format!("`{s}`: {e}"))?;
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(()),
        Ok(p) => Err(format!("port {p} in `{s}` is outside 1-65535")),
        Err(_) => Err(format!("port `{port}` in `{s}` is not a number")),
    }
}

fn host_name(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("the host is missing".into());
    }
    let labels: Vec<&str> = h.split('.').collect();
    if labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return h
            .parse::<Ipv4Addr>()
            .map(drop)
            .map_err(|_| format!("`{h}` is not an IPv4 address"));
    }
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // A trailing dot (fully qualified) leaves one empty label at the end.
    let named = labels.strip_suffix(&[""]).unwrap_or(&labels);
    if h.len() > 253 || named.is_empty() || !named.iter().all(label_ok) {
        return Err(format!("`{h}` is not a valid host name"));
    }
    Ok(())
}

/// An HTTP header name (RFC 9110 token).
pub fn header_name(s: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(s.as_bytes())
        .map(drop)
        .map_err(|_| format!("`{s}` is not a valid HTTP header name"))
}

/// A cookie name (RFC 6265: a token, no separators).
pub fn cookie_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("`{s}` is not a valid cookie name"))
    }
}

/// The write-hold gate: an `http://` URL with a host.
pub fn gate_url(s: &str) -> Result<(), String> {
    let err =
        || format!("`{s}` is not an http:// URL with a host, e.g. http://127.0.0.1:7000/ready");
    let uri: http::Uri = s.parse().map_err(|_| err())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(h)) if !h.is_empty() => Ok(()),
        _ => Err(err()),
    }
}

/// A level (`info`) or an `EnvFilter` directive string (`info,switchyard=debug`).
pub fn log_level(s: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let s = s.trim();
    if s.is_empty() {
        return Err("the log level is empty: use trace, debug, info, warn or error".into());
    }
    // A lone word is read by EnvFilter as a target name, so a typo such as
    // `inof` would silently enable every level for a target called "inof".
    let lone_word = !s.contains(['=', ',', '[', ':']);
    if lone_word && !LEVELS.contains(&s.to_ascii_lowercase().as_str()) {
        let hint = super::typed::suggest(s, &LEVELS)
            .map(|l| format!(" (did you mean `{l}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "`{s}` is not a log level{hint}: use trace, debug, info, warn, error, or directives such as `info,switchyard=debug`"
        ));
    }
    tracing_subscriber::EnvFilter::try_new(s)
        .map(drop)
        .map_err(|e| format!("`{s}` is not a valid log filter: {e}"))
}

/// A file the proxy must read at start (TLS material, a token).
pub fn readable_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("`{shown}` does not exist"))
        }
        Err(e) => Err(format!("cannot access `{shown}`: {e}")),
        Ok(m) if m.is_dir() => Err(format!("`{shown}` is a directory, expected a file")),
        Ok(_) => std::fs::File::open(path)
            .map(drop)
            .map_err(|e| format!("cannot read `{shown}`: {e}")),
    }
}

/// A file the proxy will create or replace: its directory must exist.
pub fn writable_location(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!("`{shown}` is a directory, expected a file"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "the directory `{}` of `{shown}` does not exist",
            dir.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for ok in [
            "127.0.0.1:8001",
            "localhost:1",
            "app.internal:65535",
            "[::1]:80",
            "my_svc:80",
        ] {
            assert_eq!(endpoint(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("127.0.0.1", "no port"),
            ("127.0.0.1:0", "outside 1-65535"),
            ("127.0.0.1:65536", "outside 1-65535"),
            ("127.0.0.1:http", "not a number"),
            ("http://127.0.0.1:80", "scheme"),
            ("::1:80", "brackets"),
            (":80", "host is missing"),
            ("300.1.1.1:80", "not an IPv4 address"),
            ("-bad-.example:80", "not a valid host name"),
            ("[zz]:80", "not an IPv6 address"),
        ] {
            let err = endpoint(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_are_bounded_and_the_bound_is_named() {
        assert_eq!(duration_at_most(YEAR, MAX_BAKE_TIME), Ok(()));
        let err = duration_at_most(YEAR + Duration::from_secs(1), MAX_BAKE_TIME).unwrap_err();
        assert_eq!(err, "1 year 1s is longer than the maximum of 1 year");
        assert_eq!(
            duration_at_most(Duration::from_secs(301), MAX_HOLD).unwrap_err(),
            "5m 1s is longer than the maximum of 5m"
        );
        assert!(duration_at_most(Duration::MAX, DAY).is_err());
    }

    #[test]
    fn durations_read_as_words_for_days_and_years() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(DAY), "1 day");
        assert_eq!(human_duration(3 * DAY), "3 days");
        assert_eq!(human_duration(DAY + 2 * HOUR), "1 day 2h");
        assert_eq!(human_duration(2 * YEAR + DAY), "2 years 1 day");
        assert_eq!(human_duration(s(5400)), "1h 30m");
        assert_eq!(human_duration(Duration::from_millis(1250)), "1s 250ms");
        assert_eq!(human_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn names_urls_and_levels() {
        assert!(header_name("X-Switchyard-Pool").is_ok());
        assert!(header_name("bad header").is_err());
        assert!(cookie_name("switchyard-bucket").is_ok());
        assert!(cookie_name("a;b").is_err());
        assert!(cookie_name("").is_err());
        assert!(gate_url("http://127.0.0.1:7000/ready").is_ok());
        assert!(gate_url("https://127.0.0.1/ready").is_err());
        assert!(gate_url("/ready").is_err());
        for ok in ["info", "WARN", "info,switchyard=debug", "switchyard=trace"] {
            assert_eq!(log_level(ok), Ok(()), "{ok}");
        }
        assert!(log_level("inof").is_err_and(|e| e.contains("did you mean `info`")));
        assert!(log_level("switchyard=loud").is_err());
    }
}
