#!/usr/bin/env bash
# Slow-client attacks against the real proxy for 15 seconds: slowloris
# (headers trickled, slowhttptest -H) and slow bodies (-B) at once, 1000
# connections each. slowhttptest's own probe and ours (a plain GET every
# half second, answered within 2 s) must find the proxy available the whole
# time. Installs Debian's slowhttptest when missing; fails, never skips,
# when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."

source .ci/lib.sh
need_tool slowhttptest slowhttptest
start_demo 0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

wait_for_demo

# -i 5: a header line (or body chunk) every 5 s per connection, under the
# demo's client_header of 10 s, so connections stay open as long as the
# proxy lets them.
(cd "$work" && slowhttptest -H -c 1000 -r 200 -i 5 -x 24 -l 15 -p 3 -u "http://$proxy/" -g -o "$work/headers" \
  >"$work/headers.log" 2>&1) &
pids+=($!)
(cd "$work" && slowhttptest -B -c 1000 -r 200 -i 5 -x 24 -s 65536 -l 15 -p 3 -u "http://$proxy/" -g -o "$work/body" \
  >"$work/body.log" 2>&1) &
pids+=($!)

# Our own probe, for the 15 seconds of the attack.
probes=0; failed=0
end=$((SECONDS + 16))
while [ "$SECONDS" -lt "$end" ]; do
  probes=$((probes + 1))
  if ! curl -fsS -m 2 -o /dev/null "http://$proxy/"; then failed=$((failed + 1)); fi
  sleep 0.5
done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()

status=0
for mode in headers body; do
  csv="$work/$mode.csv"
  if [ ! -s "$csv" ]; then
    cat "$work/$mode.log"; echo "FAIL: slowhttptest ($mode) produced no report"; status=1; continue
  fi
  # Columns: Seconds,Closed,Pending,Connected,Service Available (0 = unavailable).
  down=$(awk -F, 'NR > 1 && $5 == 0 {n++} END {print n + 0}' "$csv")
  peak=$(awk -F, 'NR > 1 && $4 > m {m = $4} END {print m + 0}' "$csv")
  rows=$(awk 'END {print NR - 1}' "$csv")
  echo "slowhttptest $mode: $rows seconds, at most $peak slow connections open, unavailable $down s"
  [ "$down" = 0 ] || { echo "FAIL: slowhttptest ($mode) found the proxy unavailable"; status=1; }
done
echo "probe: $probes GETs during the attack, $failed failed"
[ "$failed" = 0 ] || { echo "FAIL: the proxy did not answer our probe during the attack"; status=1; }
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the proxy died"; status=1; }
[ "$status" = 0 ] && echo "slowhttptest: the proxy stayed available"
exit "$status"
