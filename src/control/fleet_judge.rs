//! Fleet-wide automatic rollback as pure logic (SPEC.md section 9, "One
//! decision"): what each member publishes ([`StatsReport`], built by
//! [`Publisher`]) and how the leader turns every member's reports into one
//! verdict ([`Aggregator`]) for the unchanged rules of [`super::judge`],
//! or, with `rollback.judge: sequential`, for [`super::sequential`] on the
//! sums of the reports since the generation began (the counts it needs).
//!
//! Each member publishes, every `rollback.interval`, its **cumulative**
//! per-pool [`Counts`] (requests, errors, latency histogram) since the state
//! document's `changed_at` for the current generation. The leader keeps the
//! reports it has seen, diffs each member's against that member's report of
//! `window` ago, **sums** the differences (histograms bucket by bucket, so a
//! fleet p99 is a real p99, never an average of p99s) and judges the sum;
//! `min_requests` therefore applies to the fleet's traffic. A verdict needs
//! fresh reports for the current generation from `min_reporting` of the live
//! members; the members that are not fresh are named in the figures.
//!
//! Neither reads a clock, etcd nor the statistics ring: the caller passes
//! the time, the reports and the live member list in, and acts on the
//! [`FleetVerdict`]. It must not decide anything but the verdict (the
//! [`super::judge::RollbackJudge`] still owns grace and breaches in a row,
//! and the controller owns the commit).

use super::judge::{evaluate_windows, NoVerdictReason, Verdict};
use crate::config::analysis::JudgeKind;
use crate::config::fleet::MinReporting;
use crate::config::{PoolName, RollbackConfig};
use crate::telemetry::stats::{Counts, PoolStats, WindowStats};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FleetJudgeError {
    #[error("a stats report is not valid JSON: {0}")]
    Decode(#[from] serde_json::Error),
}

/// What one member publishes under its lease (`stats/<id>`): cumulative
/// counts since `since_unix_ms` (the document's `changed_at`) for
/// `generation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    pub generation: u64,
    pub since_unix_ms: u64,
    /// The member's wall clock when it published (for the figures only).
    pub published_unix_ms: u64,
    /// Milliseconds of traffic these counts cover (member's monotonic clock).
    pub covered_ms: u64,
    pub blue: Counts,
    pub green: Counts,
}

