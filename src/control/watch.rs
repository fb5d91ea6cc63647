//! Watching the config file and asking the controller to reload it.
//!
//! The watch is on the file's directory (and, when the path is a symlink,
//! on the directory of what it points to), not on the file itself: editors
//! replace a file by rename and Kubernetes swaps a `..data` symlink, and
//! both leave a watch on the old inode blind. Events about other files in
//! those directories are dropped ([`Interest`]); the rest are debounced, and
//! a reload is asked for only when the content really changed.

use crate::config::fswatch::Interest;
use crate::control::{Actor, Command, ControllerHandle};
use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
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

/// Watch `path` until `stop`; each real change sends `Command::Reload`.
pub fn spawn(
    path: PathBuf,
    controller: ControllerHandle,
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
    let mut last = std::fs::read(&path).ok();
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
            if now.is_some() && now != last {
                tracing::info!(path = %path.display(), "config file changed: reloading");
                last = now;
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
