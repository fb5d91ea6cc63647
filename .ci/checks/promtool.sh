#!/usr/bin/env bash
# A live scrape of /metrics must pass `promtool check metrics` and carry every
# metric of SPEC.md section 7. Installs promtool (Debian's prometheus package)
# when missing; fails, never skips, when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."

source .ci/lib.sh
need_tool promtool prometheus
start_demo 50
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
wait_for_demo

# Traffic on both pools, then a rollback, so every family has samples.
curl -fsS -X PUT "http://$admin/api/v1/weights" -d '{"blue": 50, "green": 50}' >/dev/null
green_served() { curl -fsS "http://$admin/metrics" | grep -qE '^switchyard_requests_total\{[^}]*pool="green"[^}]*\} [1-9]'; }
wait_until 10 "no request reached green after the 50/50 split" green_served
curl -fsS -X POST "http://$admin/api/v1/rollback" -d '{"reason": "promtool check"}' >/dev/null
curl -fsS "http://$admin/metrics" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt"

missing=0
for name in switchyard_requests_total switchyard_request_duration_seconds switchyard_upstream_errors_total \
  switchyard_inflight_requests switchyard_pool_weight switchyard_endpoint_healthy switchyard_switches_total \
  switchyard_rollbacks_total switchyard_held_requests_total switchyard_hold_duration_seconds \
  switchyard_config_reloads_total; do
  if ! grep -q "^# TYPE $name " "$work/metrics.txt"; then
    echo "FAIL: metric $name is missing from the scrape"
    missing=1
  fi
done
grep -q 'switchyard_rollbacks_total{reason="manual"} 1' "$work/metrics.txt" || { echo "FAIL: the manual rollback is not counted"; missing=1; }
[ "$missing" = 0 ] || exit 1
echo "promtool: the live scrape is valid and complete ($(grep -c '^switchyard_' "$work/metrics.txt") samples)"
