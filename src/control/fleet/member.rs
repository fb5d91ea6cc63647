//! Membership: this member's lease and the keys that live under it
//! (`members/<id>`, its candidate key, its acks and its stats), and the
//! listings of everyone's.
//!
//! A [`Member`] owns one background task, the lease keeper: it grants a
//! lease of `member_ttl`, registers `members/<id>` (and the candidate key
//! while campaigning) under it, and renews it every third of the TTL over
//! etcd's keep-alive stream, reopening the stream when it breaks (etcd-client
//! does not) and granting a new lease when etcd says the old one expired.
//! Each acknowledged renewal records the time its request was sent, from
//! which the data plane computes the write fence (see `contact`). Everything
//! under a lost lease is gone with it: [`LeaseState::grants`] tells the
//! owner to put its acks and stats again. It decides nothing.

use super::client::Etcd;
use super::keys::segment;
use super::state::c_get;
use super::view::{Entry, LeaderKey};
use super::FleetError;
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// This member's lease as the keeper last knew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseState {
    /// `None` while there is none (not granted yet, or expired).
    pub lease: Option<i64>,
    /// How many leases were granted so far: each new one lost what lived
    /// under the one before.
    pub grants: u64,
}

struct Shared {
    etcd: Etcd,
    id: String,
    value: Mutex<Vec<u8>>,
    campaigning: AtomicBool,
    lease: watch::Sender<LeaseState>,
}

/// A member of the fleet. Dropping it stops the keeper without revoking
/// the lease (as a crash would: the fleet sees it leave after the TTL);
/// [`Member::leave`] leaves at once.
pub struct Member {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Etcd {
    /// Start being member `id` with `value` at `members/<id>`; the keeper
    /// registers it in the background (see [`Member::registered`]).
    pub fn spawn_member(&self, id: &str, value: Vec<u8>) -> Result<Member, FleetError> {
        segment(id)?;
        let shared = Arc::new(Shared {
            etcd: self.clone(),
            id: id.to_string(),
            value: Mutex::new(value),
            campaigning: AtomicBool::new(false),
            lease: watch::channel(LeaseState::default()).0,
        });
        let task = tokio::spawn(keep(shared.clone()));
        Ok(Member { shared, task })
    }

    /// [`Etcd::spawn_member`], then wait for the registration, at most
    /// twice `request_timeout` (a grant and a put).
    pub async fn join(&self, id: &str, value: Vec<u8>) -> Result<Member, FleetError> {
        let member = self.spawn_member(id, value)?;
        member.registered(self.settings.request_timeout * 2).await?;
        Ok(member)
    }

    /// Every member's `members/<id>` (linearizable).
    pub async fn members(&self) -> Result<BTreeMap<String, Entry>, FleetError> {
        self.list("list members", self.keys.members()).await
    }

    /// Every member's `stats/<id>` (linearizable).
    pub async fn stats(&self) -> Result<BTreeMap<String, Entry>, FleetError> {
        self.list("list stats", self.keys.all_stats()).await
    }

    /// The members that acknowledged `hold` (linearizable).
    pub async fn acks(&self, hold: &str) -> Result<BTreeSet<String>, FleetError> {
        let prefix = self.keys.acks(segment(hold)?);
        Ok(self.list("list acks", prefix).await?.into_keys().collect())
    }

    /// The leader: the candidate key created first (linearizable).
    pub async fn leader(&self) -> Result<Option<LeaderKey>, FleetError> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let key = self.keys.election();
        let resp = self
            .request("read leader", |c| c_get(c, &key, Some(opts.clone())))
            .await?;
        Ok(resp.kvs().first().map(|kv| LeaderKey {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            member: String::from_utf8_lossy(kv.value()).into_owned(),
            create_revision: kv.create_revision(),
        }))
    }

    /// The keys under `prefix`, by the last segment of their name.
    async fn list(
        &self,
        op: &'static str,
        prefix: String,
    ) -> Result<BTreeMap<String, Entry>, FleetError> {
        let opts = GetOptions::new().with_prefix();
        let resp = self
            .request(op, |c| c_get(c, &prefix, Some(opts.clone())))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key().strip_prefix(prefix.as_bytes())?;
                let name = std::str::from_utf8(name).ok()?;
                (!name.contains('/')).then(|| (name.to_string(), Entry::from_kv(kv.into())))
            })
            .collect())
    }
}

