use super::*;
use crate::config::PoolName;
use crate::control::document::{Bake, RollbackLock};
use crate::control::rollout::Rollout;
use crate::routing::Weights;

fn sample() -> StateDoc {
    let mut d = StateDoc::initial(Weights::with_percent(PoolName::Green, 25.0), 0);
    d.generation = 7;
    d.rollback_lock = Some(RollbackLock {
        pool: PoolName::Green,
        since: "2026-11-20T10:00:00Z".into(),
        reason: "error_rate".into(),
    });
    d
}

#[test]
fn round_trip_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert_eq!(load(&path).unwrap(), None);
    save(&path, &sample()).unwrap();
    assert_eq!(load(&path).unwrap(), Some(sample()));
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn corrupt_file_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, b"{\"version\": 1, \"gener").unwrap();
    match load(&path) {
        Err(FileError::Corrupt { kept, .. }) => {
            assert!(kept.exists());
            assert!(!path.exists());
            assert_eq!(std::fs::read(&kept).unwrap(), b"{\"version\": 1, \"gener");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn times_past_year_9999_make_the_file_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut baking = sample();
    baking.bake = Some(Bake {
        pool: PoolName::Green,
        until_unix_ms: 317_371_251_631_413,
    });
    let mut rolling = sample();
    rolling.rollout = Some(Rollout::new(
        PoolName::Green,
        vec![10.0, 100.0],
        std::time::Duration::from_secs(60),
        true,
        crate::clock::MAX_RFC3339_MS,
    ));
    for (state, field) in [(baking, "bake"), (rolling, "rollout")] {
        save(&path, &state).unwrap();
        match load(&path) {
            Err(FileError::Corrupt { kept, reason, .. }) => {
                assert!(reason.contains(field), "{reason}");
                assert!(kept.exists());
                assert!(!path.exists());
                std::fs::remove_file(kept).unwrap();
            }
            other => panic!("expected Corrupt for {field}, got {other:?}"),
        }
    }
    // The last millisecond of year 9999 is still a valid time.
    let mut edge = sample();
    edge.bake = Some(Bake {
        pool: PoolName::Green,
        until_unix_ms: crate::clock::MAX_RFC3339_MS,
    });
    save(&path, &edge).unwrap();
    assert_eq!(load(&path).unwrap(), Some(edge));
}

#[test]
fn leftovers_of_an_interrupted_write_are_removed_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    save(&path, &sample()).unwrap();
    std::fs::write(dir.path().join("state.json.tmp-99999"), b"{\"vers").unwrap();
    std::fs::write(dir.path().join("other.json.tmp-1"), b"keep").unwrap();
    assert_eq!(load(&path).unwrap(), Some(sample()));
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["other.json.tmp-1", "state.json"]);
}

#[test]
fn failed_write_keeps_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    save(&path, &sample()).unwrap();
    // A directory where the temporary file should go makes the write fail.
    let blocker = dir
        .path()
        .join(format!("state.json.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    let mut next = sample();
    next.generation = 8;
    assert!(save(&path, &next).is_err());
    assert_eq!(load(&path).unwrap().unwrap().generation, 7);
}

#[tokio::test]
async fn a_failed_write_refuses_no_change_and_is_retried_at_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut store = FileStore::new(Some(path.clone()));
    assert_eq!(store.load().await.unwrap(), None);
    let first = sample();
    store.commit(&first, 0).await.unwrap();
    assert_eq!(store.status().last_error, None);
    // A directory where the temporary file should go: the write fails.
    let blocker = dir
        .path()
        .join(format!("state.json.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    let mut next = sample();
    next.generation = 8;
    let committed = store.commit(&next, 7).await.expect("accepted all the same");
    assert_eq!(committed.generation, 8);
    assert!(store.status().last_error.is_some(), "reported");
    assert_eq!(load(&path).unwrap().unwrap().generation, 7);
    store.tick().await;
    assert!(store.status().last_error.is_some(), "still failing");
    std::fs::remove_dir(&blocker).unwrap();
    store.tick().await;
    assert_eq!(store.status().last_error, None, "written again");
    assert_eq!(load(&path).unwrap().unwrap().generation, 8);
    assert!(store.events().is_none(), "nobody else writes a state file");
}

#[tokio::test]
async fn a_commit_from_a_generation_that_moved_on_is_a_conflict() {
    let mut store = FileStore::new(None);
    let mut doc = sample();
    store.commit(&doc, 0).await.unwrap();
    doc.generation = 8;
    match store.commit(&doc, 6).await {
        Err(StoreError::Conflict { current }) => assert_eq!(current.generation, 7),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.load().await.unwrap().unwrap().generation, 7);
    assert!(store.commit(&doc, 7).await.is_ok());
    assert_eq!(store.status(), StoreStatus::default(), "memory only");
}

#[tokio::test]
async fn a_version_1_state_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(
        &path,
        r#"{"version": 1, "generation": 12, "live": "green",
            "weights": {"blue": 10.0, "green": 90.0},
            "rollout": null, "bake": null, "rollback_lock": null,
            "saved_at": "2026-11-20T10:00:00Z"}"#,
    )
    .unwrap();
    let mut store = FileStore::new(Some(path.clone()));
    let doc = store.load().await.unwrap().expect("present");
    assert_eq!(
        (doc.version, doc.generation, doc.live),
        (1, 12, PoolName::Green)
    );
    assert_eq!(doc.hold, None);
    // The next commit writes the current version.
    let mut next = doc.clone();
    next.version = crate::control::document::DOC_VERSION;
    next.generation = 13;
    store.commit(&next, 12).await.unwrap();
    assert_eq!(load(&path).unwrap().unwrap().version, 2);
    // A version from the future is not guessed at: set aside.
    let mut future = serde_json::to_value(&next).unwrap();
    future["version"] = 9.into();
    std::fs::write(&path, future.to_string()).unwrap();
    match load(&path) {
        Err(FileError::Corrupt { reason, .. }) => assert_eq!(reason, "unknown version 9"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
