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
    let out = render_status(&s, &Style::plain());
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
    let out = render_status(&s, &Style::plain());
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
    let out = render_status(&status, &Style::plain());
    assert!(
        out.contains(&format!("config   RESTART NEEDED: {note}")),
        "{out}"
    );
}

#[test]
fn a_split_and_a_bake_are_named_for_what_they_are() {
    let out = render_status(&json!({"phase": "split"}), &Style::plain());
    assert!(out.starts_with("phase manual split "), "{out}");
    let out = render_status(
        &json!({"phase": "baking",
        "bake": {"pool": "green", "until": "2026-12-05T10:00:00Z"}}),
        &Style::plain(),
    );
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
