//! `ctl`'s lines for a PostgreSQL gate (SPEC.md section 13), shown by
//! `ctl status` (its `gate`) and under `ctl switch` (the report's
//! `database`): the LSNs, the lag over time and the promotion. Tolerant of
//! missing fields, like the rest of `render`.

use serde_json::Value;

/// How many of the latest lag samples are printed.
const SHOWN: usize = 8;

/// The gate's lines, each ending in a newline; empty for a null gate.
pub fn render_gate(g: &Value) -> String {
    if !g.is_object() {
        return String::new();
    }
    let lsn = |k: &str| g[k].as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "database {}   primary {}   replica {}   lag {} (max {})\n",
        g["state"].as_str().unwrap_or("?"),
        lsn("primary_lsn"),
        lsn("replay_lsn"),
        bytes(&g["lag_bytes"]),
        bytes(&g["max_lag_bytes"]),
    );
    let lag = g["lag"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !lag.is_empty() {
        let latest: Vec<String> = lag[lag.len().saturating_sub(SHOWN)..]
            .iter()
            .map(|p| format!("{}ms:{}", p["ms"], bytes(&p["bytes"])))
            .collect();
        out.push_str(&format!(
            "  lag over time ({} samples) ... {}\n",
            lag.len(),
            latest.join(" ")
        ));
    }
    if g["promote"].as_bool() == Some(true) {
        let how = match (g["promoted"].as_bool(), g["promote_ms"].as_u64()) {
            (Some(true), Some(ms)) => format!("promoted in {ms} ms"),
            (_, Some(ms)) => format!("NOT out of recovery after {ms} ms"),
            _ => "not begun".to_string(),
        };
        out.push_str(&format!("  promotion {how}"));
        if let Some(ms) = g["max_hold_exceeded_ms"].as_u64() {
            out.push_str(&format!(", {ms} ms past max_hold"));
        }
        out.push('\n');
    }
    if let Some(e) = g["error"].as_str() {
        out.push_str(&format!("  error: {e}\n"));
    }
    out
}

/// `176 B`, `12.0 KiB`, `3.2 MiB`; `-` when unknown.
fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return "-".into();
    };
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_promoted_gate_shows_lsns_lag_and_promotion() {
        let g = json!({
            "state": "promoted", "primary_lsn": "0/3002F88", "replay_lsn": "0/3002F88",
            "lag_bytes": 0, "max_lag_bytes": 0, "promote": true, "promoted": true,
            "promote_ms": 59, "max_hold_exceeded_ms": 12,
            "lag": [{"ms": 10, "bytes": 2048}, {"ms": 60, "bytes": 0}],
        });
        let out = render_gate(&g);
        assert!(
            out.starts_with(
                "database promoted   primary 0/3002F88   replica 0/3002F88   lag 0 B (max 0 B)\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("(2 samples) ... 10ms:2.0 KiB 60ms:0 B"),
            "{out}"
        );
        assert!(
            out.contains("promoted in 59 ms, 12 ms past max_hold"),
            "{out}"
        );
    }

    #[test]
    fn a_failed_or_missing_gate_says_so() {
        assert_eq!(render_gate(&Value::Null), "");
        let out = render_gate(&json!({"state": "failed", "error": "primary: refused"}));
        assert!(
            out.contains("database failed   primary -   replica -   lag -"),
            "{out}"
        );
        assert!(out.ends_with("  error: primary: refused\n"), "{out}");
        assert_eq!(bytes(&json!(3 * 1_048_576)), "3.0 MiB");
    }
}