impl Member {
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn lease(&self) -> LeaseState {
        *self.shared.lease.borrow()
    }

    /// The lease state, as a channel that tells each change.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.shared.lease.subscribe()
    }

    /// Wait, at most `within`, until this member holds a lease.
    pub async fn registered(&self, within: Duration) -> Result<i64, FleetError> {
        let mut rx = self.subscribe();
        let wait = async { rx.wait_for(|s| s.lease.is_some()).await.map(|s| s.lease) };
        match tokio::time::timeout(within, wait).await {
            Ok(Ok(lease)) => lease.ok_or(FleetError::NoLease),
            Ok(Err(_)) => Err(FleetError::Closed),
            Err(_) => Err(FleetError::Timeout {
                op: "register",
                deadline: within,
            }),
        }
    }

    fn current(&self) -> Result<i64, FleetError> {
        self.shared.current()
    }

    /// A handle that acknowledges holds for this member from another task.
    pub fn acker(&self) -> AckHandle {
        AckHandle {
            shared: self.shared.clone(),
        }
    }

    /// Replace `members/<id>`; kept for the next registration too.
    pub async fn update(&self, value: Vec<u8>) -> Result<(), FleetError> {
        *lock(&self.shared.value) = value.clone();
        self.put(
            "update member",
            self.shared.etcd.keys.member(&self.shared.id),
            value,
        )
        .await
    }

    /// Acknowledge write hold `hold` (under the lease: it vanishes with it).
    pub async fn ack(&self, hold: &str) -> Result<(), FleetError> {
        self.shared.ack(hold).await
    }

    /// Publish this member's stats at `stats/<id>`.
    pub async fn publish_stats(&self, value: Vec<u8>) -> Result<(), FleetError> {
        let key = self.shared.etcd.keys.stats(&self.shared.id);
        self.put("publish stats", key, value).await
    }

    async fn put(&self, op: &'static str, key: String, value: Vec<u8>) -> Result<(), FleetError> {
        self.shared.put(op, key, value).await
    }

    /// Stand for leader: create this lease's candidate key (kept across
    /// new leases until [`Member::resign`]). Returns it; this member leads
    /// while it is [`Etcd::leader`].
    pub async fn campaign(&self) -> Result<LeaderKey, FleetError> {
        self.shared.campaigning.store(true, Ordering::Release);
        let lease = self.current()?;
        let etcd = &self.shared.etcd;
        let key = etcd.keys.candidate(lease);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                key.clone(),
                self.shared.id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(key.clone(), None)]);
        let resp = etcd
            .request("campaign", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let create_revision = if resp.succeeded() {
            resp.header().map_or(0, |h| h.revision())
        } else {
            resp.op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.create_revision()),
                    _ => None,
                })
                .ok_or(FleetError::NoLease)?
        };
        Ok(LeaderKey {
            key,
            member: self.shared.id.clone(),
            create_revision,
        })
    }

    /// Stop standing for leader, and stop leading if this member does.
    pub async fn resign(&self) -> Result<(), FleetError> {
        self.shared.campaigning.store(false, Ordering::Release);
        let Some(lease) = self.lease().lease else {
            return Ok(());
        };
        let etcd = &self.shared.etcd;
        let key = etcd.keys.candidate(lease);
        etcd.request("resign", |mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })
        .await
        .map(drop)
    }

    /// Leave the fleet now: stop the keeper and revoke the lease, which
    /// removes every key under it.
    pub async fn leave(self) -> Result<(), FleetError> {
        self.task.abort();
        self.shared.campaigning.store(false, Ordering::Release);
        let Some(lease) = self.lease().lease else {
            return Ok(());
        };
        self.shared.lease.send_modify(|s| s.lease = None);
        let etcd = &self.shared.etcd;
        etcd.request("revoke lease", |mut c| async move {
            c.lease_revoke(lease).await
        })
        .await
        .map(drop)
    }
}

impl Shared {
    fn current(&self) -> Result<i64, FleetError> {
        self.lease.borrow().lease.ok_or(FleetError::NoLease)
    }

