//! The `mirror.max_mismatch_rate` guardrail (SPEC.md section 12): a rollout
//! or switch to the candidate is refused (409, with the rate) while the
//! copies sent to it answered differently from the live pool more often
//! than that over the last `rollback.window`. `force` passes it, like the
//! other guardrails; with no copy compared in the window there is no
//! verdict and nothing is refused.

use crate::config::PoolName;
use crate::control::controller::Controller;

impl Controller {
    /// Refused when `to` is the candidate and its mismatch rate is above
    /// `mirror.max_mismatch_rate`: the message names the rate.
    pub(crate) fn check_mirror(&self, to: PoolName) -> Result<(), String> {
        let cfg = self.shared.config.load();
        let table = self.shared.table.load();
        if to != table.candidate() {
            return Ok(());
        }
        let window = cfg.rollback.window;
        let record = &table.pool(to).runtime.mirror;
        let Some(w) =
            record.over_limit(crate::clock::now_ms(), window, cfg.mirror.max_mismatch_rate)
        else {
            return Ok(());
        };
        Err(format!(
            "pool {to} answered {} of {} mirrored requests differently over the last {} (mismatch rate {:.4} > mirror.max_mismatch_rate {}); see GET /api/v1/mirror/diffs, or force",
            w.errors,
            w.requests,
            humantime::format_duration(window),
            w.error_rate,
            cfg.mirror.max_mismatch_rate.unwrap_or_default(),
        ))
    }
}
