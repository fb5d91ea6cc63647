#!/usr/bin/env bash
# The dashboard (SPEC.md section 11) in a real browser: Debian's chromium
# and chromium-driver, driven by selenium (PyPI) from dashboard.py, against
# the demo and a `switchyard run` proxy with real upstreams. Installs what
# is missing; fails, never skips, when it cannot. SCREENSHOT=path.png also
# saves a picture of the page during a rollout (docs/dashboard.png).
# With --fleet (run by fleet.sh, which has the fleet build's tools): two
# replicas on a local etcd, the members and a fleet-wide hold on the page.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/lib.sh
need_selenium
features=()
if [ "${1:-}" = "--fleet" ]; then
  need_tool etcd etcd-server
  features=(--features fleet)
fi

cargo build --quiet --bin switchyard "${features[@]}"
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
chromium --version 2>/dev/null | head -n 1 || true
if ! "$selenium_py" .ci/checks/dashboard.py ./target/debug/switchyard "$work" ${SCREENSHOT:+"$SCREENSHOT"} "$@"; then
  for log in "$work"/*.log "$work"/*.log.err; do
    [ -e "$log" ] && { echo "== $log"; tail -n 40 "$log"; }
  done
  echo "FAIL: the dashboard did not behave in the browser"
  exit 1
fi
