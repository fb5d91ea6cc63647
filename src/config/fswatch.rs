//! Which file system events concern the files a watcher was set up for.
//!
//! The config and certificate watchers watch directories, not files, so that
//! a replacement by rename (editors, `mv`) or a Kubernetes `..data` symlink
//! swap is seen. A directory holds other files too: the state file, logs,
//! editors' swap files, whatever else the operator keeps there. Before this
//! filter, every write to any of them woke the reload path, and a file
//! written continuously beside the config (a log) kept the watcher thread
//! and the runtime busy for nothing. [`Interest`] names the directory
//! entries that can change what the watched files read as; events about
//! anything else are dropped in the watcher's own thread.
//!
//! It owns no state beyond the names and must not read files on an event:
//! the names are worked out once, when the watch is set up.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// The directory entries whose changes concern a set of watched files, and
/// the directories to watch to see them.
#[derive(Debug, Clone, Default)]
pub struct Interest {
    names: Vec<OsString>,
    dirs: Vec<PathBuf>,
}

/// The directory of `path`, `.` for a bare file name.
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Interest {
    /// For each file: its own name and directory; when it is a symlink, the
    /// first step of the link (`..data` of `..data/cfg.yaml`, the entry a
    /// Kubernetes update renames) and the name and directory of what it
    /// finally points to.
    pub fn new<'a>(files: impl IntoIterator<Item = &'a Path>) -> Self {
        let mut interest = Interest::default();
        for file in files {
            interest.add_name(file.file_name());
            interest.add_dir(dir_of(file));
            if let Ok(link) = std::fs::read_link(file) {
                interest.add_name(link.file_name());
                if let Some(Component::Normal(first)) = link.components().next() {
                    interest.add_name(Some(first));
                }
            }
            if let Ok(real) = std::fs::canonicalize(file) {
                interest.add_name(real.file_name());
                interest.add_dir(dir_of(&real));
            }
        }
        interest
    }

    fn add_name(&mut self, name: Option<&std::ffi::OsStr>) {
        if let Some(name) = name {
            if !self.names.iter().any(|n| n == name) {
                self.names.push(name.to_os_string());
            }
        }
    }

    fn add_dir(&mut self, dir: PathBuf) {
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
    }

    /// The directories to watch, each once.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether `event` may have changed a watched file. Reads (our own
    /// included) never do; an event that names no path (the kernel's queue
    /// overflowed, a rescan is asked for) always may.
    pub fn concerns(&self, event: &notify::Event) -> bool {
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return false;
        }
        if event.paths.is_empty() || event.need_rescan() {
            return true;
        }
        event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|name| self.names.iter().any(|n| n == name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, Flag, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    fn modify(path: &Path) -> Event {
        Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any))).add_path(path.into())
    }

    #[test]
    fn plain_file_concerns_only_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("switchyard.yaml");
        std::fs::write(&cfg, "x").unwrap();
        let interest = Interest::new([cfg.as_path()]);
        assert_eq!(interest.dirs(), &[dir.path().to_path_buf()]);
        assert!(interest.concerns(&modify(&cfg)));
        // A log written beside it, the state file, an editor's swap file.
        for other in ["h2load.log", "state.json", ".switchyard.yaml.swp"] {
            assert!(
                !interest.concerns(&modify(&dir.path().join(other))),
                "{other}"
            );
        }
        // Replaced by rename: the rename's destination is the config's name.
        let rename = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path(dir.path().join("switchyard.yaml.tmp"))
            .add_path(cfg.clone());
        assert!(interest.concerns(&rename));
        // Reading it (our own reads included) is not a change.
        let read = Event::new(EventKind::Access(AccessKind::Any)).add_path(cfg.clone());
        assert!(!interest.concerns(&read));
    }

    #[test]
    fn events_without_paths_and_rescans_always_concern() {
        let interest = Interest::new([Path::new("/nonexistent/cfg.yaml")]);
        assert_eq!(interest.dirs(), &[PathBuf::from("/nonexistent")]);
        assert!(interest.concerns(&Event::new(EventKind::Other)));
        let rescan = Event::new(EventKind::Create(CreateKind::Any))
            .add_path("/nonexistent/other".into())
            .set_flag(Flag::Rescan);
        assert!(interest.concerns(&rescan));
    }

    #[test]
    fn kubernetes_layout_concerns_the_data_symlink_and_the_target() {
        // cfg.yaml -> ..data/cfg.yaml, ..data -> v1 (what a ConfigMap mount is).
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("v1")).unwrap();
        std::fs::write(dir.path().join("v1/real.yaml"), "x").unwrap();
        std::os::unix::fs::symlink("v1", dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/real.yaml", dir.path().join("cfg.yaml")).unwrap();
        let cfg = dir.path().join("cfg.yaml");
        let interest = Interest::new([cfg.as_path()]);
        let real_dir = std::fs::canonicalize(dir.path().join("v1")).unwrap();
        assert!(interest.dirs().contains(&real_dir), "{:?}", interest.dirs());
        // The update renames ..data_tmp onto ..data.
        let swap = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
            .add_path(dir.path().join("..data"));
        assert!(interest.concerns(&swap));
        assert!(interest.concerns(&modify(&real_dir.join("real.yaml"))));
        assert!(!interest.concerns(&modify(&dir.path().join("..2026_11_21"))));
    }

    #[test]
    fn several_files_share_directories() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let interest = Interest::new([cert.as_path(), key.as_path()]);
        assert_eq!(interest.dirs().len(), 1);
        assert!(interest.concerns(&modify(&cert)));
        assert!(interest.concerns(&modify(&key)));
        assert!(!interest.concerns(&modify(&dir.path().join("chain.pem"))));
    }
}
