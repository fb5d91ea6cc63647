//! Watching a TLS listener's certificate and key files and reloading them
//! into its [`CertStore`] when they change.
//!
//! The directories holding the files are watched, not the files, so a
//! replacement by rename (editors, `mv`) or a symlink swap (Kubernetes
//! Secret mounts) is seen. Events are coalesced for a moment so a cert and a
//! key written one after the other are read together; a slow poll backs the
//! watcher up on file systems without change notification. Reading files
//! that have not changed costs a read and a compare, nothing else.

use super::CertStore;
use crate::config::fswatch::Interest;
use notify::{RecursiveMode, Watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long to wait for more writes after a change before reading.
const SETTLE: Duration = Duration::from_millis(150);
/// Reread anyway this often, in case no event came.
const POLL: Duration = Duration::from_secs(60);

/// Watch `store`'s files until `cancel`. If the watcher cannot be set up the
/// error is logged and the poll alone reloads.
pub fn spawn(store: Arc<CertStore>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let interest = Interest::new([store.files.cert.as_path(), store.files.key.as_path()]);
    let dirs = interest.dirs().to_vec();
    let watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            // Reads (ours included) and other files in the directories
            // are not a change of the certificate or key.
            Ok(ev) if !interest.concerns(&ev) => {}
            Ok(_) => {
                // Full means a reload is already due: nothing to add.
                let _coalesced = tx.try_send(());
            }
            Err(e) => tracing::warn!(error = %e, "certificate watcher error"),
        });
    let watcher = match watcher {
        Ok(mut w) => {
            for d in &dirs {
                if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
                    tracing::error!(dir = %d.display(), error = %e,
                        "cannot watch certificate directory; polling every {POLL:?}");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot watch certificate files; polling every {POLL:?}");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher; // dropped, and so stopped, with this task
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        poll.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(()) = rx.recv() => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(SETTLE) => {}
                    }
                    while rx.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            let store = store.clone();
            // A refusal is logged and kept for status by the store itself.
            match tokio::task::spawn_blocking(move || store.reload()).await {
                Ok(Ok(_)) | Ok(Err(_)) => {}
                Err(e) => tracing::error!(error = %e, "certificate reload task failed"),
            }
        }
    })
}
