//! `switchyard ctl mirror diffs` and the mirror line of `ctl status`
//! (SPEC.md section 12), rendered from the admin API's JSON.

use serde_json::Value;

/// The mirror line of `ctl status`; nothing while mirroring is off and
/// nothing was ever copied.
pub fn status_line(s: &Value) -> String {
    let m = &s["mirror"];
    let n = |k: &str| m[k].as_u64().unwrap_or(0);
    let total = n("match") + n("mismatch") + n("error") + n("dropped");
    if m["enabled"] != true && total == 0 {
        return String::new();
    }
    let rate = match m["mismatch_rate"].as_f64() {
        Some(r) => format!("{:.2}%", r * 100.0),
        None => "-".into(),
    };
    let limit = match (m["max_mismatch_rate"].as_f64(), m["refusing"] == true) {
        (Some(max), true) => format!(" > max {:.2}%: moves to it REFUSED", max * 100.0),
        (Some(max), false) => format!(" (max {:.2}%)", max * 100.0),
        (None, _) => String::new(),
    };
    format!(
        "mirror   {}% to {}  in flight {}  match {} mismatch {} error {} dropped {}  mismatch rate {rate}{limit}\n",
        m["percent"].as_f64().unwrap_or(0.0),
        m["to"].as_str().unwrap_or("?"),
        n("inflight"),
        n("match"),
        n("mismatch"),
        n("error"),
        n("dropped"),
    )
}

/// `GET /api/v1/mirror/diffs` as text: each mismatch's request line, then
/// each differing field with the live and the candidate's value.
pub fn render_diffs(v: &Value) -> String {
    let mut out = String::new();
    let to = v["to"].as_str().unwrap_or("?");
    let list = v["diffs"].as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        out.push_str(&format!("no mismatches kept for {to}\n"));
    }
    for d in list {
        out.push_str(&format!(
            "{} {}\n",
            d["time"].as_str().unwrap_or("?"),
            d["request"].as_str().unwrap_or("?")
        ));
        for f in d["fields"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    {}\n      live:      {}\n      {to:<10} {}\n",
                f["field"].as_str().unwrap_or("?"),
                f["live"].as_str().unwrap_or("?"),
                f["candidate"].as_str().unwrap_or("?"),
            ));
        }
    }
    let noise: Vec<&str> = v["learned_noise"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !noise.is_empty() {
        out.push_str(&format!("learned as noise: {}\n", noise.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_read_field_by_field_with_both_values() {
        let v = json!({"to": "green", "learned_noise": ["$.now"], "diffs": [{
            "time": "2026-12-05T08:00:00Z", "request": "GET /price HTTP/1.1",
            "fields": [{"field": "$.price", "live": "10", "candidate": "12"}]}]});
        assert_eq!(
            render_diffs(&v),
            "2026-12-05T08:00:00Z GET /price HTTP/1.1\n    $.price\n      live:      10\n      green      12\nlearned as noise: $.now\n"
        );
        assert_eq!(
            render_diffs(&json!({"to": "blue", "diffs": []})),
            "no mismatches kept for blue\n"
        );
    }

    #[test]
    fn the_status_line_says_when_moves_are_refused() {
        let s = json!({"mirror": {"enabled": true, "percent": 10.0, "to": "green", "inflight": 2,
            "match": 90, "mismatch": 10, "error": 0, "dropped": 1, "mismatch_rate": 0.1,
            "max_mismatch_rate": 0.05, "refusing": true}});
        assert_eq!(
            status_line(&s),
            "mirror   10% to green  in flight 2  match 90 mismatch 10 error 0 dropped 1  mismatch rate 10.00% > max 5.00%: moves to it REFUSED\n"
        );
        assert_eq!(status_line(&json!({"mirror": {"enabled": false}})), "");
    }
}
