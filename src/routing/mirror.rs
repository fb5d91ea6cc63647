//! The `mirror` section as the request path applies it: a [`MirrorPlan`]
//! in the table's settings, so it changes atomically with the table, and
//! the per-request choice of whether to copy ([`MirrorPlan::wants`]).
//!
//! A request is copied when it is served by the live pool (a copy of the
//! candidate's own traffic would compare it with itself), its method is
//! listed, its body is known to fit `max_body` (or is empty), it is not an
//! upgrade, and a draw falls under `percent`. Only safe methods are listed
//! by default: a copied write is a second write on the candidate. Sending
//! and comparing the copy is `proxy::mirror`'s job.

use crate::config::mirror::{JsonPath, MirrorConfig};
use http::{HeaderName, Method};

/// `mirror`, compiled once per table build.
#[derive(Debug, Clone)]
pub struct MirrorPlan {
    /// Share of eligible requests copied, in hundredths of a percent.
    pub bp: u32,
    pub methods: Vec<Method>,
    pub max_body: u64,
    pub max_inflight: u32,
    /// None: copies are sent and counted, never compared (all `match`).
    pub compare: Option<ComparePlan>,
    pub max_mismatch_rate: Option<f64>,
}

/// `mirror.compare`.
#[derive(Debug, Clone)]
pub struct ComparePlan {
    pub ignore_headers: Vec<HeaderName>,
    pub ignore_json: Vec<JsonPath>,
    pub learn_noise: bool,
}

impl MirrorPlan {
    /// The plan for `cfg`; None when nothing is copied (`percent: 0`). A
    /// config that passed validation has only valid methods, names and paths.
    pub fn from_config(cfg: &MirrorConfig) -> Option<std::sync::Arc<MirrorPlan>> {
        let bp = (cfg.percent * 100.0).round().clamp(0.0, 10_000.0) as u32;
        if bp == 0 {
            return None;
        }
        let c = &cfg.compare;
        Some(std::sync::Arc::new(MirrorPlan {
            bp,
            methods: cfg
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            max_body: cfg.max_body.0,
            max_inflight: cfg.max_inflight,
            compare: c.enabled.then(|| ComparePlan {
                ignore_headers: c
                    .ignore_headers
                    .iter()
                    .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                    .collect(),
                ignore_json: c
                    .ignore_json
                    .iter()
                    .filter_map(|p| JsonPath::parse(p).ok())
                    .collect(),
                learn_noise: c.learn_noise,
            }),
            max_mismatch_rate: cfg.max_mismatch_rate,
        }))
    }

    /// Copy this request? `body_upper` is the most its body can hold
    /// (0 for none; None when unknown, e.g. chunked: not copied, since
    /// a copy is sent only once the body it holds is known whole and
    /// small). `draw` is a number below 10 000.
    #[inline]
    pub fn wants(&self, method: &Method, body_upper: Option<u64>, draw: u32) -> bool {
        draw < self.bp
            && self.methods.iter().any(|m| m == method)
            && body_upper.is_some_and(|n| n <= self.max_body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml_percent: f64, methods: &[&str]) -> MirrorPlan {
        let cfg = MirrorConfig {
            percent: yaml_percent,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            ..MirrorConfig::default()
        };
        (*MirrorPlan::from_config(&cfg).unwrap()).clone()
    }

    #[test]
    fn percent_zero_is_no_plan() {
        assert!(MirrorPlan::from_config(&MirrorConfig::default()).is_none());
        assert_eq!(plan(0.01, &["GET"]).bp, 1);
        assert_eq!(plan(100.0, &["GET"]).bp, 10_000);
    }

    #[test]
    fn only_listed_methods_with_a_small_known_body_under_the_draw() {
        let p = plan(10.0, &["GET", "HEAD"]);
        assert!(p.wants(&Method::GET, Some(0), 0));
        assert!(p.wants(&Method::HEAD, Some(0), 999));
        assert!(!p.wants(&Method::GET, Some(0), 1000));
        assert!(!p.wants(&Method::POST, Some(0), 0));
        assert!(p.wants(&Method::GET, Some(64 * 1024), 0));
        assert!(!p.wants(&Method::GET, Some(64 * 1024 + 1), 0));
        assert!(!p.wants(&Method::GET, None, 0));
        let w = plan(100.0, &["POST"]);
        assert!(w.wants(&Method::POST, Some(10), 9_999));
        // Over many draws, the share is the percentage.
        let copied = (0..10_000u32)
            .filter(|d| p.wants(&Method::GET, Some(0), *d))
            .count();
        assert_eq!(copied, 1000);
    }
}
