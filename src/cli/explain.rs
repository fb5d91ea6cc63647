//! `switchyard ctl explain` (SPEC.md section 10): `GET /api/v1/explain` as
//! text: one line of what happens next, then every rollback rule and every
//! check with its value, threshold, verdict and what it waits for.

use serde_json::Value;

fn num(v: &Value) -> String {
    match v.as_f64() {
        None => "-".to_owned(),
        Some(x) if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) => format!("{x:.2e}"),
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.4}"),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Rows as columns padded to their widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The explanation as text.
pub fn render(v: &Value) -> String {
    let mut out = format!(
        "{} live, {} candidate, phase {}, generation {}\n{}\n",
        text(&v["live"]),
        text(&v["candidate"]),
        text(&v["phase"]),
        v["generation"],
        text(&v["summary"]),
    );
    let r = &v["rollback"];
    out.push_str(&format!(
        "\nrollback: judge {}, verdict {}, breaches {} of {}{}\n",
        text(&r["judge"]),
        text(&r["verdict"]),
        r["breaches"],
        r["consecutive_breaches"],
        r["waiting_for"]
            .as_str()
            .map(|w| format!(", waiting for {w}"))
            .unwrap_or_default(),
    ));
    let mut rows = vec![[
        "RULE",
        "VALUE",
        "THRESHOLD",
        "VERDICT",
        "WAITING FOR / DETAIL",
    ]
    .map(String::from)
    .to_vec()];
    for rule in r["rules"].as_array().into_iter().flatten() {
        let why = rule["waiting_for"]
            .as_str()
            .unwrap_or(text(&rule["detail"]));
        rows.push(vec![
            text(&rule["rule"]).to_owned(),
            num(&rule["value"]),
            num(&rule["threshold"]),
            text(&rule["verdict"]).to_owned(),
            why.to_owned(),
        ]);
    }
    out.push_str(&table(&rows));
    let checks = v["checks"].as_array().cloned().unwrap_or_default();
    if checks.is_empty() {
        out.push_str("\nchecks: none configured\n");
        return out;
    }
    out.push_str("\nchecks:\n");
    let mut rows = vec![[
        "CHECK",
        "VALUE",
        "THRESHOLD",
        "VERDICT",
        "FAILURES",
        "WAITING FOR / DETAIL",
    ]
    .map(String::from)
    .to_vec()];
    for c in &checks {
        let why = c["waiting_for"].as_str().unwrap_or(text(&c["detail"]));
        rows.push(vec![
            text(&c["name"]).to_owned(),
            num(&c["value"]),
            text(&c["threshold"]).to_owned(),
            text(&c["verdict"]).to_owned(),
            format!("{} of {}", c["failures"], c["failure_limit"]),
            why.to_owned(),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_rule_and_check_is_a_row_with_what_it_waits_for() {
        let v = json!({
            "live": "blue", "candidate": "green", "phase": "rolling", "generation": 7,
            "summary": "rollout: next step in 31 s; rollback: 17 of 50 requests",
            "rollback": {"judge": "threshold", "verdict": "no_verdict", "breaches": 0,
                "consecutive_breaches": 3, "waiting_for": "17 of 50 requests",
                "rules": [
                    {"rule": "max_error_rate", "value": 0.0, "threshold": 0.01,
                     "verdict": "waiting", "detail": "no verdict", "waiting_for": "17 of 50 requests in the 60s window"},
                    {"rule": "max_p99_latency", "value": null, "threshold": null,
                     "verdict": "off", "detail": "max_p99_latency is not set", "waiting_for": null}]},
            "checks": [{"name": "orders", "value": null, "threshold": "candidate/live >= 0.9",
                "verdict": "inconclusive", "failures": 0, "failure_limit": 3,
                "detail": "inconclusive: candidate: Prometheus answered no series",
                "waiting_for": "inconclusive: candidate: Prometheus answered no series"}]
        });
        let t = render(&v);
        assert!(
            t.starts_with("blue live, green candidate, phase rolling, generation 7\n"),
            "{t}"
        );
        assert!(t.contains("waiting for 17 of 50 requests"), "{t}");
        let rule = t
            .lines()
            .find(|l| l.contains("max_error_rate"))
            .expect("a rule row");
        assert!(
            rule.contains("0.01")
                && rule.contains("waiting")
                && rule.contains("17 of 50 requests in the 60s window"),
            "{rule}"
        );
        assert!(t.contains("max_p99_latency is not set"), "{t}");
        let check = t
            .lines()
            .find(|l| l.contains("orders"))
            .expect("a check row");
        assert!(
            check.contains("inconclusive: candidate: Prometheus answered no series"),
            "{check}"
        );
        assert!(check.contains("0 of 3"), "{check}");
    }
}
