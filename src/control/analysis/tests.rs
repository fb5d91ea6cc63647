//! The verdict of one reading, and what a stream of reports makes the
//! controller do.

use super::drive::{Action, Analysis};
use super::runner::Target;
use super::*;
use crate::config::analysis::{HttpSource, PrometheusSource};
use crate::control::document::StateDoc;
use crate::routing::Weights;
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

fn check(compare: Compare) -> CheckConfig {
    CheckConfig {
        name: "orders".into(),
        prometheus: Some(PrometheusSource {
            url: "http://127.0.0.1:9".into(),
            query: "up".into(),
        }),
        http: None,
        compare,
        min_ratio: None,
        max_ratio: None,
        min: None,
        max: None,
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(1),
        failure_limit: 2,
    }
}

fn baseline(min_ratio: f64) -> CheckConfig {
    CheckConfig {
        min_ratio: Some(min_ratio),
        ..check(Compare::Baseline)
    }
}

#[test]
fn a_baseline_check_holds_the_ratio_to_its_bounds() {
    let c = CheckConfig {
        max_ratio: Some(1.5),
        ..baseline(0.9)
    };
    let v = Reading::Value;
    let j = judge(&c, &v(95.0), Some(&v(100.0)));
    assert_eq!(j.verdict, CheckVerdict::Pass);
    assert_eq!(j.ratio, Some(0.95));
    let j = judge(&c, &v(20.0), Some(&v(100.0)));
    assert_eq!(j.verdict, CheckVerdict::Fail);
    assert_eq!(j.detail, "candidate/live 0.2000 is below 0.9");
    assert_eq!(
        judge(&c, &v(200.0), Some(&v(100.0))).verdict,
        CheckVerdict::Fail
    );
    assert_eq!(threshold(&c), "0.9 <= candidate/live <= 1.5");
}

#[test]
fn no_data_nan_and_a_zero_baseline_are_inconclusive_never_a_verdict() {
    let c = baseline(0.9);
    let none = Reading::NoData("Prometheus answered no series".into());
    let j = judge(&c, &none, Some(&Reading::Value(1.0)));
    assert_eq!(j.verdict, CheckVerdict::Inconclusive);
    assert_eq!(
        j.detail,
        "inconclusive: candidate: Prometheus answered no series"
    );
    let j = judge(&c, &Reading::Value(1.0), Some(&Reading::Value(f64::NAN)));
    assert_eq!(j.verdict, CheckVerdict::Inconclusive);
    assert!(j.detail.contains("live value is NaN"), "{}", j.detail);
    let j = judge(&c, &Reading::Value(0.0), Some(&Reading::Value(0.0)));
    assert_eq!(j.verdict, CheckVerdict::Inconclusive);
    assert!(j.detail.contains("no baseline"), "{}", j.detail);
    let j = judge(&c, &Reading::Value(1.0), None);
    assert_eq!(j.verdict, CheckVerdict::Inconclusive);
}

#[test]
fn an_absolute_check_and_a_status_only_check() {
    let c = CheckConfig {
        min: Some(1.0),
        ..check(Compare::Absolute)
    };
    assert_eq!(
        judge(&c, &Reading::Value(0.5), None).verdict,
        CheckVerdict::Fail
    );
    assert_eq!(
        judge(&c, &Reading::Value(1.0), None).verdict,
        CheckVerdict::Pass
    );
    let status = CheckConfig {
        prometheus: None,
        http: Some(HttpSource {
            url: "http://127.0.0.1:9/{{pool}}".into(),
        }),
        ..check(Compare::Absolute)
    };
    assert!(status.status_only());
    assert_eq!(
        judge(&status, &Reading::Status(204), None).verdict,
        CheckVerdict::Pass
    );
    assert_eq!(
        judge(&status, &Reading::Status(500), None).verdict,
        CheckVerdict::Fail
    );
    let unreachable = Reading::NoData("unreachable".into());
    assert_eq!(
        judge(&status, &unreachable, None).verdict,
        CheckVerdict::Inconclusive
    );
}

fn rolling() -> StateDoc {
    let mut d = StateDoc::initial(Weights::with_percent(PoolName::Green, 10.0), 0);
    d.generation = 1;
    d
}

fn report(a: &Analysis, verdict: CheckVerdict, candidate: f64) -> CheckReport {
    CheckReport {
        check: "orders".into(),
        epoch: a.target().expect("armed").epoch,
        verdict,
        candidate_pool: PoolName::Green,
        candidate: Some(candidate),
        live: Some(100.0),
        ratio: Some(candidate / 100.0),
        threshold: "candidate/live >= 0.9".into(),
        detail: format!("candidate/live {:.4}", candidate / 100.0),
        time: String::new(),
    }
}