    async fn ack(&self, hold: &str) -> Result<(), FleetError> {
        let key = self.etcd.keys.ack(segment(hold)?, &self.id);
        self.put("ack", key, Vec::new()).await
    }

    async fn put(&self, op: &'static str, key: String, value: Vec<u8>) -> Result<(), FleetError> {
        let lease = self.current()?;
        let opts = PutOptions::new().with_lease(lease);
        self.etcd
            .request(op, |mut c| {
                let (key, value, opts) = (key.clone(), value.clone(), opts.clone());
                async move { c.put(key, value, Some(opts)).await }
            })
            .await
            .map(drop)
    }
}

/// Acknowledges write holds for one member (see [`Member::acker`]); it
/// does not keep the member alive.
#[derive(Clone)]
pub struct AckHandle {
    shared: Arc<Shared>,
}

impl AckHandle {
    /// [`Member::ack`].
    pub async fn ack(&self, hold: &str) -> Result<(), FleetError> {
        self.shared.ack(hold).await
    }
}

/// The lease keeper (see the module doc).
async fn keep(shared: Arc<Shared>) {
    let etcd = shared.etcd.clone();
    let s = etcd.settings.clone();
    let ttl = i64::try_from(s.member_ttl.as_secs())
        .unwrap_or(i64::MAX)
        .max(2);
    let every = s.renew_every();
    let mut pause = s.retry_min;
    let back_off = |pause: &mut Duration| {
        let wait = *pause;
        *pause = (*pause * 2).min(s.retry_max);
        tokio::time::sleep(wait)
    };
    loop {
        let known = shared.lease.borrow().lease;
        let lease = match known {
            Some(l) => l,
            None => match register(&shared, ttl).await {
                Ok(l) => {
                    shared.lease.send_modify(|st| {
                        st.lease = Some(l);
                        st.grants += 1;
                    });
                    l
                }
                Err(_) => {
                    back_off(&mut pause).await;
                    continue;
                }
            },
        };
        // Opening the stream renews the lease once, and says if it expired.
        let sent = crate::clock::now_ms();
        let opened = etcd.request("keep-alive", |mut c| async move {
            c.lease_keep_alive(lease).await
        });
        let (mut keeper, mut answers) = match opened.await {
            Ok(opened) => {
                etcd.contact.lease_acked(sent);
                opened
            }
            Err(FleetError::Etcd {
                source: etcd_client::Error::LeaseKeepAliveError(_),
                ..
            }) => {
                shared.lease.send_modify(|st| st.lease = None);
                continue;
            }
            Err(_) => {
                back_off(&mut pause).await;
                continue;
            }
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sent = crate::clock::now_ms();
            if etcd.call("keep-alive", keeper.keep_alive()).await.is_err() {
                break;
            }
            match etcd.call("keep-alive", answers.message()).await {
                Ok(Some(answer)) if answer.ttl() > 0 => {
                    etcd.contact.lease_acked(sent);
                    pause = s.retry_min;
                }
                Ok(Some(_)) => {
                    // Expired: everything under it is gone. A new one next.
                    shared.lease.send_modify(|st| st.lease = None);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        back_off(&mut pause).await;
    }
}

/// Grant a lease and put this member's keys under it, in one transaction.
async fn register(shared: &Shared, ttl: i64) -> Result<i64, FleetError> {
    let etcd = &shared.etcd;
    let lease = etcd
        .request("grant lease", |mut c| async move {
            c.lease_grant(ttl, None).await
        })
        .await?
        .id();
    let under = || Some(PutOptions::new().with_lease(lease));
    let mut ops = vec![TxnOp::put(
        etcd.keys.member(&shared.id),
        lock(&shared.value).clone(),
        under(),
    )];
    if shared.campaigning.load(Ordering::Acquire) {
        ops.push(TxnOp::put(
            etcd.keys.candidate(lease),
            shared.id.clone(),
            under(),
        ));
    }
    let txn = Txn::new().and_then(ops);
    etcd.request("register", |mut c| {
        let txn = txn.clone();
        async move { c.txn(txn).await }
    })
    .await?;
    Ok(lease)
}