impl StatsReport {
    pub fn pool(&self, pool: PoolName) -> &Counts {
        match pool {
            PoolName::Blue => &self.blue,
            PoolName::Green => &self.green,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A struct of integers and maps with integer keys always encodes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FleetJudgeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// A member's side: accumulates the finished buckets of its own two pools
/// into the cumulative report it publishes each interval.
#[derive(Debug, Clone)]
pub struct Publisher {
    report: StatsReport,
    /// Monotonic ms (stats clock) up to which buckets are counted.
    counted_until_ms: u64,
    started_ms: u64,
}

impl Publisher {
    /// Start counting for `generation` (changed at `since_unix_ms`) from the
    /// stats clock's `now_ms`: only traffic after it counts.
    pub fn new(generation: u64, since_unix_ms: u64, now_ms: u64) -> Self {
        Publisher {
            report: StatsReport {
                generation,
                since_unix_ms,
                ..StatsReport::default()
            },
            counted_until_ms: now_ms,
            started_ms: now_ms,
        }
    }

    pub fn generation(&self) -> u64 {
        self.report.generation
    }

    /// A new generation (a weight change): counting restarts from zero.
    pub fn restart(&mut self, generation: u64, since_unix_ms: u64, now_ms: u64) {
        *self = Publisher::new(generation, since_unix_ms, now_ms);
    }

    /// Add the buckets finished since the last call and return the report
    /// to publish.
    pub fn tick(
        &mut self,
        blue: &PoolStats,
        green: &PoolStats,
        now_ms: u64,
        now_unix_ms: u64,
    ) -> &StatsReport {
        let bucket = u64::try_from(blue.bucket().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let until = now_ms / bucket * bucket;
        if until > self.counted_until_ms {
            let from = self.counted_until_ms;
            self.report.blue.add(&blue.counts_between(from, until));
            self.report.green.add(&green.counts_between(from, until));
            self.counted_until_ms = until;
        }
        self.report.published_unix_ms = now_unix_ms;
        self.report.covered_ms = self.counted_until_ms.saturating_sub(self.started_ms);
        &self.report
    }
}

/// One report as the leader received it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    report: StatsReport,
}

/// The fleet's figures behind one verdict: who counted and who did not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetFigures {
    /// Members whose fresh reports were summed.
    pub reporting: Vec<String>,
    /// Live members without a fresh report for this generation.
    pub stale: Vec<String>,
    /// How many fresh reports a verdict needs.
    pub needed: usize,
    /// The summed candidate requests (also in the judge's figures on a breach).
    pub candidate_requests: u64,
    pub live_requests: u64,
}

/// A verdict of the fleet's sum, with the figures that name its members.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetVerdict {
    pub verdict: Verdict,
    pub fleet: FleetFigures,
    /// The fleet's candidate and live counts since the generation began
    /// (what the sequential judge weighs); None without enough reports.
    pub totals: Option<(Counts, Counts)>,
    /// The summed candidate and live figures over `window` (what the
    /// threshold rules judge); None without enough reports.
    pub window: Option<(WindowStats, WindowStats)>,
}

/// The leader's side: the reports of every member, summed into one verdict.
#[derive(Debug, Clone)]
pub struct Aggregator {
    /// Per member, its reports for the current generation, oldest first.
    members: BTreeMap<String, VecDeque<Seen>>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregator {
    pub fn new() -> Self {
        Aggregator {
            members: BTreeMap::new(),
        }
    }

    /// A member published `report` (seen at `now`).
    pub fn observe(&mut self, member: &str, report: StatsReport, now: Instant) {
        let history = self.members.entry(member.to_owned()).or_default();
        if history
            .back()
            .is_some_and(|last| last.report.generation != report.generation)
        {
            history.clear();
        }
        history.push_back(Seen { at: now, report });
    }

    /// A member's stats key is gone (its lease expired, or it left).
    pub fn forget(&mut self, member: &str) {
        self.members.remove(member);
    }

    /// Judge the fleet at `now` for `generation`: the candidate pool
    /// against the live one, over `cfg.window`. A report is fresh when it
    /// is for `generation` and arrived within two `cfg.interval`s; only live
    /// members count.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        &mut self,
        cfg: &RollbackConfig,
        min_reporting: MinReporting,
        live_members: &[String],
        generation: u64,
        candidate: PoolName,
        live: PoolName,
        now: Instant,
    ) -> FleetVerdict {
        let fresh_for = cfg.interval * 2;
        // Keep one report at or before the window's start per member.
        let keep_from = now.checked_sub(cfg.window + fresh_for);
        for history in self.members.values_mut() {
            while history.len() > 1 && keep_from.is_some_and(|k| history[1].at <= k) {
                history.pop_front();
            }
        }
        let needed = min_reporting.needed(live_members.len()).max(1);
        let mut reporting = Vec::new();
        let mut stale = Vec::new();
        let mut cand_sum = Counts::default();
        let mut live_sum = Counts::default();
        // The same sums over the recent window, when there is one.
        let recent_window = crate::control::judge::recent_window(cfg);
        let mut cand_recent = Counts::default();
        let mut live_recent = Counts::default();
        // The sequential judge's: everything since the generation began.
        let mut cand_total = Counts::default();
        let mut live_total = Counts::default();
        for member in live_members {
            let Some(history) = self.members.get(member) else {
                stale.push(member.clone());
                continue;
            };
            let Some(latest) = history.back() else {
                stale.push(member.clone());
                continue;
            };
            let is_fresh = latest.report.generation == generation
                && now.saturating_duration_since(latest.at) <= fresh_for;
            if !is_fresh {
                stale.push(member.clone());
                continue;
            }
            let baseline = baseline(history, cfg.window, now);
            let (cand, lv) = match baseline {
                Some(base) => (
                    latest.report.pool(candidate).since(base.pool(candidate)),
                    latest.report.pool(live).since(base.pool(live)),
                ),
                None => (
                    latest.report.pool(candidate).clone(),
                    latest.report.pool(live).clone(),
                ),
            };
            cand_sum.add(&cand);
            live_sum.add(&lv);
            cand_total.add(latest.report.pool(candidate));
            live_total.add(latest.report.pool(live));
            if let Some(w) = recent_window {
                let recent_base = self::baseline(history, w, now);
                let diff = |pool: PoolName| match recent_base {
                    Some(base) => latest.report.pool(pool).since(base.pool(pool)),
                    None => latest.report.pool(pool).clone(),
                };
                cand_recent.add(&diff(candidate));
                live_recent.add(&diff(live));
            }
            reporting.push(member.clone());
        }
        let fleet = FleetFigures {
            needed,
            candidate_requests: cand_sum.requests,
            live_requests: live_sum.requests,
            reporting,
            stale,
        };
        if !cfg.enabled {
            return FleetVerdict {
                verdict: Verdict::NoVerdict {
                    reason: NoVerdictReason::Disabled,
                },
                fleet,
                totals: None,
                window: None,
            };
        }
        if fleet.reporting.len() < needed {
            return FleetVerdict {
                verdict: Verdict::NoVerdict {
                    reason: NoVerdictReason::TooFewReporting {
                        reporting: fleet.reporting.len() as u64,
                        needed: needed as u64,
                    },
                },
                fleet,
                totals: None,
                window: None,
            };
        }
        let window = Some((
            cand_sum.summarize(cfg.window),
            live_sum.summarize(cfg.window),
        ));
        if cfg.judge == JudgeKind::Sequential {
            if let Some(verdict) = super::sequential::verdict(cfg, &cand_total, &live_total) {
                return FleetVerdict {
                    verdict,
                    fleet,
                    totals: Some((cand_total, live_total)),
                    window,
                };
            }
        }
        let recent = recent_window.map(|w| (cand_recent.summarize(w), live_recent.summarize(w)));
        let verdict = evaluate_windows(
            cfg,
            &cand_sum.summarize(cfg.window),
            &live_sum.summarize(cfg.window),
            recent.as_ref().map(|(c, l)| (c, l)),
        );
        FleetVerdict {
            verdict,
            fleet,
            totals: Some((cand_total, live_total)),
            window,
        }
    }
}

/// The report to diff against: the newest one at or before `now - window`.
/// None when the member's counts cover no more than the window (counters
/// start at zero with the generation, so the whole count is the window),
/// or when no report is that old (then the oldest one held: a shorter
/// window errs towards fewer requests, never towards counting old ones).
fn baseline(history: &VecDeque<Seen>, window: Duration, now: Instant) -> Option<&StatsReport> {
    let latest = history.back()?;
    if latest.report.covered_ms <= u64::try_from(window.as_millis()).unwrap_or(u64::MAX) {
        return None;
    }
    let start = now.checked_sub(window);
    let older = history
        .iter()
        .rev()
        .find(|seen| start.is_some_and(|s| seen.at <= s));
    match older {
        Some(seen) => Some(&seen.report),
        None => history.front().map(|seen| &seen.report),
    }
}

#[cfg(test)]
mod tests;
