#!/usr/bin/env bash
# The soak test for 60 seconds (cargo test runs it for 10): mixed GET and
# POST load with flips, reloads, a rollout that rolls back and an upstream
# restarting, all at once, against the real binary. Every request must be
# accounted for, switchyard_requests_total must agree with the client, and
# descriptors and memory must be flat. Longer: SWITCHYARD_SOAK_SECS=600.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SWITCHYARD_SOAK_SECS="${SWITCHYARD_SOAK_SECS:-60}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cargo test --quiet --test e2e soak:: -- --nocapture >"$log" 2>&1; then
  grep -E '^soak ' "$log"
  echo "soak: ${SWITCHYARD_SOAK_SECS}s, nothing lost"
else
  # The proxy's own warnings are expected under faults; show the verdict.
  grep -vE ' (WARN|ERROR|INFO) ' "$log" | tail -n 60
  echo "FAIL: the soak test failed"
  exit 1
fi
