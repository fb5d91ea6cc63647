//! `openapi.yaml` stays true: every documented operation exists on a live
//! proxy, answers one of its documented statuses, and a 2xx JSON answer
//! carries every property the schema marks required.

use crate::support::*;
use http::Method;
use serde_json::{json, Value};

fn spec() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("openapi.yaml parses")
}

/// Follow `$ref`s (local ones only) until a concrete node.
fn resolve<'a>(spec: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let mut cur = spec;
        for part in r.trim_start_matches("#/").split('/') {
            cur = &cur[part];
        }
        node = cur;
    }
    node
}

/// Required properties of a schema, through `allOf`.
fn required(spec: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(spec, schema);
    let mut out: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(required(spec, part));
    }
    out
}

fn body_for(path: &str) -> Option<Value> {
    match path {
        "/api/v1/weights" => Some(json!({"blue": 100, "green": 0})),
        "/api/v1/switch" => Some(json!({"to": "blue"})),
        "/api/v1/rollout" => {
            Some(json!({"to": "green", "steps": [50, 100], "step_interval": "1h"}))
        }
        _ => None,
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    let spec = spec();
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 14, "too few documented paths");
    let mut checked = 0;
    // Rollout first, so the rollout actions meet a rollout in progress.
    let mut ordered: Vec<(&String, &Value)> = paths.iter().collect();
    ordered.sort_by_key(|(p, _)| (!p.ends_with("/rollout"), p.contains("abort")));
    for (path, item) in ordered {
        for (method, op) in item.as_object().unwrap() {
            let op = resolve(&spec, op);
            let m: Method = method.to_uppercase().parse().unwrap();
            let documented = &op["responses"];
            if documented["200"]["content"]
                .get("text/event-stream")
                .is_some()
            {
                // An endless body: check the head only.
                let resp = client()
                    .get(admin_url(&s, path).parse().unwrap())
                    .await
                    .expect("the stream answers");
                assert_eq!(resp.status(), 200, "{method} {path}");
                assert_eq!(resp.headers()["content-type"], "text/event-stream");
                checked += 1;
                continue;
            }
            let (code, value) = api(s.admin_addr, m.clone(), path, body_for(path), None).await;
            assert!(
                documented.get(code.to_string()).is_some(),
                "{method} {path} answered {code}, documented: {:?}: {value}",
                documented.as_object().map(|o| o.keys().collect::<Vec<_>>())
            );
            if (200..300).contains(&code) {
                let resp = resolve(&spec, &documented[code.to_string()]);
                if let Some(schema) = resp["content"]["application/json"].get("schema") {
                    for key in required(&spec, schema) {
                        assert!(
                            value.get(&key).is_some(),
                            "{method} {path}: no `{key}` in {value}"
                        );
                    }
                }
            } else if value.is_object() {
                for key in required(&spec, &spec["components"]["schemas"]["Error"]) {
                    assert!(
                        value.get(&key).is_some(),
                        "{method} {path}: error without `{key}`"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 14);
    s.shutdown().await;
}
