//! Mirroring as the admin API shows it (SPEC.md section 12): `status.mirror`
//! and `GET /api/v1/mirror/diffs`.
//!
//! Both read the candidate's mirror record (the copies sent to the pool
//! that is the candidate now) and the `mirror` section in force; nothing
//! here changes anything.

use crate::control::Shared;
use crate::telemetry::mirror::{MirrorDiff, MirrorFigures};
use serde::Serialize;

/// `status.mirror`: always present; `enabled` is false with `percent: 0`
/// (the figures of earlier copies are still shown).
#[derive(Debug, Serialize)]
pub struct MirrorStatus {
    pub enabled: bool,
    pub percent: f64,
    /// The pool copies go to: the candidate.
    pub to: crate::config::PoolName,
    pub methods: Vec<String>,
    pub max_inflight: u32,
    pub compare: bool,
    pub max_mismatch_rate: Option<f64>,
    /// The window `mismatch_rate` is over: `rollback.window`, in seconds.
    pub window_s: f64,
    /// True while a rollout or switch to the candidate would be refused
    /// (409): `mismatch_rate` is above `max_mismatch_rate`.
    pub refusing: bool,
    #[serde(flatten)]
    pub figures: MirrorFigures,
    /// Fields that differed between two live answers, left out of every
    /// comparison from then on (`status`, `header:NAME`, `body`, JSON paths).
    pub learned_noise: Vec<String>,
}

/// `GET /api/v1/mirror/diffs`: the last mismatches, newest first.
#[derive(Debug, Serialize)]
pub struct MirrorDiffs {
    pub to: crate::config::PoolName,
    pub diffs: Vec<MirrorDiff>,
    pub learned_noise: Vec<String>,
}

pub fn status(shared: &Shared) -> MirrorStatus {
    let cfg = shared.config.load();
    let table = shared.table.load();
    let to = table.candidate();
    let record = &table.pool(to).runtime.mirror;
    let window = cfg.rollback.window;
    let now = crate::clock::now_ms();
    let figures = record.figures(now, window);
    let m = &cfg.mirror;
    let refusing = record
        .over_limit(now, window, m.max_mismatch_rate)
        .is_some();
    MirrorStatus {
        enabled: table.settings.mirror.is_some(),
        percent: m.percent,
        to,
        methods: m.methods.clone(),
        max_inflight: m.max_inflight,
        compare: m.compare.enabled,
        max_mismatch_rate: m.max_mismatch_rate,
        window_s: window.as_secs_f64(),
        refusing,
        figures,
        learned_noise: record.noise().iter().cloned().collect(),
    }
}

pub fn diffs(shared: &Shared, limit: usize) -> MirrorDiffs {
    let table = shared.table.load();
    let to = table.candidate();
    let record = &table.pool(to).runtime.mirror;
    MirrorDiffs {
        to,
        diffs: record.diffs(limit),
        learned_noise: record.noise().iter().cloned().collect(),
    }
}
