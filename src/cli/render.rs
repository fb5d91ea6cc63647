//! The human views of the admin API's answers for `switchyard ctl`: plain
//! text, tolerant of missing fields (a newer or older server may add or drop
//! some), never failing. `--json` bypasses them. [`Style`] adds colour and
//! countdowns where they help (a terminal).

mod style;

use serde_json::Value;
pub use style::{Colour, Style};

fn pct(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn bar(green: f64, width: usize) -> String {
    let g = ((green / 100.0) * width as f64).round() as usize;
    format!(
        "{}{}",
        "#".repeat(width.saturating_sub(g)),
        "=".repeat(g.min(width))
    )
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.1}ms"))
        .unwrap_or_else(|| "-".into())
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// A phase as a person reads it: `split` (the API's word) is a manual split.
fn phase_words(phase: &str) -> &str {
    match phase {
        "split" => "manual split",
        other => other,
    }
}

/// ` (in 12s)` after a time, when the style counts down.
fn countdown(style: &Style, at: &str) -> String {
    style
        .countdown(at)
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

/// Phase, weights, rollout, bake and lock: what `rollout status` shows and
/// `status` begins with.
pub fn render_progress(s: &Value, style: &Style) -> String {
    let mut out = String::new();
    let w = &s["weights"];
    let phase = s["phase"].as_str().unwrap_or("?");
    let phase_text = match phase {
        "stable" => phase_words(phase).to_string(),
        _ => style.paint(phase_words(phase), Colour::Cyan),
    };
    out.push_str(&format!(
        "phase {phase_text}   live {}   candidate {}   generation {}\n",
        s["live"].as_str().unwrap_or("?"),
        s["candidate"].as_str().unwrap_or("?"),
        s["generation"]
    ));
    out.push_str(&format!(
        "weights  blue {:>6.2}% [{}] green {:>6.2}%\n",
        pct(&w["blue"]),
        bar(pct(&w["green"]), 40),
        pct(&w["green"])
    ));
    if let Some(r) = s["rollout"].as_object() {
        let steps: Vec<String> = r
            .get("steps")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|x| format!("{}", pct(x))).collect())
            .unwrap_or_default();
        let paused = r.get("paused").and_then(|v| v.as_bool()).unwrap_or(false);
        let next = match r.get("next_step_at").and_then(|v| v.as_str()) {
            _ if paused => style.paint("paused", Colour::Yellow),
            Some(t) => format!("next step at {t}{}", countdown(style, t)),
            None => "waiting for promote".to_string(),
        };
        out.push_str(&format!(
            "rollout  to {} step {}/{} ({}%) of {}; {}\n",
            r.get("to").and_then(|v| v.as_str()).unwrap_or("?"),
            r.get("step").cloned().unwrap_or(Value::Null),
            steps.len(),
            r.get("percent").map(pct).unwrap_or(0.0),
            steps.join(","),
            next
        ));
    }
    if let Some(b) = s["bake"].as_object() {
        let pool = b.get("pool").and_then(|v| v.as_str()).unwrap_or("?");
        let other = match pool {
            "blue" => "green",
            "green" => "blue",
            _ => "the other pool",
        };
        let until = b.get("until").and_then(|v| v.as_str()).unwrap_or("?");
        out.push_str(&format!(
            "baking   {pool} serves all traffic; {other} is kept warm and automatic rollback to it stays armed until {until}{}\n",
            countdown(style, until),
        ));
    }
    if let Some(l) = s["rollback_lock"].as_object() {
        let line = format!(
            "LOCKED   rollback lock on {} since {}: {}",
            l.get("pool").and_then(|v| v.as_str()).unwrap_or("?"),
            l.get("since").and_then(|v| v.as_str()).unwrap_or("?"),
            l.get("reason").and_then(|v| v.as_str()).unwrap_or("?"),
        );
        out.push_str(&style.paint(&line, Colour::Red));
        out.push('\n');
    }
    out.push_str(&super::gate::render_gate(&s["gate"]));
    out
}

