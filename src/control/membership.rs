//! Fleet mode's membership (SPEC.md section 9): joining the fleet, keeping
//! this member's `members/<id>` value current, the write fence, the fleet
//! gauges and `status.fleet`.
//!
//! [`connect`] sets up the etcd client and the [`FleetLink`] before the
//! controller starts (its store needs them). [`spawn`] then starts two
//! tasks: the contact ticker (every [`FENCE_EVERY`]: raises or lowers the
//! table's [`WriteFence`], sets the contact gauges and publishes
//! `status.fleet`; it never awaits etcd), and the member keeper (publishes
//! this member's value when its generation, contact or health changes, and
//! at least once per `rollback.interval`). It decides nothing about the
//! deployment: the controller does, through its store.

use crate::config::{Config, PoolName};
use crate::control::controller::Shared;
use crate::control::fleet::{Etcd, EtcdSettings, FleetError, Member, Resync};
use crate::control::store::etcd::FleetLink;
use crate::control::view::{FleetView, HealthyView, MemberView};
use crate::routing::WriteFence;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the contact ticker looks at the contact (the precision of
/// the write fence).
pub const FENCE_EVERY: Duration = Duration::from_millis(100);

/// Connect to the fleet's etcd (without reaching it yet: a member starts
/// while etcd is down) and register the fleet's metrics.
pub async fn connect(
    cfg: &Config,
    admin: SocketAddr,
    shared_metrics: &crate::telemetry::metrics::Metrics,
) -> Result<Arc<FleetLink>, FleetError> {
    let fleet = cfg.fleet.as_ref().expect("connect is called in fleet mode");
    let settings = EtcdSettings::from_config(fleet)?;
    let etcd = Etcd::connect(settings).await?;
    let reasons = Resync::ALL.map(Resync::as_str);
    let metrics = shared_metrics.register_fleet(&reasons);
    Ok(Arc::new(FleetLink::new(
        fleet.member_id_for(admin),
        etcd,
        fleet.write_fence,
        metrics,
    )))
}

/// This member's value at `members/<id>`.
fn member_value(shared: &Shared, link: &FleetLink, admin: SocketAddr, fenced: bool) -> MemberView {
    let table = shared.table.load_full();
    let now = crate::clock::now_ms();
    let window = shared.config.load().rollback.window;
    let (mut requests, mut errors, mut rps) = (0u64, 0u64, 0.0);
    for p in PoolName::ALL {
        let w = table.pool(p).runtime.stats.window(now, window);
        requests += w.requests;
        errors += w.errors;
        rps += w.rps;
    }
    MemberView {
        id: link.member_id.clone(),
        admin: admin.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        generation: table.generation,
        last_seen: crate::clock::rfc3339(crate::clock::unix_ms()),
        connected: link.connected(),
        fenced,
        healthy: HealthyView {
            blue: table.pool(PoolName::Blue).healthy_count(now),
            green: table.pool(PoolName::Green).healthy_count(now),
        },
        rps,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
    }
}

/// `status.fleet` from what the watcher saw.
fn view(link: &FleetLink) -> FleetView {
    let seen = link.seen();
    FleetView {
        member_id: link.member_id.clone(),
        connected: link.connected(),
        leader: seen.leader.map(|l| l.member),
        members: seen
            .members
            .values()
            .filter_map(|v| serde_json::from_slice::<MemberView>(v).ok())
            .collect(),
    }
}

/// Join the fleet and start the contact ticker and the member keeper
/// until `stop`.
pub fn spawn(
    link: Arc<FleetLink>,
    shared: Arc<Shared>,
    fence: Arc<WriteFence>,
    admin: SocketAddr,
    stop: CancellationToken,
) -> Result<(), FleetError> {
    let first = member_value(&shared, &link, admin, true);
    let member = link.etcd.spawn_member(
        &link.member_id,
        serde_json::to_vec(&first).unwrap_or_default(),
    )?;
    // The controller acknowledges write holds under this member's lease.
    link.set_acker(member.acker());
    tokio::spawn(contact_ticker(
        link.clone(),
        shared.clone(),
        fence,
        stop.clone(),
    ));
    tokio::spawn(keep_member(link, shared, member, admin, stop));
    Ok(())
}

async fn contact_ticker(
    link: Arc<FleetLink>,
    shared: Arc<Shared>,
    fence: Arc<WriteFence>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FENCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let fenced = link.fenced(crate::clock::now_ms());
        if fence.set(fenced) {
            if fenced {
                tracing::warn!("out of touch with etcd past write_fence: unsafe requests get 503");
            } else {
                tracing::info!("in touch with etcd again: unsafe requests flow");
            }
        }
        let m = &link.metrics;
        m.write_fenced.set(i64::from(fenced));
        m.connected.set(i64::from(link.connected()));
        m.sync_age_seconds.set(
            link.etcd
                .contact()
                .since_contact()
                .map_or(-1.0, |d| d.as_secs_f64()),
        );
        shared.fleet.store(Some(Arc::new(view(&link))));
    }
}

async fn keep_member(
    link: Arc<FleetLink>,
    shared: Arc<Shared>,
    member: Member,
    admin: SocketAddr,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FENCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: Option<(MemberView, tokio::time::Instant)> = None;
    let mut duties = crate::control::leader::MemberDuties::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                if let Err(e) = member.leave().await {
                    tracing::debug!(error = %e, "left the fleet without revoking the lease");
                }
                return;
            }
            _ = tick.tick() => {}
        }
        duties.tick(&link, &shared, &member).await;
        let fenced = link.fenced(crate::clock::now_ms());
        let value = member_value(&shared, &link, admin, fenced);
        let every = shared.config.load().rollback.interval;
        let due = match &last {
            None => true,
            Some((prev, at)) => {
                at.elapsed() >= every
                    || prev.generation != value.generation
                    || prev.connected != value.connected
                    || prev.fenced != value.fenced
                    || prev.healthy != value.healthy
            }
        };
        if !due || !link.connected() && last.is_some() {
            continue;
        }
        match member
            .update(serde_json::to_vec(&value).unwrap_or_default())
            .await
        {
            Ok(()) => last = Some((value, tokio::time::Instant::now())),
            Err(e) => tracing::debug!(error = %e, "member value not published"),
        }
    }
}
