//! A passing test run is quiet: what the proxies under test log goes to a
//! file per proxy and is shown only when the test fails. Tried from the
//! outside: this test binary runs one of its own tests, whose proxy logs a
//! WARN, and what the run prints is read.

use crate::support::process::ProxyProcess;
use std::process::{Command, Output};
use switchyard::config::PoolName;
use switchyard::control::document::StateDoc;
use switchyard::routing::Weights;

const SUBJECT: &str = "quiet::a_proxy_that_logs_a_warning";
const FAIL: &str = "SWITCHYARD_TEST_FAIL_ON_PURPOSE";

/// Run by the two tests below through the test binary itself: a proxy that
/// logs a WARN at start (a stored 70/30 overriding traffic.initial 100/0),
/// then a pass, or a failure when $SWITCHYARD_TEST_FAIL_ON_PURPOSE is set.
#[tokio::test]
#[ignore = "run by the other tests in quiet.rs through this test binary"]
async fn a_proxy_that_logs_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let doc = StateDoc::initial(Weights::with_percent(PoolName::Green, 30.0), 0);
    switchyard::control::store::file::save(&state, &doc).unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\"]\n  green:\n    endpoints: [\"127.0.0.1:8011\"]\ntraffic:\n  initial: {{blue: 100, green: 0}}\nstate_file: {}\n",
        state.display()
    );
    let p = ProxyProcess::start(dir.path(), &yaml).await;
    // The WARN was written (else "quiet" below proves nothing).
    let log = std::fs::read_to_string(dir.path().join("switchyard.stderr.log")).unwrap();
    assert!(log.contains("WARN"), "the proxy logged no WARN: {log}");
    assert!(
        std::env::var_os(FAIL).is_none(),
        "failing on purpose (${FAIL})"
    );
    drop(p);
}

fn run_subject(fail: bool) -> (Output, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--ignored", "--exact", SUBJECT, "--test-threads=1"]);
    if fail {
        c.env(FAIL, "1");
    } else {
        c.env_remove(FAIL);
    }
    let out = c.output().expect("run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn a_passing_test_prints_nothing_its_proxy_logged() {
    let (out, text) = run_subject(false);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the subject did not run: {text}");
    assert!(
        !text.contains("WARN"),
        "a passing test printed a log line: {text}"
    );
    assert!(!text.contains("restored the stored state"), "{text}");
}

#[test]
fn a_failing_test_shows_what_its_proxy_logged() {
    let (out, text) = run_subject(true);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("failing on purpose"), "{text}");
    assert!(text.contains("--- stderr of switchyard ("), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("restored the stored state"))
        .unwrap_or_else(|| panic!("the proxy's log is not shown: {text}"));
    assert!(line.contains("WARN"), "{line}");
}
