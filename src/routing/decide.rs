//! The route decision for one request (SPEC.md sections 4 and 5): given the
//! table in force, where the request goes, or that it waits out a write
//! hold, or that it is refused.
//!
//! The rules, first match wins:
//!
//! 1. A write (unsafe method) meeting a hold waits on it; when `max_held`
//!    writes already wait, it is refused (503 with `Retry-After`). Reads,
//!    and writes released from a hold, never wait.
//! 2. The pool: a preview listener's, else the one a trusted client names
//!    in the override header (`blue`/`green`, any case), else the sticky
//!    bucket's (a client without a valid bucket cookie gets a new bucket,
//!    and the cookie is to be set), else a weighted random pick.
//! 3. The endpoint: of two available ones drawn at random, the one with
//!    fewer requests in flight.
//! 4. A pool with no available endpoint: the other pool, with
//!    `traffic.failover`, unless the pool was pinned (preview listener or
//!    override header). Neither: refused (503).
//!
//! [`decide`] is synchronous and allocation-free. It reads the table and the
//! endpoint atomics, hands out a sticky bucket and takes a place in the hold
//! queue; it records nothing (the caller records what it decided) and draws
//! its random numbers from the [`Draw`] it is given. [`admit`] is the step
//! before it for writes: counting the write against a hold being published.
//!
//! It must not import from `proxy`, `control` or `admin`, nor take the
//! server's request type: the request is described by plain values
//! ([`RouteInput`]).

use crate::config::{PoolName, PoolSelector};
use crate::routing::draw::Draw;
use crate::routing::hold::{HeldTicket, WriteToken, WritesInFlight};
use crate::routing::weights::TOTAL_BP;
use crate::routing::{sticky, RoutingTable};
use arc_swap::ArcSwap;
use http::{header, HeaderMap};
use std::net::IpAddr;
use std::sync::Arc;

/// What a request does to deployment state, as the write hold sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A safe method (RFC 9110 section 9.2.1): never held.
    Read,
    /// Any other method: held while a switch holds writes.
    Write,
    /// A write that has waited out a hold: it goes now, whatever the table.
    Released,
}

/// One request as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    pub access: Access,
    /// The pool a preview listener pins its traffic to.
    pub preview: Option<PoolSelector>,
    /// The request's header fields. Only the override header and `Cookie`
    /// are read, and each only when the table's settings configure it (so
    /// a proxy without them pays no lookup).
    pub headers: &'a HeaderMap,
    /// Whom the override header is trusted from.
    pub client_ip: IpAddr,
    /// The clock ([`crate::clock::ms_at`]), for endpoint availability.
    pub now_ms: u64,
}

/// What the proxy does with a request.
#[derive(Debug)]
pub enum Decision {
    Forward(Route),
    /// Wait for the hold's release, then decide again as [`Access::Released`].
    Hold(HeldTicket),
    Refuse(Refusal),
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub pool: PoolName,
    /// The index of the endpoint in the pool.
    pub endpoint: usize,
    /// The request was meant for the other pool, which had no available
    /// endpoint.
    pub failed_over: bool,
    /// A sticky bucket given to a client that had none: its cookie is set
    /// on the response.
    pub new_bucket: Option<u16>,
}

impl Route {
    /// The pool the rules chose, before any failover.
    #[inline]
    pub fn meant(&self) -> PoolName {
        if self.failed_over {
            self.pool.other()
        } else {
            self.pool
        }
    }
}

/// Why a request is refused (both are 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No available endpoint in the pool the rules chose (`meant`), nor,
    /// when the request `failed_over`, in the other.
    NoEndpoint { meant: PoolName, failed_over: bool },
    /// A write met a hold whose queue is full.
    HoldQueueFull,
    /// A write on a fleet member out of touch past `write_fence`.
    Fenced,
    /// A write met a fleet hold whose outcome this member does not know
    /// past its deadline: forwarding it could reach the pool the fleet left.
    HoldUndecided,
}

