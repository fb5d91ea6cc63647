//! The state file: the single proxy's [`StateStore`], written atomically
//! after every change (temporary file, fsync, rename, fsync of the
//! directory), so a crash at any point leaves the old or the new state.
//!
//! A corrupt or unreadable file is kept aside (renamed) and reported; the
//! proxy then starts from the config. A failed write never refuses a
//! change: the document is kept in memory, reported in status, and written
//! again at every tick until the disk allows. Without a configured path the
//! store keeps the document in memory only.

use crate::control::document::{StateDoc, READABLE_VERSIONS};
use crate::control::store::{StateStore, StoreError, StoreEvent, StoreFuture, StoreStatus};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// The state file, or memory when `path` is None.
#[derive(Debug, Default)]
pub struct FileStore {
    path: Option<PathBuf>,
    /// The last committed document (what `expected_generation` is checked against).
    current: Option<StateDoc>,
    /// A committed document the last write failed to store; retried at every tick.
    unwritten: Option<StateDoc>,
    last_error: Option<String>,
}

impl FileStore {
    pub fn new(path: Option<PathBuf>) -> Self {
        FileStore {
            path,
            ..FileStore::default()
        }
    }

    fn write(&mut self, doc: &StateDoc) {
        let Some(path) = &self.path else { return };
        match save(path, doc) {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    tracing::info!("state file written again");
                }
                self.unwritten = None;
            }
            Err(e) => {
                let msg = e.to_string();
                // Retried every tick: say it once per distinct failure.
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(error = %e, "state not persisted; the change is kept in memory");
                }
                self.last_error = Some(msg);
                self.unwritten = Some(doc.clone());
            }
        }
    }
}

impl StateStore for FileStore {
    fn load(&mut self) -> StoreFuture<'_, Result<Option<StateDoc>, StoreError>> {
        Box::pin(async move {
            let Some(path) = &self.path else {
                return Ok(self.current.clone());
            };
            let doc = load(path)?;
            self.current = doc.clone();
            Ok(doc)
        })
    }

    fn commit<'a>(
        &'a mut self,
        next: &'a StateDoc,
        expected_generation: u64,
    ) -> StoreFuture<'a, Result<StateDoc, StoreError>> {
        Box::pin(async move {
            let stored = self.current.as_ref().map_or(0, |d| d.generation);
            if stored != expected_generation {
                if let Some(current) = self.current.clone() {
                    return Err(StoreError::Conflict {
                        current: Box::new(current),
                    });
                }
            }
            self.write(next);
            self.current = Some(next.clone());
            Ok(next.clone())
        })
    }

    fn tick(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if let Some(doc) = self.unwritten.take() {
                self.write(&doc);
            }
        })
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            path: self.path.clone(),
            last_error: self.last_error.clone(),
        }
    }

    fn events(&mut self) -> Option<mpsc::Receiver<StoreEvent>> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {} is corrupt ({reason}); kept aside as {}", path.display(), kept.display())]
    Corrupt {
        path: PathBuf,
        kept: PathBuf,
        reason: String,
    },
    #[error("cannot write state file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Read the state file. `Ok(None)` when there is none; a corrupt file is
/// renamed to `<name>.corrupt-<unix ms>` and reported as `Corrupt`.
/// Temporary files left by a write that a crash interrupted are removed:
/// the state they held never became current.
pub fn load(path: &Path) -> Result<Option<StateDoc>, FileError> {
    remove_stale_temporaries(path);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let reason = match parse(&bytes) {
        Ok(doc) => return Ok(Some(doc)),
        Err(why) => why,
    };
    let mut kept = path.as_os_str().to_owned();
    kept.push(format!(".corrupt-{}", crate::clock::unix_ms()));
    let kept = PathBuf::from(kept);
    if let Err(e) = std::fs::rename(path, &kept) {
        tracing::error!(error = %e, "cannot move the corrupt state file aside");
    }
    Err(FileError::Corrupt {
        path: path.to_path_buf(),
        kept,
        reason,
    })
}

/// The document in a state file's bytes, or why it is not usable.
fn parse(bytes: &[u8]) -> Result<StateDoc, String> {
    match serde_json::from_slice::<StateDoc>(bytes) {
        Ok(s) if READABLE_VERSIONS.contains(&s.version) => match out_of_range(&s) {
            None => Ok(s),
            Some(why) => Err(why),
        },
        Ok(s) => Err(format!("unknown version {}", s.version)),
        Err(e) => Err(e.to_string()),
    }
}

/// What a start would restore from the state file at `path`, read only
/// (`check` asks): nothing is set aside or removed. `Ok(None)`: no file;
/// `Err`: why a start would set it aside and begin from the config.
pub fn peek(path: &Path) -> Result<Option<StateDoc>, String> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// A time no valid run can have written: past year 9999, where RFC 3339
/// ends. An older build wrote such times (a bake of 10000 years) and then
/// crashed formatting them at every start; the file is set aside instead.
fn out_of_range(s: &StateDoc) -> Option<String> {
    let max = crate::clock::MAX_RFC3339_MS;
    if let Some(b) = s.bake.as_ref().filter(|b| b.until_unix_ms > max) {
        return Some(format!(
            "bake.until_unix_ms {} is past year 9999",
            b.until_unix_ms
        ));
    }
    let next = s.rollout.as_ref().and_then(|r| r.next_step_at_unix_ms);
    if let Some(t) = next.filter(|&t| t > max) {
        return Some(format!(
            "rollout.next_step_at_unix_ms {t} is past year 9999"
        ));
    }
    None
}

/// Remove `<name>.tmp-*` beside `path`, the leftovers of interrupted writes.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.to_owned();
    prefix.push(".tmp-");
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::info!(file = %e.path().display(), "removed the leftover of an interrupted state write")
                }
                Err(err) => {
                    tracing::warn!(file = %e.path().display(), error = %err, "cannot remove the leftover of an interrupted state write")
                }
            }
        }
    }
}

/// Write `state` atomically: a temporary file beside `path`, fsync, rename
/// over `path`, fsync of the directory.
pub fn save(path: &Path, state: &StateDoc) -> Result<(), FileError> {
    let err = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let body = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        if let Err(rm) = std::fs::remove_file(&tmp) {
            tracing::debug!(error = %rm, "no temporary state file to remove");
        }
        err(e)
    })
}

#[cfg(test)]
mod tests;
