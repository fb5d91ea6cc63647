//! The human views of the admin API's answers for `switchyard ctl`: plain
//! text, tolerant of missing fields (a newer or older server may add or drop
//! some), never failing. `--json` bypasses them.

use serde_json::Value;

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

/// A phase as a person reads it: `split` (the API's word) is a manual split.
fn phase_words(phase: &str) -> &str {
    match phase {
        "split" => "manual split",
        other => other,
    }
}

/// A human summary of `GET /api/v1/status`.
pub fn render_status(s: &Value) -> String {
    let mut out = String::new();
    let w = &s["weights"];
    out.push_str(&format!(
        "phase {}   live {}   candidate {}   generation {}\n",
        phase_words(s["phase"].as_str().unwrap_or("?")),
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
            _ if paused => "paused".to_string(),
            Some(t) => format!("next step at {t}"),
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
        out.push_str(&format!(
            "baking   {pool} serves all traffic; {other} is kept warm and automatic rollback to it stays armed until {}\n",
            b.get("until").and_then(|v| v.as_str()).unwrap_or("?"),
        ));
    }
    if let Some(l) = s["rollback_lock"].as_object() {
        out.push_str(&format!(
            "LOCKED   rollback lock on {} since {}: {}\n",
            l.get("pool").and_then(|v| v.as_str()).unwrap_or("?"),
            l.get("since").and_then(|v| v.as_str()).unwrap_or("?"),
            l.get("reason").and_then(|v| v.as_str()).unwrap_or("?"),
        ));
    }
    out.push_str(&super::gate::render_gate(&s["gate"]));
    for pool in ["blue", "green"] {
        let p = &s["pools"][pool];
        let st = &p["stats"];
        let eps = p["endpoints"].as_array().map(Vec::len).unwrap_or(0);
        out.push_str(&format!(
            "{pool:<6} healthy {}/{}  in flight {}  {:.1} req/s  errors {:.2}%  p50 {}  p99 {}\n",
            p["healthy"],
            eps,
            p["inflight"],
            st["rps"].as_f64().unwrap_or(0.0),
            st["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            ms(&st["p50_ms"]),
            ms(&st["p99_ms"]),
        ));
        for e in p["endpoints"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "         {:<22} {:<9} in flight {}\n",
                e["address"].as_str().unwrap_or("?"),
                e["state"].as_str().unwrap_or("?"),
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
        match err.get("line").and_then(Value::as_u64) {
            Some(0) => out.push_str(&format!("config   last reload FAILED: {message}\n")),
            line => out.push_str(&format!(
                "config   last reload FAILED at line {} column {}: {message}\n",
                line.map_or(Value::Null, Value::from),
                err.get("column").cloned().unwrap_or(Value::Null),
            )),
        }
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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_rendering_shows_the_split_and_pools() {
        let s = json!({
            "phase": "paused", "live": "blue", "candidate": "green", "generation": 4,
            "weights": {"blue": 90.0, "green": 10.0}, "rollout": null, "rollback_lock": null,
            "pools": {
                "blue": {"healthy": 2, "inflight": 1, "stats": {"rps": 5.0, "error_rate": 0.0, "p50_ms": 1.0, "p99_ms": 2.0},
                         "endpoints": [{"address": "127.0.0.1:1", "state": "healthy", "inflight": 1}]},
                "green": {"healthy": 0, "inflight": 0, "stats": {}, "endpoints": []}
            },
            "config": {"last_error": {"message": "bad", "line": 3, "column": 5}}
        });
        let out = render_status(&s);
        assert!(out.contains("phase paused"), "{out}");
        assert!(out.contains("blue  90.00%"), "{out}");
        assert!(out.contains("green  10.00%"), "{out}");
        assert!(out.contains("127.0.0.1:1"), "{out}");
        assert!(out.contains("line 3 column 5"), "{out}");
        assert!(!out.contains("RESTART"), "{out}");
    }

    #[test]
    fn a_reload_error_without_a_position_shows_none() {
        let s = json!({"config": {"last_error": {"message": "cannot read file: gone", "line": 0, "column": 0}}});
        let out = render_status(&s);
        assert!(
            out.contains("config   last reload FAILED: cannot read file: gone"),
            "{out}"
        );
        assert!(!out.contains("line 0"), "{out}");
    }

    #[test]
    fn events_say_what_changed() {
        let v = json!({"events": [
            {"id": 5, "time": "t", "kind": "weights_changed", "actor": "admin",
             "from": {"blue": 100.0, "green": 0.0}, "to": {"blue": 90.0, "green": 10.0},
             "weights": {"blue": 90.0, "green": 10.0}, "reason": null},
            {"id": 6, "time": "t", "kind": "endpoint_down", "actor": "auto", "from": null,
             "to": {"pool": "blue", "endpoint": "127.0.0.1:8001", "state": "unhealthy"},
             "weights": null, "reason": "3 failed checks"},
            {"id": 7, "time": "t", "kind": "rollback", "actor": "auto", "from": "green",
             "to": "blue", "weights": {"blue": 100.0, "green": 0.0}, "reason": "error_rate"}
        ]});
        let out = render_events(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].ends_with("by admin  blue 100% green 0% -> blue 90% green 10%"),
            "{out}"
        );
        assert!(
            lines[1].ends_with("-> blue/127.0.0.1:8001 unhealthy; 3 failed checks"),
            "{out}"
        );
        assert!(
            lines[2].ends_with("green -> blue; now blue 100% green 0%; error_rate"),
            "{out}"
        );
    }

    #[test]
    fn restart_needed_is_shown_by_reload_and_status() {
        let note = "changed but applied only at restart: listeners";
        let reload = json!({
            "generation": 27, "changed": true, "endpoints_added": ["blue/127.0.0.1:8003"],
            "endpoints_removed": [], "restart_needed": note
        });
        let out = render_change(&reload);
        assert!(
            out.starts_with("ok: generation 27, config changed"),
            "{out}"
        );
        assert!(out.contains("endpoints added blue/127.0.0.1:8003"), "{out}");
        assert!(out.ends_with(&format!("\nRESTART NEEDED: {note}")), "{out}");
        let quiet = json!({"generation": 28, "changed": false, "restart_needed": null});
        assert_eq!(render_change(&quiet), "ok: generation 28, config unchanged");
        let status = json!({"config": {"restart_needed": note, "last_error": null}});
        let out = render_status(&status);
        assert!(
            out.contains(&format!("config   RESTART NEEDED: {note}")),
            "{out}"
        );
    }

    #[test]
    fn a_split_and_a_bake_are_named_for_what_they_are() {
        let out = render_status(&json!({"phase": "split"}));
        assert!(out.starts_with("phase manual split "), "{out}");
        let out = render_status(&json!({"phase": "baking",
            "bake": {"pool": "green", "until": "2026-12-05T10:00:00Z"}}));
        assert!(
            out.contains("baking   green serves all traffic; blue is kept warm and automatic rollback to it stays armed until 2026-12-05T10:00:00Z"),
            "{out}"
        );
    }

    #[test]
    fn a_maintenance_answer_says_what_is_in_flight() {
        let v = json!({"generation": 3, "action": "drain", "address": "127.0.0.1:1", "changed": false,
            "endpoints": [{"pool": "blue", "address": "127.0.0.1:1", "state": "draining", "inflight": 2}]});
        assert_eq!(
            render_maintenance(&v),
            "127.0.0.1:1 was already drained\nok: drained blue/127.0.0.1:1: now draining, 2 in flight\n"
        );
    }

    #[test]
    fn the_fleet_table_has_a_line_per_member() {
        let f = serde_json::json!({
            "member_id": "a", "connected": true, "leader": "b",
            "members": [{"id": "a", "admin": "127.0.0.1:9911", "generation": 7,
                "last_seen": "2026-12-04T10:00:00Z", "connected": false,
                "healthy": {"blue": 2, "green": 1}, "rps": 12.5, "error_rate": 0.25}]
        });
        let text = super::render_fleet(&f);
        assert!(
            text.starts_with("member a   connected true   leader b\n"),
            "{text}"
        );
        let line = text.lines().nth(2).unwrap();
        assert!(line.starts_with("a "), "{line}");
        for part in [" 7 ", " no ", " 12.5 ", " 25.00"] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert!(super::render_fleet(&serde_json::Value::Null).starts_with("not in fleet mode"));
    }
}
