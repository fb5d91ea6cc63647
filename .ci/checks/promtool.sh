#!/usr/bin/env bash
# A live scrape of /metrics must pass `promtool check metrics` and carry every
# metric of SPEC.md section 7. Installs promtool (Debian's prometheus package)
# when missing; fails, never skips, when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool missing: installing Debian's prometheus package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
command -v promtool >/dev/null || { echo "FAIL: promtool is not available"; exit 1; }
command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null; }

cargo build --quiet --bin switchyard
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
proxy=127.0.0.1:$(port); admin=127.0.0.1:$(port); control=127.0.0.1:$(port)
./target/debug/switchyard demo --listen "$proxy" --admin "$admin" --control "$control" --traffic 50 \
  >"$work/demo.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 100); do
  curl -fsS "http://$admin/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$admin/healthz" >/dev/null || { cat "$work/demo.log"; echo "FAIL: demo did not start"; exit 1; }
# Some traffic on both pools, a failing request and a rollback, so every
# family has samples.
curl -fsS -X PUT "http://$admin/api/v1/weights" -d '{"blue": 50, "green": 50}' >/dev/null
curl -fsS -X POST "http://$admin/api/v1/rollback" -d '{"reason": "promtool check"}' >/dev/null
sleep 1
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
