//! `GET /api/v1/history`: the last 15 minutes of per-pool traffic at one
//! second resolution, so that the dashboard draws its charts on load; and
//! the task that takes a sample every second, keeps it and sends it on the
//! feed for the streams.
//!
//! The figures are this proxy's own traffic (in fleet mode too: each member
//! shows what it served).

use crate::admin::routes::AdminState;
use crate::control::feed::Change;
use crate::control::Shared;
use crate::telemetry::history::{History, Sampler, CAPACITY, INTERVAL};
use axum::extract::State;
use axum::Json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Sample both pools every [`INTERVAL`] until `stop`.
pub fn spawn(shared: Arc<Shared>, history: Arc<History>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut sampler = Sampler::new(crate::clock::now_ms());
        let mut tick = tokio::time::interval(INTERVAL);
        // A late tick is no loss: the next sample covers the whole gap.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let [blue, green] = &shared.runtimes;
            let now = crate::clock::now_ms();
            let unix = crate::clock::unix_ms();
            if let Some(sample) = sampler.sample([&blue.stats, &green.stats], now, unix) {
                let sample = Arc::new(sample);
                history.push((*sample).clone());
                shared.feed.send(Change::Sample(sample));
            }
        }
    });
}

pub async fn get_history(State(st): State<AdminState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "interval_ms": INTERVAL.as_millis() as u64,
        "capacity": CAPACITY,
        "samples": st.history.samples(),
    }))
}