/// The colour of an endpoint state: red when it cannot serve for a fault,
/// yellow while drained or ejected, green when healthy.
fn state_colour(state: &str) -> Option<Colour> {
    match state {
        "unhealthy" => Some(Colour::Red),
        "ejected" | "draining" => Some(Colour::Yellow),
        "healthy" => Some(Colour::Green),
        _ => None,
    }
}

/// `12.0 req/s errors 0.00%` of a stats object.
fn rates(st: &Value) -> String {
    format!(
        "{:.1} req/s errors {:.2}%",
        st["rps"].as_f64().unwrap_or(0.0),
        st["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
    )
}

/// A human summary of `GET /api/v1/status`.
pub fn render_status(s: &Value, style: &Style) -> String {
    let mut out = render_progress(s, style);
    for pool in ["blue", "green"] {
        let p = &s["pools"][pool];
        let st = &p["stats"];
        let eps = p["endpoints"].as_array().map(Vec::len).unwrap_or(0);
        let healthy = p["healthy"].as_u64().unwrap_or(0);
        let mut health = format!("healthy {healthy}/{eps}");
        if (healthy as usize) < eps {
            health = style.paint(&health, Colour::Yellow);
        }
        // The last seconds first: they follow a weight change at once,
        // where the window's figures lag behind it.
        let now = match p.get("recent") {
            Some(r) if r.is_object() => format!("now {}  ", rates(r)),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{pool:<6} {health}  in flight {}  {now}window {}  p50 {}  p99 {}\n",
            p["inflight"],
            rates(st),
            ms(&st["p50_ms"]),
            ms(&st["p99_ms"]),
        ));
        for e in p["endpoints"].as_array().into_iter().flatten() {
            let state = text(e, "state");
            let padded = format!("{state:<9}");
            let shown = match state_colour(state) {
                Some(c) => style.paint(&padded, c),
                None => padded,
            };
            out.push_str(&format!(
                "         {:<22} {shown} in flight {}\n",
                text(e, "address"),
                e["inflight"]
            ));
        }
    }
    out.push_str(&crate::cli::mirror::status_line(s));
    // The reload was applied except for these keys: say so on every view,
    // or an operator reads "ok" and never restarts.
    if let Some(note) = s["config"]["restart_needed"].as_str() {
        out.push_str(&format!("config   RESTART NEEDED: {note}\n"));
    }
    if let Some(err) = s["config"]["last_error"].as_object() {
        let message = err.get("message").and_then(|v| v.as_str()).unwrap_or("?");
        // Line 0 is the API's "no position" (the file could not be read).
        let line = match err.get("line").and_then(Value::as_u64) {
            Some(0) => format!("config   last reload FAILED: {message}"),
            line => format!(
                "config   last reload FAILED at line {} column {}: {message}",
                line.map_or(Value::Null, Value::from),
                err.get("column").cloned().unwrap_or(Value::Null),
            ),
        };
        out.push_str(&style.paint(&line, Colour::Red));
        out.push('\n');
    }
    out
}

pub fn render_events(v: &Value) -> String {
    let mut out = String::new();
    let list = v["events"].as_array().or_else(|| v.as_array());
    for e in list.into_iter().flatten() {
        // What changed, not only that something did: "#5 weights_changed
        // by admin" alone sends the operator to --json.
        let mut what = Vec::new();
        match (brief(&e["from"]), brief(&e["to"])) {
            (Some(f), Some(t)) => what.push(format!("{f} -> {t}")),
            (None, Some(t)) => what.push(format!("-> {t}")),
            _ => {}
        }
        if let Some(w) = brief(&e["weights"]).filter(|w| !what.iter().any(|x| x.contains(w))) {
            what.push(format!("now {w}"));
        }
        if let Some(r) = e["reason"].as_str().filter(|r| !r.is_empty()) {
            what.push(r.to_string());
        }
        out.push_str(&format!(
            "{} #{} {:<18} by {:<6} {}\n",
            e["time"].as_str().unwrap_or("?"),
            e["id"],
            e["kind"].as_str().unwrap_or("?"),
            e["actor"].as_str().unwrap_or("?"),
            what.join("; "),
        ));
    }
    out
}

