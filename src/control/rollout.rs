//! A step-by-step rollout: the candidate's percentage at each step, the
//! interval between steps, and where the rollout stands.
//!
//! Pure data and arithmetic; the controller owns the timer and applies the
//! weights. Times are Unix milliseconds so a rollout survives a restart.

use crate::config::PoolName;
use crate::routing::Weights;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The pool being rolled out (the candidate).
    pub to: PoolName,
    /// The candidate's percentage at each step, ending at 100.
    pub steps: Vec<f64>,
    /// Index into `steps` of the step in force.
    pub step: usize,
    #[serde(with = "humantime_serde")]
    pub step_interval: Duration,
    /// false: every step waits for `promote`.
    pub auto_promote: bool,
    pub paused: bool,
    /// When the next automatic step is due; None while paused or waiting for promote.
    pub next_step_at_unix_ms: Option<u64>,
}

/// What advancing a rollout leads to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Advance {
    /// A new step with these weights.
    Step(Weights),
    /// The last step (100 %) is reached: the rollout is complete.
    Completed(Weights),
}

impl Rollout {
    pub fn new(
        to: PoolName,
        steps: Vec<f64>,
        step_interval: Duration,
        auto_promote: bool,
        now_unix_ms: u64,
    ) -> Self {
        let mut r = Rollout {
            to,
            steps,
            step: 0,
            step_interval,
            auto_promote,
            paused: false,
            next_step_at_unix_ms: None,
        };
        r.schedule(now_unix_ms);
        r
    }

    /// The weights of the step in force.
    pub fn weights(&self) -> Weights {
        Weights::with_percent(self.to, self.steps[self.step])
    }

    pub fn is_last_step(&self) -> bool {
        self.step + 1 >= self.steps.len()
    }

    /// Set the time of the next automatic step, if there is one.
    pub fn schedule(&mut self, now_unix_ms: u64) {
        self.next_step_at_unix_ms = (self.auto_promote && !self.paused && !self.is_last_step())
            .then(|| crate::clock::unix_ms_after(now_unix_ms, self.step_interval));
    }

    /// Is an automatic step due at `now`?
    pub fn due(&self, now_unix_ms: u64) -> bool {
        self.next_step_at_unix_ms.is_some_and(|t| t <= now_unix_ms)
    }

    /// Move to the next step and schedule the one after.
    pub fn advance(&mut self, now_unix_ms: u64) -> Advance {
        if !self.is_last_step() {
            self.step += 1;
        }
        self.schedule(now_unix_ms);
        if self.is_last_step() {
            Advance::Completed(self.weights())
        } else {
            Advance::Step(self.weights())
        }
    }

    pub fn pause(&mut self) {
        self.paused = true;
        self.next_step_at_unix_ms = None;
    }

    pub fn resume(&mut self, now_unix_ms: u64) {
        self.paused = false;
        self.schedule(now_unix_ms);
    }

    /// The `rollout` object of the status document.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "to": self.to,
            "step": self.step + 1,
            "steps": self.steps,
            "percent": self.steps[self.step],
            "step_interval": humantime::format_duration(self.step_interval).to_string(),
            "auto_promote": self.auto_promote,
            "paused": self.paused,
            "next_step_at": self.next_step_at_unix_ms.map(crate::clock::rfc3339),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_advance_on_schedule_and_complete_at_100() {
        let mut r = Rollout::new(
            PoolName::Green,
            vec![10.0, 50.0, 100.0],
            Duration::from_secs(1),
            true,
            1_000,
        );
        assert_eq!(r.weights().percent(PoolName::Green), 10.0);
        assert!(!r.due(1_999));
        assert!(r.due(2_000));
        assert_eq!(
            r.advance(2_000),
            Advance::Step(Weights::with_percent(PoolName::Green, 50.0))
        );
        assert_eq!(r.next_step_at_unix_ms, Some(3_000));
        assert_eq!(
            r.advance(3_000),
            Advance::Completed(Weights::all_on(PoolName::Green))
        );
        assert_eq!(r.next_step_at_unix_ms, None);
    }

    #[test]
    fn pause_stops_the_clock_and_manual_promotion_waits() {
        let mut r = Rollout::new(
            PoolName::Blue,
            vec![25.0, 100.0],
            Duration::from_secs(5),
            true,
            0,
        );
        r.pause();
        assert!(!r.due(u64::MAX));
        r.resume(10_000);
        assert_eq!(r.next_step_at_unix_ms, Some(15_000));
        let manual = Rollout::new(
            PoolName::Blue,
            vec![25.0, 100.0],
            Duration::from_secs(5),
            false,
            0,
        );
        assert_eq!(manual.next_step_at_unix_ms, None);
        assert_eq!(manual.weights().percent(PoolName::Blue), 25.0);
    }
}
