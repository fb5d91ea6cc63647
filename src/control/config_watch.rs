//! Watching the config file and asking the controller to reload it.
//!
//! The watch is on the file's directory (and, when the path is a symlink,
//! on the directory of what it points to), not on the file itself: editors
//! replace a file by rename and Kubernetes swaps a `..data` symlink, and
//! both leave a watch on the old inode blind. Events about other files in
//! those directories are dropped ([`Interest`]); the rest are debounced, and
//! a reload is asked for only when the content really changed.

use crate::config::fswatch::Interest;
use crate::control::{Actor, Command, ControllerHandle, Shared};
use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Quiet time after the last file event before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// Whether the file as it is `now` needs a reload, given what the last
/// reload read (`Shared::config_read`). Compared with what was loaded, not
/// with what the watcher saw last: an edit `POST /reload` already applied
/// needs no second reload, and a file that comes back unchanged after a
/// reload failed to read it does (its error must clear). A missing file
/// (mid-rename) waits for its return.
pub fn needs_reload(now: Option<&[u8]>, last_read: Option<&[u8]>) -> bool {
    now.is_some() && now != last_read
}

/// Watch `path` until `stop`; each real change sends `Command::Reload`.
pub fn spawn(
    path: PathBuf,
    controller: ControllerHandle,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), WatchError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let interest = Interest::new([path.as_path()]);
    let dirs = interest.dirs().to_vec();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only changes that may concern the config file wake the task: not
        // the state file or a log written beside it.
        if res.is_ok_and(|ev| interest.concerns(&ev)) {
            // The receiver only goes away at shutdown.
            let _closed = tx.send(());
        }
    })
    .map_err(|source| WatchError::Watch {
        dir: path.clone(),
        source,
    })?;
    for dir in dirs {
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Watch { dir, source })?;
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                ev = rx.recv() => if ev.is_none() { break },
                _ = stop.cancelled() => break,
            }
            // Debounce: wait for a quiet moment.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            let now = std::fs::read(&path).ok();
            let last_read = shared.config_read.load_full();
            if needs_reload(now.as_deref(), last_read.as_deref().map(Vec::as_slice)) {
                tracing::info!(path = %path.display(), "config file changed: reloading");
                controller.notify(Command::Reload {
                    actor: Actor::Config,
                    if_generation: None,
                    reply: None,
                });
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::needs_reload;

    #[test]
    fn reloads_only_what_the_last_reload_did_not_read() {
        // Never read yet (start): any file is worth a (no-op) reload.
        assert!(needs_reload(Some(b"a"), None));
        // POST /reload already read this edit: no second reload.
        assert!(!needs_reload(Some(b"b"), Some(b"b")));
        assert!(needs_reload(Some(b"b"), Some(b"a")));
        // Gone mid-rename: wait for it.
        assert!(!needs_reload(None, Some(b"a")));
        assert!(!needs_reload(None, None));
        // Back, unchanged, after a reload could not read it: reload, so
        // the error clears.
        assert!(needs_reload(Some(b"a"), None));
    }
}