/// A short form of an event's `from`, `to` or `weights`, for the shapes
/// worth a few words: a pool, a split, an endpoint. Others are left to --json.
fn brief(v: &Value) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_string());
    }
    if let (Some(b), Some(g)) = (v["blue"].as_f64(), v["green"].as_f64()) {
        return Some(format!("blue {b}% green {g}%"));
    }
    if let (Some(p), Some(ep)) = (v["pool"].as_str(), v["endpoint"].as_str()) {
        let state = v["state"]
            .as_str()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        return Some(format!("{p}/{ep}{state}"));
    }
    None
}

pub fn render_change(v: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["outcome", "phase", "live"] {
        if let Some(s) = v[key].as_str() {
            parts.push(format!("{key} {s}"));
        }
    }
    if v["weights"].is_object() {
        parts.push(format!(
            "weights blue {}% green {}%",
            pct(&v["weights"]["blue"]),
            pct(&v["weights"]["green"])
        ));
    }
    for key in [
        "held_requests",
        "hold_ms",
        "drain_ms",
        "gate_ms",
        "generation",
    ] {
        if !v[key].is_null() {
            parts.push(format!("{key} {}", v[key]));
        }
    }
    // A reload's answer.
    match v["changed"].as_bool() {
        Some(true) => parts.push("config changed".into()),
        Some(false) => parts.push("config unchanged".into()),
        None => {}
    }
    for key in ["endpoints_added", "endpoints_removed"] {
        let list: Vec<&str> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !list.is_empty() {
            parts.push(format!("{} {}", key.replace('_', " "), list.join(" ")));
        }
    }
    let mut out = if parts.is_empty() {
        v.to_string()
    } else {
        format!("ok: {}", parts.join(", "))
    };
    if let Some(note) = v["restart_needed"].as_str() {
        out.push_str(&format!("\nRESTART NEEDED: {note}"));
    }
    let gate = super::gate::render_gate(&v["database"]);
    if !gate.is_empty() {
        out.push('\n');
        out.push_str(gate.trim_end());
    }
    out
}

/// The answer to `ctl endpoint drain|enable`: what each endpoint with the
/// address is now, and what is still in flight on it.
pub fn render_maintenance(v: &Value) -> String {
    let verb = match v["action"].as_str() {
        Some("drain") => "drained",
        Some("enable") => "enabled",
        _ => "?",
    };
    let mut out = String::new();
    if v["changed"].as_bool() == Some(false) {
        out.push_str(&format!(
            "{} was already {verb}\n",
            v["address"].as_str().unwrap_or("?")
        ));
    }
    for e in v["endpoints"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "ok: {verb} {}/{}: now {}, {} in flight\n",
            e["pool"].as_str().unwrap_or("?"),
            e["address"].as_str().unwrap_or("?"),
            e["state"].as_str().unwrap_or("?"),
            e["inflight"]
        ));
    }
    out
}

/// `ctl fleet`: this member, the leader and one line per member.
pub fn render_fleet(f: &Value) -> String {
    if f.is_null() {
        return "not in fleet mode (no `fleet` section)\n".to_string();
    }
    let mut out = format!(
        "member {}   connected {}   leader {}\n",
        f["member_id"].as_str().unwrap_or("?"),
        f["connected"].as_bool().unwrap_or(false),
        f["leader"].as_str().unwrap_or("none"),
    );
    out.push_str(&format!(
        "{:<24} {:<22} {:>6} {:<25} {:<9} {:>5} {:>5} {:>9} {:>7}\n",
        "ID", "ADMIN", "GEN", "LAST SEEN", "CONNECTED", "BLUE", "GREEN", "RPS", "ERR%"
    ));
    for m in f["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.push_str(&format!(
            "{:<24} {:<22} {:>6} {:<25} {:<9} {:>5} {:>5} {:>9.1} {:>7.2}\n",
            m["id"].as_str().unwrap_or("?"),
            m["admin"].as_str().unwrap_or("?"),
            m["generation"].as_u64().unwrap_or(0),
            m["last_seen"].as_str().unwrap_or("?"),
            if m["connected"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            },
            m["healthy"]["blue"].as_u64().unwrap_or(0),
            m["healthy"]["green"].as_u64().unwrap_or(0),
            m["rps"].as_f64().unwrap_or(0.0),
            m["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
        ));
    }
    out
}

#[cfg(test)]
mod tests;
