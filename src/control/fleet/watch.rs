//! The watcher: one task that keeps a [`Snapshot`] of the prefix in step
//! with etcd and tells every change, in order, as [`FleetEvent`]s.
//!
//! etcd-client does not reconnect a watch, and a watch on a frozen etcd
//! hangs silently; this task owns both. It asks for progress when the
//! stream is quiet and declares it dead after `watchdog_deadline` without
//! a message (reason `watchdog`); a stream that ends or fails is reopened
//! (reason `reconnect`) from the revision after the last one told, so no
//! event is lost; when that revision has been compacted it lists the
//! prefix again and tells the differences (reason `compacted`). Every
//! request carries `require_leader`, so etcd itself ends the stream of a
//! member cut off from its quorum. It decides nothing about the events.

use super::client::Etcd;
use super::state::c_get;
use super::view::{FleetEvent, Kv, Snapshot};
use super::{FleetError, Revision};
use etcd_client::{EventType, GetOptions, WatchOptions, WatchResponse};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Why the watcher had to get in step again (`switchyard_fleet_resyncs_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resync {
    /// The revisions it had to resume from were compacted: it listed again.
    Compacted = 0,
    /// The stream ended or failed (etcd restarted, a connection reset, etcd
    /// lost its leader).
    Reconnect = 1,
    /// The stream was silent past the watchdog's deadline.
    Watchdog = 2,
}

impl Resync {
    pub const ALL: [Resync; 3] = [Resync::Compacted, Resync::Reconnect, Resync::Watchdog];

    pub fn as_str(self) -> &'static str {
        match self {
            Resync::Compacted => "compacted",
            Resync::Reconnect => "reconnect",
            Resync::Watchdog => "watchdog",
        }
    }
}

/// The events of a running watcher. Dropping it stops the watcher.
pub struct FleetWatch {
    rx: mpsc::Receiver<FleetEvent>,
    task: JoinHandle<()>,
}

impl Drop for FleetWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FleetWatch {
    /// The next event, waiting for it. `Err(Closed)` only if the task stopped.
    pub async fn next(&mut self) -> Result<FleetEvent, FleetError> {
        self.rx.recv().await.ok_or(FleetError::Closed)
    }
}

/// How many events may wait for the consumer before the watcher waits too.
const BUFFER: usize = 1024;

impl Etcd {
    /// A linearizable listing of the whole prefix.
    pub async fn snapshot(&self) -> Result<Snapshot, FleetError> {
        let opts = GetOptions::new().with_prefix();
        let prefix = self.keys.prefix();
        let resp = self
            .request("list", |c| c_get(c, prefix, Some(opts.clone())))
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok(Snapshot::from_kvs(
            &self.keys,
            resp.kvs().iter().map(Kv::from),
            revision,
        ))
    }

    /// Watch the prefix: first the events that lead from nothing to what
    /// etcd holds now, then [`FleetEvent::Connected`], then every change.
    pub fn watch(&self) -> FleetWatch {
        self.spawn_watch(Snapshot::default(), true)
    }

    /// Watch the prefix from after `known.revision`, for a caller that
    /// already holds that snapshot (e.g. from [`Etcd::snapshot`]).
    pub fn watch_from(&self, known: Snapshot) -> FleetWatch {
        self.spawn_watch(known, false)
    }

    fn spawn_watch(&self, view: Snapshot, list_first: bool) -> FleetWatch {
        let (tx, rx) = mpsc::channel(BUFFER);
        let watcher = Watcher {
            etcd: self.clone(),
            view,
            tx,
            pause: self.settings.retry_min,
        };
        FleetWatch {
            rx,
            task: tokio::spawn(watcher.run(list_first)),
        }
    }
}

struct Watcher {
    etcd: Etcd,
    view: Snapshot,
    tx: mpsc::Sender<FleetEvent>,
    pause: Duration,
}

/// Why a stream ended.
enum End {
    Gap(Resync),
    /// The consumer is gone.
    Stop,
}

/// The consumer is gone.
struct Gone;

impl Watcher {
    async fn run(mut self, mut list: bool) {
        // The reason of the gap being closed; none before the first connect.
        let mut gap: Option<Resync> = None;
        loop {
            if !list {
                // Can the stream resume after the last revision told? A read
                // at that revision fails once it is compacted (or, after etcd
                // lost its data, when it lies in the future).
                match self.probe(self.view.revision).await {
                    Ok(true) => {}
                    Ok(false) => {
                        list = true;
                        gap = Some(Resync::Compacted);
                    }
                    Err(_) => {
                        self.back_off().await;
                        continue;
                    }
                }
            }
            if list {
                let Ok(fresh) = self.etcd.snapshot().await else {
                    self.back_off().await;
                    continue;
                };
                let mut out = Vec::new();
                let before = self.view.leader().cloned();
                let revision = fresh.revision;
                self.view.replace(fresh, &mut out);
                self.leader_change(before, revision, &mut out);
                if self.tell(out).await.is_err() {
                    return;
                }
                list = false;
            }
            let end = match self.stream(&mut gap).await {
                Ok(end) => end,
                Err(_) => {
                    gap.get_or_insert(Resync::Reconnect);
                    self.back_off().await;
                    continue;
                }
            };
            match end {
                End::Stop => return,
                End::Gap(reason) => {
                    self.etcd.contact.set_connected(false);
                    gap = Some(reason);
                    list = reason == Resync::Compacted;
                    if self
                        .tell(vec![FleetEvent::Disconnected { reason }])
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Whether revision `at` is still readable.
    async fn probe(&self, at: Revision) -> Result<bool, FleetError> {
        let opts = GetOptions::new().with_revision(at).with_count_only();
        let key = self.etcd.keys.state();
        match self
            .etcd
            .request("probe", |c| c_get(c, &key, Some(opts.clone())))
            .await
        {
            Ok(_) => Ok(true),
            Err(FleetError::Etcd {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            }) if s.code() == tonic::Code::OutOfRange => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One watch stream from after the view's revision, until it ends.
    /// `Err`: it could not be opened.
    async fn stream(&mut self, gap: &mut Option<Resync>) -> Result<End, FleetError> {
        let settings = self.etcd.settings.clone();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.view.revision + 1)
            .with_progress_notify();
        let prefix = self.etcd.keys.prefix().to_string();
        let stream = self
            .etcd
            .request("watch", |mut c| {
                let (prefix, opts) = (prefix.clone(), opts.clone());
                async move { c.watch(prefix, Some(opts)).await }
            })
            .await?;
        let (mut sender, mut responses) = stream.split();
        let mut tick = tokio::time::interval_at(
            Instant::now() + settings.watchdog_interval,
            settings.watchdog_interval,
        );
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = self.tx.closed() => return Ok(End::Stop),
                msg = responses.next() => {
                    let resp = match msg {
                        Some(Ok(resp)) => resp,
                        Some(Err(_)) | None => return Ok(End::Gap(Resync::Reconnect)),
                    };
                    self.etcd.contact.touch();
                    match self.handle(resp, gap).await {
                        Ok(None) => {}
                        Ok(Some(reason)) => return Ok(End::Gap(reason)),
                        Err(Gone) => return Ok(End::Stop),
                    }
                    heard = Instant::now();
                }
                _ = tick.tick() => {
                    let quiet = heard.elapsed();
                    if quiet >= settings.watchdog_deadline {
                        return Ok(End::Gap(Resync::Watchdog));
                    }
                    if quiet >= settings.watchdog_interval {
                        // A full request queue means etcd reads nothing: the
                        // deadline above will tell.
                        let ask = sender.request_progress();
                        let _unanswered = tokio::time::timeout(settings.request_timeout, ask).await;
                    }
                }
            }
        }
    }

    /// One message of the stream. `Some(reason)`: the stream is over.
    async fn handle(
        &mut self,
        resp: WatchResponse,
        gap: &mut Option<Resync>,
    ) -> Result<Option<Resync>, Gone> {
        if resp.compact_revision() > 0 {
            return Ok(Some(Resync::Compacted));
        }
        if resp.canceled() {
            // e.g. etcd lost its leader and ends `require_leader` streams.
            return Ok(Some(Resync::Reconnect));
        }
        let header = resp.header().map_or(0, |h| h.revision());
        let mut out = Vec::new();
        if resp.created() {
            self.etcd.contact.set_connected(true);
            self.pause = self.etcd.settings.retry_min;
            if let Some(reason) = gap.take() {
                self.etcd.contact.count_resync(reason);
                out.push(FleetEvent::Resynced {
                    reason,
                    revision: header,
                });
            }
            out.push(FleetEvent::Connected {
                revision: self.view.revision.max(header),
            });
        }
        if !resp.events().is_empty() {
            let before = self.view.leader().cloned();
            let mut last = self.view.revision;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                last = last.max(kv.mod_revision());
                match ev.event_type() {
                    EventType::Put => self.view.put(&self.etcd.keys, kv.into(), &mut out),
                    EventType::Delete => self.view.delete(&self.etcd.keys, kv.into(), &mut out),
                }
            }
            self.leader_change(before, last, &mut out);
        }
        self.tell(out).await.map(|()| None)
    }

    fn leader_change(
        &self,
        before: Option<super::view::LeaderKey>,
        revision: Revision,
        out: &mut Vec<FleetEvent>,
    ) {
        let now = self.view.leader();
        if now != before.as_ref() {
            out.push(FleetEvent::LeaderChanged {
                leader: now.cloned(),
                revision,
            });
        }
    }

    async fn tell(&self, events: Vec<FleetEvent>) -> Result<(), Gone> {
        for e in events {
            self.tx.send(e).await.map_err(|_| Gone)?;
        }
        Ok(())
    }

    /// Wait before the next try, doubling up to `retry_max`.
    async fn back_off(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(self.etcd.settings.retry_max);
    }
}