#[tokio::test]
async fn failures_in_a_row_roll_back_and_a_pass_breaks_the_run() {
    let metrics = Metrics::new();
    let m = &metrics.analysis;
    let mut a = Analysis::new(Arc::new(|_| {}), &[baseline(0.9)]);
    assert!(
        a.target().is_none(),
        "not armed before the controller arms it"
    );
    a.arm(&rolling(), true);
    assert_eq!(a.target().map(|t| t.candidate), Some(PoolName::Green));
    assert_eq!(
        a.on_report(report(&a, CheckVerdict::Fail, 20.0), m),
        Action::Nothing
    );
    assert_eq!(
        a.on_report(report(&a, CheckVerdict::Pass, 95.0), m),
        Action::Nothing
    );
    assert_eq!(
        a.on_report(report(&a, CheckVerdict::Fail, 20.0), m),
        Action::Nothing
    );
    let Action::Rollback { text, figures } = a.on_report(report(&a, CheckVerdict::Fail, 20.0), m)
    else {
        panic!("two failures in a row roll back");
    };
    assert!(
        text.starts_with("check orders failed 2 times in a row"),
        "{text}"
    );
    assert_eq!(figures["candidate"], 20.0);
    assert_eq!(figures["live"], 100.0);
    assert_eq!(figures["failure_limit"], 2);
    let text = metrics.encode();
    assert!(
        text.contains("switchyard_checks_total{check=\"orders\",result=\"fail\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_check_value{check=\"orders\",pool=\"green\"} 20"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_check_value{check=\"orders\",pool=\"blue\"} 100"),
        "{text}"
    );
}

#[tokio::test]
async fn a_step_waits_for_a_pass_since_it_began_and_old_readings_are_dropped() {
    let metrics = Metrics::new();
    let m = &metrics.analysis;
    let mut a = Analysis::new(Arc::new(|_| {}), &[baseline(0.9)]);
    a.arm(&rolling(), true);
    let waiting = a.step_ready().expect_err("no reading yet");
    assert!(waiting.contains("no reading yet"), "{waiting}");
    a.on_report(report(&a, CheckVerdict::Pass, 95.0), m);
    assert_eq!(a.step_ready(), Ok(()));
    let before = report(&a, CheckVerdict::Pass, 95.0);
    a.step_began();
    a.arm(&rolling(), true);
    assert!(a.step_ready().is_err(), "a new step needs a new pass");
    assert_eq!(a.on_report(before, m), Action::Nothing);
    assert!(
        a.step_ready().is_err(),
        "a reading from before the step does not count"
    );
    let pause = a.on_report(report(&a, CheckVerdict::Inconclusive, 95.0), m);
    assert!(
        matches!(pause, Action::Pause(ref why) if why.starts_with("check orders is")),
        "{pause:?}"
    );
    a.on_report(report(&a, CheckVerdict::Pass, 95.0), m);
    assert_eq!(a.step_ready(), Ok(()));
}

#[tokio::test]
async fn checks_are_armed_only_while_the_candidate_takes_traffic_and_this_proxy_decides() {
    let mut a = Analysis::new(Arc::new(|_| {}), &[baseline(0.9)]);
    a.arm(&rolling(), false);
    assert_eq!(a.target(), None, "not the fleet's leader");
    let stable = StateDoc::initial(Weights::all_on(PoolName::Blue), 0);
    a.arm(&stable, true);
    assert_eq!(a.target(), None, "no candidate traffic");
    let mut baking = StateDoc::initial(Weights::all_on(PoolName::Green), 0);
    baking.live = PoolName::Blue;
    a.arm(&baking, true);
    let t = a.target().expect("armed while baking");
    assert_eq!(
        t,
        Target {
            candidate: PoolName::Green,
            baseline: false,
            epoch: 0
        }
    );
    assert_eq!(
        a.step_ready(),
        Ok(()),
        "a baseline check without a baseline does not hold a step"
    );
}

#[tokio::test]
async fn a_check_reads_a_real_url_through_its_task() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let value = if head.starts_with("GET /v/green") {
                40
            } else {
                100
            };
            let body = format!("{{\"value\": {value}}}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let c = CheckConfig {
        prometheus: None,
        http: Some(HttpSource {
            url: format!("http://{addr}/v/{{{{pool}}}}"),
        }),
        ..baseline(0.9)
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut a = Analysis::new(Arc::new(move |r| drop(tx.send(r))), &[c]);
    a.arm(&rolling(), true);
    let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a report in time")
        .expect("a report");
    assert_eq!(r.verdict, CheckVerdict::Fail, "{r:?}");
    assert_eq!(
        (r.candidate, r.live, r.ratio),
        (Some(40.0), Some(100.0), Some(0.4))
    );
}
