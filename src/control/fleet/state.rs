//! The state document at `<prefix>state`: a linearizable read, and a
//! commit that is one compare-and-swap on its `mod_revision` (or on its
//! absence, to create it), optionally guarded by leadership and by the
//! acknowledgements of a write hold, all in the same transaction.
//!
//! An ambiguous result (a timeout, a lost connection, a leader change) is
//! never retried blindly: the document is re-read and the outcome decided
//! from what etcd holds. The document a commit writes must carry its
//! `op_id`, unique per change, as a JSON string (`"op_id": "<id>"`): that
//! is how this module recognises its own write. It never deletes the state
//! key and never looks inside a document beyond that.

use super::client::Etcd;
use super::view::{Kv, LeaderKey};
use super::{FleetError, Revision};
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures_util::StreamExt;
use tokio::time::Instant;

/// The state document as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDoc {
    pub value: Vec<u8>,
    pub mod_revision: Revision,
    pub create_revision: Revision,
    /// How many times the key was written since it was created.
    pub version: i64,
}

impl StateDoc {
    pub(super) fn from_kv(kv: Kv<'_>) -> StateDoc {
        StateDoc {
            value: kv.value.to_vec(),
            mod_revision: kv.mod_revision,
            create_revision: kv.create_revision,
            version: kv.version,
        }
    }
}

/// A read of the state key: the document, if any, and the store's revision
/// at the time of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRead {
    pub doc: Option<StateDoc>,
    pub revision: Revision,
}

impl StateRead {
    /// What a commit computed from this read compares against.
    pub fn base(&self) -> Base {
        Base::of(self.doc.as_ref())
    }
}

/// The document a commit replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// There is none: the commit creates it (bootstrap).
    Absent,
    At {
        mod_revision: Revision,
        create_revision: Revision,
        version: i64,
    },
}

impl Base {
    pub fn of(doc: Option<&StateDoc>) -> Base {
        match doc {
            None => Base::Absent,
            Some(d) => Base::At {
                mod_revision: d.mod_revision,
                create_revision: d.create_revision,
                version: d.version,
            },
        }
    }

    fn holds(self, doc: Option<&StateDoc>) -> bool {
        match (self, doc) {
            (Base::Absent, None) => true,
            (Base::At { mod_revision, .. }, Some(d)) => d.mod_revision == mod_revision,
            _ => false,
        }
    }
}

/// One change of the state document.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    pub base: Base,
    pub value: &'a [u8],
    /// Unique per change, written in `value` as a JSON string.
    pub op_id: &'a str,
    /// Commit only while this key leads: it exists with its create_revision
    /// and no candidate key is older.
    pub leader: Option<&'a LeaderKey>,
    /// Commit only with an acknowledgement of hold `.0` from each member
    /// of `.1` present.
    pub acks: Option<(&'a str, &'a [String])>,
}

/// A condition of a commit that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The document is not the base any more.
    State,
    /// The leader key is gone or was replaced.
    Leader,
    /// This member's acknowledgement is missing.
    Ack(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The document is in etcd at this revision.
    Committed { revision: Revision },
    /// Not written, and it never will be: what etcd holds now, and which
    /// conditions failed.
    Conflict {
        current: StateRead,
        failed: Vec<Guard>,
    },
}