/// Decide where `req` goes under `table`; see the module doc for the rules.
///
/// Always inlined: it has one caller on the request path, whose clock read
/// and request it shares.
#[inline(always)]
pub fn decide(table: &RoutingTable, req: &RouteInput<'_>, draw: &mut impl Draw) -> Decision {
    if req.access == Access::Write {
        if let Some(fence) = &table.settings.fence {
            if fence.is_up() {
                return Decision::Refuse(Refusal::Fenced);
            }
        }
        if let Some(hold) = &table.hold {
            if hold.rejected() {
                return Decision::Refuse(Refusal::HoldUndecided);
            }
            return match hold.enter() {
                Some(ticket) => Decision::Hold(ticket),
                None => Decision::Refuse(Refusal::HoldQueueFull),
            };
        }
    }
    let choice = choose_pool(table, req, draw);
    let meant = choice.pool;
    let route = |pool: PoolName, endpoint, failed_over| {
        Decision::Forward(Route {
            pool,
            endpoint,
            failed_over,
            new_bucket: choice.new_bucket,
        })
    };
    if let Some(i) = table.pool(meant).pick_endpoint_with(req.now_ms, 0, draw) {
        return route(meant, i, false);
    }
    let failed_over = !choice.pinned && table.settings.failover;
    if failed_over {
        let other = meant.other();
        if let Some(i) = table.pool(other).pick_endpoint_with(req.now_ms, 0, draw) {
            return route(other, i, true);
        }
    }
    Decision::Refuse(Refusal::NoEndpoint { meant, failed_over })
}

/// The pool a request goes to, and how it was chosen.
struct Choice {
    pool: PoolName,
    /// A preview listener or a trusted override: no failover.
    pinned: bool,
    new_bucket: Option<u16>,
}

/// A preview listener's pool, else a trusted override header, else the
/// sticky bucket, else a weighted random pick.
#[inline(always)]
fn choose_pool(table: &RoutingTable, req: &RouteInput<'_>, draw: &mut impl Draw) -> Choice {
    let pinned = |pool| Choice {
        pool,
        pinned: true,
        new_bucket: None,
    };
    if let Some(sel) = req.preview {
        return pinned(match sel {
            PoolSelector::Blue => PoolName::Blue,
            PoolSelector::Green => PoolName::Green,
            PoolSelector::Candidate => table.candidate(),
        });
    }
    let settings = &*table.settings;
    if let Some(name) = &settings.override_header {
        if let Some(v) = req.headers.get(name) {
            if settings.override_trusted(req.client_ip) {
                // Any case, as header names: `GREEN` is not silently blue.
                let v = v.as_bytes();
                if v.eq_ignore_ascii_case(b"blue") {
                    return pinned(PoolName::Blue);
                }
                if v.eq_ignore_ascii_case(b"green") {
                    return pinned(PoolName::Green);
                }
            }
        }
    }
    if let Some(st) = &settings.sticky {
        let cookies = req.headers.get_all(header::COOKIE);
        let (bucket, new_bucket) = match sticky::bucket_from_cookies(cookies, st.cookie_name()) {
            Some(b) => (b, None),
            None => {
                let b = st.buckets.next();
                (b, Some(b))
            }
        };
        return Choice {
            pool: sticky::pool_for(bucket, table.weights, table.live),
            pinned: false,
            new_bucket,
        };
    }
    Choice {
        pool: table.weights.pick(draw.below(TOTAL_BP as usize) as u32),
        pinned: false,
        new_bucket: None,
    }
}

/// The table a request is decided on and, for a write that may go now, its
/// count in [`WritesInFlight`] (held until its response ends).
///
/// A write registers, then loads the table again: the controller publishes
/// a hold, then reads the count (see [`crate::routing::hold`]), so either
/// the write sees the hold (it is then not counted, and [`decide`] holds
/// it) or the controller sees the write. A table newer than `table` is
/// used. A read goes by `table` as it is; a released write is counted
/// whatever the table.
#[inline]
pub fn admit(
    tables: &ArcSwap<RoutingTable>,
    writes: &Arc<WritesInFlight>,
    table: Arc<RoutingTable>,
    access: Access,
) -> (Arc<RoutingTable>, Option<WriteToken>) {
    match access {
        Access::Read => (table, None),
        Access::Write if table.hold.is_some() => (table, None),
        Access::Write | Access::Released => admit_write(tables, writes, table, access),
    }
}

fn admit_write(
    tables: &ArcSwap<RoutingTable>,
    writes: &Arc<WritesInFlight>,
    table: Arc<RoutingTable>,
    access: Access,
) -> (Arc<RoutingTable>, Option<WriteToken>) {
    let token = writes.enter();
    let again = tables.load_full();
    if access == Access::Write && again.hold.is_some() {
        drop(token);
        return (again, None);
    }
    if again.generation != table.generation {
        return (again, Some(token));
    }
    (table, Some(token))
}

#[cfg(test)]
mod tests;
