//! Fleet mode's [`StateStore`]: the state document at `<prefix>state` in
//! etcd (SPEC.md section 9), shared by every member.
//!
//! `load` is a linearizable read; when etcd holds no document yet, this
//! member creates it (compare on absence) from its state file, and when
//! etcd cannot be reached at start, the state file serves as a cold-start
//! cache. `commit` is one compare-and-swap on the `mod_revision` of the
//! document of the expected generation, carrying a fresh `op_id` so an
//! ambiguous result is resolved by the etcd layer; a lost race is a
//! `Conflict` with what is stored, an etcd out of reach `Unavailable`.
//!
//! A watcher task turns the fleet's events into [`StoreEvent`]s in etcd's
//! order: each newer document once (by generation), a resync as
//! `Resynced`; it writes every newer document to the state file (a cache,
//! never the authority) and keeps the [`FleetLink`] (members, leader) that
//! status and the membership task read. It decides nothing.

use crate::control::document::StateDoc;
use crate::control::fleet::{Base, Commit, CommitOutcome, Etcd, FleetEvent, LeaderKey};
use crate::control::store::file;
use crate::control::store::{StateStore, StoreError, StoreEvent, StoreFuture, StoreStatus};
use crate::telemetry::metrics::FleetMetrics;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the watcher learned of the fleet, for status and metrics.
#[derive(Debug, Default, Clone)]
pub struct FleetSeen {
    /// Each member's `members/<id>` value (JSON) and the revision of its
    /// last update.
    pub members: BTreeMap<String, Vec<u8>>,
    pub leader: Option<LeaderKey>,
}

/// The fleet as this member sees it, shared between the store's watcher
/// (the writer), the membership task and the admin API (readers).
pub struct FleetLink {
    pub member_id: String,
    pub etcd: Etcd,
    pub write_fence: Duration,
    pub metrics: FleetMetrics,
    seen: Mutex<FleetSeen>,
    /// Every member's published stats, for the leader's verdict.
    pub stats: Mutex<crate::control::fleet_judge::Aggregator>,
}

impl FleetLink {
    pub fn new(
        member_id: String,
        etcd: Etcd,
        write_fence: Duration,
        metrics: FleetMetrics,
    ) -> Self {
        FleetLink {
            member_id,
            etcd,
            write_fence,
            metrics,
            seen: Mutex::new(FleetSeen::default()),
            stats: Mutex::new(crate::control::fleet_judge::Aggregator::new()),
        }
    }

    pub fn seen(&self) -> FleetSeen {
        lock(&self.seen).clone()
    }

    /// Whether this member is in touch with etcd (the watch is up).
    pub fn connected(&self) -> bool {
        self.etcd.contact().connected()
    }

    /// Whether `write_fence` has passed without a lease keep-alive.
    pub fn fenced(&self, now_ms: u64) -> bool {
        self.etcd.contact().fenced(now_ms, self.write_fence)
    }

    /// The member that leads, if any.
    pub fn leader(&self) -> Option<String> {
        lock(&self.seen).leader.as_ref().map(|l| l.member.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The newest document this member knows etcd holds, and where.
#[derive(Debug, Clone, Copy)]
struct Known {
    generation: u64,
    base: Base,
}

pub struct EtcdStore {
    link: Arc<FleetLink>,
    cache: Option<PathBuf>,
    known: Arc<Mutex<Option<Known>>>,
    events: Option<mpsc::Receiver<StoreEvent>>,
    watcher: Option<JoinHandle<()>>,
    last_error: Option<String>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(t) = self.watcher.take() {
            t.abort();
        }
    }
}

fn parse(value: &[u8]) -> Result<StateDoc, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Unavailable {
        detail: format!("the fleet's state document is unreadable: {e}"),
    })
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        detail: format!("etcd: {e}"),
    }
}

impl EtcdStore {
    /// A store on `link`'s etcd; `cache` is the state file.
    pub fn new(link: Arc<FleetLink>, cache: Option<PathBuf>) -> Self {
        EtcdStore {
            link,
            cache,
            known: Arc::new(Mutex::new(None)),
            events: None,
            watcher: None,
            last_error: None,
        }
    }

    fn note(&self, doc: &StateDoc, base: Base) {
        let mut k = lock(&self.known);
        if k.is_none_or(|k| k.generation <= doc.generation) {
            *k = Some(Known {
                generation: doc.generation,
                base,
            });
        }
    }

    fn write_cache(&mut self, doc: &StateDoc) {
        if let Some(path) = &self.cache {
            match file::save(path, doc) {
                Ok(()) => self.last_error = None,
                Err(e) => self.last_error = Some(e.to_string()),
            }
        }
    }

