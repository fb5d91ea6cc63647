#!/usr/bin/env bash
# The dashboard (SPEC.md section 11) in a real browser: Debian's chromium
# and chromium-driver, driven by selenium (PyPI) from dashboard.py, against
# the demo and a `switchyard run` proxy with real upstreams. Installs what
# is missing; fails, never skips, when it cannot. SCREENSHOT=path.png also
# saves a picture of the page during a rollout (docs/dashboard.png).
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/lib.sh
need_tool chromium chromium
need_tool chromedriver chromium-driver

venv="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-ci/selenium-venv"
if ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
  echo "selenium missing: installing it from PyPI into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'selenium>=4.20,<5'
fi
"$venv/bin/python" -c 'import selenium' || { echo "FAIL: selenium is not available"; exit 1; }

cargo build --quiet --bin switchyard
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
chromium --version 2>/dev/null | head -n 1 || true
if ! "$venv/bin/python" .ci/checks/dashboard.py ./target/debug/switchyard "$work" ${SCREENSHOT:+"$SCREENSHOT"}; then
  for log in "$work"/*.log "$work"/*.log.err; do
    [ -e "$log" ] && { echo "== $log"; tail -n 40 "$log"; }
  done
  echo "FAIL: the dashboard did not behave in the browser"
  exit 1
fi
