#!/usr/bin/env bash
# The PostgreSQL gate (issue 24, SPEC.md section 13) against real servers:
# tests/e2e/postgres_gate.rs starts an initdb primary and a pg_basebackup -R
# streaming replica on loopback ports (as the postgres user: PostgreSQL
# refuses root) and cuts over between apps writing to them. Those tests
# are #[ignore]d in a plain `cargo test`; here they run with --ignored.
# Installs Debian's postgresql (and, for the page, chromium and selenium)
# when missing; fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib.sh
source .ci/lib.sh

initdb_path() { ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(initdb_path)" ]; then
  echo "PostgreSQL missing: installing Debian's postgresql package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
initdb=$(initdb_path)
[ -n "$initdb" ] || { echo "FAIL: PostgreSQL's initdb is not available"; exit 1; }
"$initdb" --version
# The servers run as postgres when the tests run as root.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "FAIL: no postgres user to run the servers as"
  exit 1
fi

start=$SECONDS
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo test --test e2e postgres_gate -- --ignored --nocapture --test-threads 1 2>&1 | tee "$out"
# Never pass on no test run (a renamed filter would run nothing).
grep -Eq 'test result: ok\. [1-9][0-9]* passed' "$out" || { echo "FAIL: no PostgreSQL test ran"; exit 1; }
# The README's walkthrough, run as written: primary, replica, two apps,
# the proxy, a cutover under writes; fails if a write is lost or doubled.
# Then the dashboard of that proxy in headless Chromium: the gate's LSNs,
# lag curve and promotion (.ci/checks/dashboard_gate.py).
need_selenium
cargo build --quiet --bin switchyard
shot=$(mktemp -d)
trap 'rm -f "$out"; rm -rf "$shot"' EXIT
PG_DEMO_THEN="$selenium_py .ci/checks/dashboard_gate.py $shot" bash scripts/pg-demo.sh --check
echo "postgres: passed in $((SECONDS - start)) s"