    /// Start the watcher once: it tells every newer document from now on.
    fn start_watcher(&mut self) {
        if self.watcher.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel(256);
        self.events = Some(rx);
        let watch = self.link.etcd.watch();
        self.watcher = Some(tokio::spawn(follow(
            watch,
            tx,
            self.link.clone(),
            self.known.clone(),
            self.cache.clone(),
        )));
    }

    /// Fail fast when the watch has been down for a while: an admin change
    /// then answers 503 at once instead of after the commit's deadline.
    fn out_of_touch(&self) -> Option<StoreError> {
        let c = self.link.etcd.contact();
        let recent = c
            .since_contact()
            .is_some_and(|d| d < self.link.etcd.settings().request_timeout);
        (!c.connected() && !recent).then(|| StoreError::Unavailable {
            detail: "this member is out of touch with the fleet's etcd".into(),
        })
    }

    /// Create the document from the state file when etcd holds none.
    async fn bootstrap(&mut self, doc: StateDoc) -> Result<Option<StateDoc>, StoreError> {
        match self.cas(&doc, Base::Absent).await {
            Ok(d) => Ok(Some(d)),
            Err(StoreError::Conflict { current }) => Ok(Some(*current)),
            Err(e) => Err(e),
        }
    }

    /// One compare-and-swap of `next` against `base`.
    async fn cas(&mut self, next: &StateDoc, base: Base) -> Result<StateDoc, StoreError> {
        let mut doc = next.clone();
        doc.op_id = format!("{}-{:016x}", self.link.member_id, fastrand::u64(..));
        let value = serde_json::to_vec(&doc).map_err(|e| StoreError::Unavailable {
            detail: format!("cannot encode the state document: {e}"),
        })?;
        let leader = crate::control::leader::leading(&self.link);
        let guarded = crate::control::leader::needs_leader(&doc);
        if guarded && leader.is_none() {
            tracing::info!("not the fleet's leader: the automatic decision is dropped");
            return Err(StoreError::Unavailable {
                detail: "this member does not lead the fleet".into(),
            });
        }
        let outcome = self
            .link
            .etcd
            .commit(Commit {
                base,
                value: &value,
                op_id: &doc.op_id,
                leader: leader.as_ref().filter(|_| guarded),
                acks: None,
            })
            .await
            .map_err(unavailable)?;
        match outcome {
            CommitOutcome::Committed { revision } => {
                let base = match base {
                    Base::Absent => Base::At {
                        mod_revision: revision,
                        create_revision: revision,
                        version: 1,
                    },
                    Base::At {
                        create_revision,
                        version,
                        ..
                    } => Base::At {
                        mod_revision: revision,
                        create_revision,
                        version: version + 1,
                    },
                };
                self.note(&doc, base);
                self.write_cache(&doc);
                Ok(doc)
            }
            CommitOutcome::Conflict { current, failed }
                if failed.contains(&crate::control::fleet::Guard::Leader) =>
            {
                tracing::warn!(
                    revision = current.revision,
                    "deposed while committing: the automatic decision is dropped"
                );
                Err(StoreError::Unavailable {
                    detail: "leadership lost: the automatic decision is dropped".into(),
                })
            }
            CommitOutcome::Conflict { current, .. } => {
                let Some(raw) = current.doc.as_ref() else {
                    return Err(StoreError::Unavailable {
                        detail: "the fleet's state document is gone".into(),
                    });
                };
                let stored = parse(&raw.value)?;
                self.note(&stored, current.base());
                Err(StoreError::Conflict {
                    current: Box::new(stored),
                })
            }
        }
    }

    /// The base of the document of `generation`: known from the watch, or
    /// read. `Conflict` when etcd holds another generation.
    async fn base_of(&mut self, generation: u64) -> Result<Base, StoreError> {
        if let Some(k) = *lock(&self.known) {
            if k.generation == generation {
                return Ok(k.base);
            }
        }
        let read = self.link.etcd.read_state().await.map_err(unavailable)?;
        match &read.doc {
            None if generation == 0 => Ok(Base::Absent),
            None => Err(StoreError::Unavailable {
                detail: "the fleet's state document is gone".into(),
            }),
            Some(raw) => {
                let stored = parse(&raw.value)?;
                self.note(&stored, read.base());
                if stored.generation == generation {
                    Ok(read.base())
                } else {
                    Err(StoreError::Conflict {
                        current: Box::new(stored),
                    })
                }
            }
        }
    }
}

