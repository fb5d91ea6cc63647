//! The URL gate: GET until it answers 2xx, at most until the deadline.

use super::GateOutcome;
use crate::config::GateConfig;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

pub(super) async fn pass(gate: &GateConfig, deadline: Instant) -> GateOutcome {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Some(Ok(uri)) = gate.url.as_deref().map(str::parse::<http::Uri>) else {
        return GateOutcome {
            error: Some("invalid gate url".into()),
            ..GateOutcome::default()
        };
    };
    let mut last = None;
    let mut tick = tokio::time::interval(gate.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return GateOutcome {
                answer: last,
                ..GateOutcome::default()
            };
        }
        let call = tokio::time::timeout(gate.timeout.min(remaining), client.get(uri.clone())).await;
        match call {
            Ok(Ok(resp)) => {
                let status = resp.status();
                last = Some(status.as_u16().to_string());
                if status.is_success() {
                    return GateOutcome {
                        passed: true,
                        answer: last,
                        ..GateOutcome::default()
                    };
                }
            }
            Ok(Err(e)) => last = Some(format!("error: {e}")),
            Err(_) => last = Some("timeout".into()),
        }
    }
}