/// Whether `value` is the document of the change `op_id`.
fn landed(value: &[u8], op_id: &str) -> bool {
    let needle = format!("\"{op_id}\"");
    value.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn revision_of(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map_or(0, |h| h.revision())
}

impl Etcd {
    /// A linearizable read of the state document.
    pub async fn read_state(&self) -> Result<StateRead, FleetError> {
        let key = self.keys.state();
        let resp = self.request("read state", |c| c_get(c, &key, None)).await?;
        Ok(StateRead {
            doc: resp.kvs().first().map(|kv| StateDoc::from_kv(kv.into())),
            revision: revision_of(resp.header()),
        })
    }

    /// Commit `c`: one transaction, and when its result is ambiguous, the
    /// outcome read back from etcd, all within `commit_deadline`.
    pub async fn commit(&self, c: Commit<'_>) -> Result<CommitOutcome, FleetError> {
        if c.base == Base::Absent && (c.leader.is_some() || c.acks.is_some()) {
            return Err(FleetError::GuardedCreate);
        }
        let end = Instant::now() + self.settings.commit_deadline;
        match self.try_commit(&c).await {
            Err(e) if e.is_ambiguous() => {
                self.contact.count_ambiguous();
                self.resolve(&c, end).await
            }
            other => other,
        }
    }

    /// The transaction of `c`, sent once.
    async fn try_commit(&self, c: &Commit<'_>) -> Result<CommitOutcome, FleetError> {
        let state = self.keys.state();
        let mut when = vec![match c.base {
            Base::Absent => Compare::create_revision(state.clone(), CompareOp::Equal, 0),
            Base::At { mod_revision, .. } => {
                Compare::mod_revision(state.clone(), CompareOp::Equal, mod_revision)
            }
        }];
        let mut otherwise = vec![TxnOp::get(state.clone(), None)];
        if let Some(l) = c.leader {
            // The key still exists, and no candidate is older: it leads.
            when.push(Compare::create_revision(
                l.key.clone(),
                CompareOp::Equal,
                l.create_revision,
            ));
            when.push(
                Compare::create_revision(
                    self.keys.election(),
                    CompareOp::Greater,
                    l.create_revision - 1,
                )
                .with_prefix(),
            );
            let oldest = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1)
                .with_keys_only();
            otherwise.push(TxnOp::get(self.keys.election(), Some(oldest)));
        }
        if let Some((hold, members)) = c.acks {
            for m in members {
                let key = self.keys.ack(hold, m);
                when.push(Compare::version(key.clone(), CompareOp::Greater, 0));
                otherwise.push(TxnOp::get(key, Some(GetOptions::new().with_keys_only())));
            }
        }
        let txn = Txn::new()
            .when(when)
            .and_then(vec![TxnOp::put(state, c.value.to_vec(), None)])
            .or_else(otherwise);
        let resp = self
            .request("commit", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let revision = revision_of(resp.header());
        if resp.succeeded() {
            return Ok(CommitOutcome::Committed { revision });
        }
        let mut gets = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
            _ => None,
        });
        let doc = gets
            .next()
            .flatten()
            .map(|kv| StateDoc::from_kv((&kv).into()));
        let mut failed = Vec::new();
        if !c.base.holds(doc.as_ref()) {
            failed.push(Guard::State);
        }
        if let Some(l) = c.leader {
            let oldest = gets.next().flatten();
            let leads = oldest.is_some_and(|kv| {
                kv.key() == l.key.as_bytes() && kv.create_revision() == l.create_revision
            });
            if !leads {
                failed.push(Guard::Leader);
            }
        }
        if let Some((_, members)) = c.acks {
            for m in members {
                if gets.next().flatten().is_none() {
                    failed.push(Guard::Ack(m.clone()));
                }
            }
        }
        Ok(CommitOutcome::Conflict {
            current: StateRead { doc, revision },
            failed,
        })
    }

    /// Decide the outcome of `c` after an ambiguous result, by `end`.
    ///
    /// - The document holds `op_id`: committed.
    /// - The document moved past the base: the first change after the
    ///   base decides (only one commit can replace a given revision).
    /// - It did not move: the first transaction has not been applied, but
    ///   may still be on its way. The same compare-and-swap is sent again
    ///   (it cannot apply twice); if a guard now fails, the document is
    ///   rewritten unchanged so that the first one can never apply later.
    ///
    /// Public so that the cases can be shown one by one; [`Etcd::commit`]
    /// calls it.
    pub async fn resolve(&self, c: &Commit<'_>, end: Instant) -> Result<CommitOutcome, FleetError> {
        let mut pause = self.settings.retry_min;
        let mut retry = |end: Instant| {
            let until = (Instant::now() + pause).min(end);
            pause = (pause * 2).min(self.settings.retry_max);
            tokio::time::sleep_until(until)
        };
        loop {
            if Instant::now() >= end {
                return Err(FleetError::Indeterminate {
                    op_id: c.op_id.to_string(),
                    why: "etcd did not tell before the commit's deadline",
                });
            }
            let read = match self.read_state().await {
                Ok(r) => r,
                Err(_) => {
                    retry(end).await;
                    continue;
                }
            };
            if let Some(doc) = read.doc.as_ref().filter(|d| landed(&d.value, c.op_id)) {
                return Ok(CommitOutcome::Committed {
                    revision: doc.mod_revision,
                });
            }
            if !c.base.holds(read.doc.as_ref()) {
                match self.first_change_after(c, &read, end).await {
                    Ok(Some(first)) if landed(&first.value, c.op_id) => {
                        return Ok(CommitOutcome::Committed {
                            revision: first.mod_revision,
                        })
                    }
                    Ok(_) => {
                        return Ok(CommitOutcome::Conflict {
                            current: read,
                            failed: vec![Guard::State],
                        })
                    }
                    Err(e @ FleetError::Indeterminate { .. }) => return Err(e),
                    Err(_) => {
                        retry(end).await;
                        continue;
                    }
                }
            }
            match self.try_commit(c).await {
                Ok(CommitOutcome::Conflict { failed, .. }) if failed.contains(&Guard::State) => {}
                Ok(CommitOutcome::Conflict { current, failed }) => {
                    if let Some(fenced) = self.fence(c.base, &current).await {
                        return Ok(CommitOutcome::Conflict {
                            current: fenced,
                            failed,
                        });
                    }
                    retry(end).await;
                }
                Err(e) if !e.is_ambiguous() => return Err(e),
                done @ Ok(CommitOutcome::Committed { .. }) => return done,
                Err(_) => retry(end).await,
            }
        }
    }

    /// Rewrite the document unchanged if it is still at `base`, so that no
    /// transaction comparing against `base` can apply any more. `Some`:
    /// rewritten, with the read after it.
    async fn fence(&self, base: Base, current: &StateRead) -> Option<StateRead> {
        let (Base::At { mod_revision, .. }, Some(doc)) = (base, &current.doc) else {
            return None;
        };
        let state = self.keys.state();
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                state.clone(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then(vec![TxnOp::put(state, doc.value.clone(), None)]);
        let resp = self
            .request("fence", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .ok()?;
        let revision = revision_of(resp.header());
        resp.succeeded().then(|| StateRead {
            doc: Some(StateDoc {
                value: doc.value.clone(),
                mod_revision: revision,
                create_revision: doc.create_revision,
                version: doc.version + 1,
            }),
            revision,
        })
    }

    /// The first version of the document after `c.base`, given that the
    /// document has moved past it (`read`). `None` if it was deleted.
    async fn first_change_after(
        &self,
        c: &Commit<'_>,
        read: &StateRead,
        end: Instant,
    ) -> Result<Option<StateDoc>, FleetError> {
        let compacted = || FleetError::Indeterminate {
            op_id: c.op_id.to_string(),
            why: "etcd compacted the revisions that hold the answer",
        };
        match (c.base, &read.doc) {
            (Base::Absent, None) => Ok(None),
            (Base::Absent, Some(d)) if d.version == 1 => Ok(Some(d.clone())),
            (Base::Absent, Some(d)) => {
                let opts = GetOptions::new().with_revision(d.create_revision);
                let key = self.keys.state();
                let read = self.request("read history", |c| c_get(c, &key, Some(opts.clone())));
                match read.await {
                    Ok(r) => Ok(r.kvs().first().map(|kv| StateDoc::from_kv(kv.into()))),
                    Err(FleetError::Etcd { source, .. }) if is_compacted(&source) => {
                        Err(compacted())
                    }
                    Err(e) => Err(e),
                }
            }
            (
                Base::At {
                    create_revision,
                    version,
                    ..
                },
                Some(d),
            ) if d.create_revision == create_revision && d.version == version + 1 => {
                Ok(Some(d.clone()))
            }
            (Base::At { mod_revision, .. }, _) => {
                let budget = self
                    .settings
                    .request_timeout
                    .min(end.saturating_duration_since(Instant::now()));
                tokio::time::timeout(budget, self.next_write_after(mod_revision))
                    .await
                    .map_err(|_| FleetError::Timeout {
                        op: "read history",
                        deadline: budget,
                    })?
                    .map_err(|e| match e {
                        HistoryError::Compacted => compacted(),
                        HistoryError::Etcd(source) => FleetError::Etcd {
                            op: "read history",
                            source,
                        },
                    })
            }
        }
    }

    /// The first write of the state key after revision `after`, read from
    /// etcd's history with a watch.
    async fn next_write_after(&self, after: Revision) -> Result<Option<StateDoc>, HistoryError> {
        let opts = WatchOptions::new().with_start_revision(after + 1);
        let mut wc = self.client.watch_client();
        let stream = wc
            .watch(self.keys.state(), Some(opts))
            .await
            .map_err(HistoryError::Etcd)?;
        let (_sender, mut responses) = stream.split();
        while let Some(msg) = responses.next().await {
            let msg = msg.map_err(HistoryError::Etcd)?;
            if msg.compact_revision() > 0 {
                return Err(HistoryError::Compacted);
            }
            if let Some(ev) = msg.events().first() {
                self.contact.touch();
                return Ok(match ev.event_type() {
                    EventType::Put => ev.kv().map(|kv| StateDoc::from_kv(kv.into())),
                    EventType::Delete => None,
                });
            }
        }
        Err(HistoryError::Etcd(etcd_client::Error::WatchError(
            "the history watch ended".into(),
        )))
    }
}

enum HistoryError {
    Compacted,
    Etcd(etcd_client::Error),
}

/// A get of `key` that owns its arguments (a request may be tried twice).
pub(super) fn c_get(
    mut c: etcd_client::Client,
    key: &str,
    opts: Option<GetOptions>,
) -> impl std::future::Future<Output = Result<etcd_client::GetResponse, etcd_client::Error>> {
    let key = key.to_string();
    async move { c.get(key, opts).await }
}

/// etcd's answer to a read at a compacted revision.
fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.code() == tonic::Code::OutOfRange || s.message().contains("compacted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_ours_when_it_holds_our_op_id_as_a_string() {
        let doc = br#"{"generation":4,"op_id":"a-17","live":"blue"}"#;
        assert!(landed(doc, "a-17"));
        assert!(!landed(doc, "a-1"), "a prefix of another id is not ours");
        assert!(!landed(doc, "a-170"));
        assert!(!landed(b"", "a-17"));
    }

    #[test]
    fn a_base_holds_only_for_the_revision_it_was_read_at() {
        let doc = StateDoc {
            value: vec![],
            mod_revision: 7,
            create_revision: 3,
            version: 2,
        };
        let base = Base::of(Some(&doc));
        assert!(base.holds(Some(&doc)));
        let moved = StateDoc {
            mod_revision: 8,
            version: 3,
            ..doc.clone()
        };
        assert!(!base.holds(Some(&moved)));
        assert!(!base.holds(None));
        assert!(Base::Absent.holds(None));
        assert!(!Base::Absent.holds(Some(&doc)));
    }
}