impl StateStore for EtcdStore {
    fn load(&mut self) -> StoreFuture<'_, Result<Option<StateDoc>, StoreError>> {
        Box::pin(async move {
            let cached = match &self.cache {
                Some(path) => file::load(path).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "the state file (fleet cache) is unusable");
                    None
                }),
                None => None,
            };
            let loaded = match self.link.etcd.read_state().await {
                Ok(read) => match &read.doc {
                    Some(raw) => {
                        let doc = parse(&raw.value)?;
                        self.note(&doc, read.base());
                        self.write_cache(&doc);
                        Ok(Some(doc))
                    }
                    // The first member: the fleet starts from its state
                    // file, else (None) from the config's traffic.initial.
                    None => match cached {
                        Some(doc) => self.bootstrap(doc).await,
                        None => Ok(None),
                    },
                },
                Err(e) => {
                    tracing::error!(error = %e, "etcd unreachable at start; serving the cached state");
                    Ok(cached)
                }
            };
            self.start_watcher();
            loaded
        })
    }

    fn commit<'a>(
        &'a mut self,
        next: &'a StateDoc,
        expected_generation: u64,
    ) -> StoreFuture<'a, Result<StateDoc, StoreError>> {
        Box::pin(async move {
            if let Some(e) = self.out_of_touch() {
                return Err(e);
            }
            let base = self.base_of(expected_generation).await?;
            self.cas(next, base).await
        })
    }

    fn tick(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async {})
    }

    fn origin(&self) -> String {
        match &self.cache {
            Some(p) => format!(
                "etcd (or its cache {} when etcd is unreachable)",
                p.display()
            ),
            None => "etcd".into(),
        }
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            path: self.cache.clone(),
            last_error: self.last_error.clone(),
        }
    }

    fn events(&mut self) -> Option<mpsc::Receiver<StoreEvent>> {
        self.start_watcher();
        self.events.take()
    }

    fn member_id(&self) -> Option<&str> {
        Some(&self.link.member_id)
    }

    fn leads(&self) -> bool {
        crate::control::leader::leading(&self.link).is_some()
    }

    fn fleet_verdict(
        &self,
        cfg: &crate::config::RollbackConfig,
        min_reporting: crate::config::fleet::MinReporting,
        generation: u64,
        candidate: crate::config::PoolName,
        live: crate::config::PoolName,
    ) -> Option<crate::control::fleet_judge::FleetVerdict> {
        let members: Vec<String> = self.link.seen().members.into_keys().collect();
        Some(lock(&self.link.stats).evaluate(
            cfg,
            min_reporting,
            &members,
            generation,
            candidate,
            live,
            tokio::time::Instant::now(),
        ))
    }

    fn in_touch(&self) -> bool {
        self.link.connected()
    }
}

/// The watcher: fleet events → store events, the cache file and the link.
async fn follow(
    mut watch: crate::control::fleet::FleetWatch,
    tx: mpsc::Sender<StoreEvent>,
    link: Arc<FleetLink>,
    known: Arc<Mutex<Option<Known>>>,
    cache: Option<PathBuf>,
) {
    let mut told = 0u64;
    while let Ok(ev) = watch.next().await {
        match ev {
            FleetEvent::StateChanged(raw) => {
                let doc = match parse(&raw.value) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!(error = %e, "a state document from etcd is ignored");
                        continue;
                    }
                };
                {
                    let mut k = lock(&known);
                    if k.is_none_or(|k| k.generation <= doc.generation) {
                        *k = Some(Known {
                            generation: doc.generation,
                            base: Base::of(Some(&raw)),
                        });
                    }
                }
                link.metrics.generation.set(doc.generation as i64);
                if doc.generation <= told {
                    continue;
                }
                told = doc.generation;
                if let Some(path) = &cache {
                    if let Err(e) = file::save(path, &doc) {
                        tracing::warn!(error = %e, "the state file (fleet cache) was not written");
                    }
                }
                if tx.send(StoreEvent::Doc(Box::new(doc))).await.is_err() {
                    return;
                }
            }
            FleetEvent::Resynced { reason, .. } => {
                link.metrics
                    .resyncs
                    .with_label_values(&[reason.as_str()])
                    .inc();
                if tx.send(StoreEvent::Resynced).await.is_err() {
                    return;
                }
            }
            FleetEvent::MemberJoined { id, entry } | FleetEvent::MemberUpdated { id, entry } => {
                let mut seen = lock(&link.seen);
                seen.members.insert(id, entry.value);
                link.metrics.members.set(seen.members.len() as i64);
            }
            FleetEvent::MemberLeft { id, .. } => {
                let mut seen = lock(&link.seen);
                seen.members.remove(&id);
                link.metrics.members.set(seen.members.len() as i64);
            }
            FleetEvent::LeaderChanged { leader, .. } => lock(&link.seen).leader = leader,
            FleetEvent::StatsUpdated { member, entry } => {
                match crate::control::fleet_judge::StatsReport::decode(&entry.value) {
                    Ok(r) => lock(&link.stats).observe(&member, r, tokio::time::Instant::now()),
                    Err(e) => tracing::debug!(%member, error = %e, "stats report ignored"),
                }
            }
            FleetEvent::StatsDeleted { member, .. } => lock(&link.stats).forget(&member),
            _ => {}
        }
    }
}
