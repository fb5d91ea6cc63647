//! Reading one check's value for one pool: a Prometheus instant query
//! (`GET /api/v1/query`) or a URL answering `{"value": N}` (or only a
//! status). Every way of getting no number is a [`Reading::NoData`] that
//! says why, in the words `explain` shows.

use super::Reading;
use crate::config::analysis::{fill, CheckConfig, PrometheusSource};
use crate::config::PoolName;
use crate::upstream::outbound::{self, percent_encode};

/// Read `cfg`'s value for `pool`.
pub async fn read(cfg: &CheckConfig, pool: PoolName) -> Reading {
    match (&cfg.prometheus, &cfg.http) {
        (Some(p), _) => prometheus(p, pool, cfg).await,
        (None, Some(h)) => http(&fill(&h.url, pool.as_str()), cfg).await,
        (None, None) => Reading::NoData("the check has no source".into()),
    }
}

/// The instant-query URL of `src` for `pool`.
pub fn query_url(src: &PrometheusSource, pool: PoolName) -> String {
    format!(
        "{}/api/v1/query?query={}",
        src.url.trim_end_matches('/'),
        percent_encode(&fill(&src.query, pool.as_str()))
    )
}

async fn prometheus(src: &PrometheusSource, pool: PoolName, cfg: &CheckConfig) -> Reading {
    match outbound::get(&query_url(src, pool), cfg.timeout).await {
        Ok(a) => prometheus_answer(a.status, &a.body),
        Err(e) => Reading::NoData(format!("Prometheus unreachable: {e}")),
    }
}

/// What Prometheus' answer says: one sample, or why there is none.
pub fn prometheus_answer(status: u16, body: &[u8]) -> Reading {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Reading::NoData(format!("Prometheus answered {status} without JSON"));
    };
    if v["status"] != "success" {
        return Reading::NoData(format!(
            "Prometheus answered {status}: {} {}",
            v["errorType"].as_str().unwrap_or("error"),
            v["error"].as_str().unwrap_or("")
        ));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("vector") => {
            let series = data["result"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            match series {
                [] => return Reading::NoData("Prometheus answered no series".into()),
                [one] => &one["value"],
                many => {
                    return Reading::NoData(format!(
                        "Prometheus answered {} series; the query must give one (wrap it in sum())",
                        many.len()
                    ))
                }
            }
        }
        Some("scalar") => &data["result"],
        other => {
            return Reading::NoData(format!(
                "Prometheus answered a {}; the query must give one number",
                other.unwrap_or("result of no type")
            ))
        }
    };
    // A sample is [time, "value"]; the value is a string ("NaN", "+Inf" too).
    match sample[1].as_str().map(str::parse::<f64>) {
        Some(Ok(x)) => Reading::Value(x),
        _ => Reading::NoData(format!(
            "Prometheus answered a sample without a value: {sample}"
        )),
    }
}

async fn http(url: &str, cfg: &CheckConfig) -> Reading {
    match outbound::get(url, cfg.timeout).await {
        Ok(a) => http_answer(cfg.status_only(), a.status, &a.body),
        Err(e) => Reading::NoData(format!("{url} unreachable: {e}")),
    }
}

/// What a check URL's answer says.
pub fn http_answer(status_only: bool, status: u16, body: &[u8]) -> Reading {
    if status_only {
        return Reading::Status(status);
    }
    if !(200..300).contains(&status) {
        return Reading::NoData(format!("the check URL answered {status}"));
    }
    let value = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["value"].as_f64());
    match value {
        Some(x) => Reading::Value(x),
        None => Reading::NoData(format!(
            "the check URL answered {status} without {{\"value\": NUMBER}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_answers_one_sample_or_says_why_not() {
        let one = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"42.5"]}]}}"#;
        assert_eq!(prometheus_answer(200, one), Reading::Value(42.5));
        let none = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            prometheus_answer(200, none),
            Reading::NoData("Prometheus answered no series".into())
        );
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(
            matches!(prometheus_answer(200, two), Reading::NoData(m) if m.contains("2 series"))
        );
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert!(matches!(prometheus_answer(200, nan), Reading::Value(x) if x.is_nan()));
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert!(
            matches!(prometheus_answer(400, bad), Reading::NoData(m) if m.contains("400: bad_data parse error"))
        );
        assert!(
            matches!(prometheus_answer(502, b"<html>"), Reading::NoData(m) if m.contains("without JSON"))
        );
    }

    #[test]
    fn a_check_url_gives_a_value_or_a_status() {
        assert_eq!(
            http_answer(false, 200, br#"{"value": 7}"#),
            Reading::Value(7.0)
        );
        assert!(matches!(http_answer(false, 200, b"ok"), Reading::NoData(_)));
        assert!(
            matches!(http_answer(false, 503, br#"{"value": 7}"#), Reading::NoData(m) if m.contains("503"))
        );
        assert_eq!(http_answer(true, 503, b""), Reading::Status(503));
    }

    #[test]
    fn the_query_is_templated_and_encoded() {
        let src = PrometheusSource {
            url: "http://127.0.0.1:9090/".into(),
            query: r#"sum(rate(orders_total{pool="{{pool}}"}[1m]))"#.into(),
        };
        assert_eq!(
            query_url(&src, PoolName::Green),
            "http://127.0.0.1:9090/api/v1/query?query=sum%28rate%28orders_total%7Bpool%3D%22green%22%7D%5B1m%5D%29%29"
        );
    }
}
