#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: steady
# on a noisy machine (it counts instructions, not seconds), so two commits
# compare even when wall-clock benchmarks cannot tell them apart.
#
#   benches/compare/callgrind.sh [--requests N] [--no-build] [--port-base P]
#                                [--mirror PERCENT] [--target-dir DIR]
#
# Starts examples/bench_upstream (two blue, two green instances, 64-byte
# body) and switchyard under callgrind, pinned to one core when there are
# two (the single-threaded runtime, as in run.sh), warms up with 2 000
# requests, then counts the user-space instructions of N requests (default
# 20 000, 64 keep-alive connections, h2load) and prints them per request.
# The profile is kept in target/bench-compare/callgrind.out for
# callgrind_annotate. Installs valgrind and nghttp2-client when missing.
# --mirror P adds `mirror: {percent: P}` (copies of blue's requests to
# green, compared) and prints how many copies were counted; --target-dir
# takes the binaries from DIR/release (with --no-build: another build).
# Only 127.0.0.1 is used; everything started is stopped on exit.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
REQUESTS=20000
BUILD=1
PORT_BASE=18000
MIRROR=""
TARGET="$REPO/target"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --requests) REQUESTS="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --port-base) PORT_BASE="$2"; shift 2 ;;
        --mirror) MIRROR="$2"; shift 2 ;;
        --target-dir) TARGET="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
    echo "installing ${need[*]}"
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ((BUILD)); then
    (cd "$REPO" && CARGO_TARGET_DIR="$TARGET" cargo build --release --quiet --bin switchyard --example bench_upstream)
fi

OUT="$REPO/target/bench-compare"
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/switchyard-callgrind.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PIN=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then PIN=(taskset -c 1); fi
B1=$((PORT_BASE + 1)) B2=$((PORT_BASE + 2)) G1=$((PORT_BASE + 11)) G2=$((PORT_BASE + 12))
PROXY=$((PORT_BASE + 82)) ADMIN=$((PORT_BASE + 901))
cat >"$WORK/switchyard.yaml" <<EOF
listeners:
  - bind: "127.0.0.1:$PROXY"
admin:
  bind: "127.0.0.1:$ADMIN"
pools:
  blue:
    endpoints: ["127.0.0.1:$B1", "127.0.0.1:$B2"]
  green:
    endpoints: ["127.0.0.1:$G1", "127.0.0.1:$G2"]
health_check:
  path: /health
  interval: 2s
traffic:
  initial: { blue: 90, green: 10 }
state_file: null
log: { level: warn }
EOF
if [[ -n "$MIRROR" ]]; then echo "mirror: { percent: $MIRROR }" >>"$WORK/switchyard.yaml"; fi

"${PIN[@]}" "$TARGET/release/examples/bench_upstream" \
    --listen "blue-1=127.0.0.1:$B1" --listen "blue-2=127.0.0.1:$B2" \
    --listen "green-1=127.0.0.1:$G1" --listen "green-2=127.0.0.1:$G2" \
    --body-size 64 >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
"${PIN[@]}" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "$TARGET/release/switchyard" run -c "$WORK/switchyard.yaml" >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
URL="http://127.0.0.1:$PROXY/"
for _ in $(seq 150); do
    curl -s -o /dev/null "$URL" && break
    sleep 0.2
done
curl -sf -o /dev/null "$URL" || { echo "switchyard did not answer under valgrind:"; cat "$WORK/proxy.log"; exit 1; }

h2load --h1 -n 2000 -c 16 "$URL" >/dev/null
copies() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^switchyard_mirror_requests_total/ { n += $2 } END { print n + 0 }'; }
copied_before=$(copies)
callgrind_control -z "$PROXY_PID" >/dev/null 2>&1
result=$(h2load --h1 -n "$REQUESTS" -c 64 "$URL")
callgrind_control -d "$PROXY_PID" >/dev/null 2>&1
copied=$(($(copies) - copied_before))
ok=$(awk '/^requests:/ { print $8 }' <<<"$result")
if [[ "$ok" != "$REQUESTS" ]]; then
    echo "only $ok of $REQUESTS requests succeeded:"; echo "$result"; exit 1
fi
dump="$WORK/cg.out.1"
[[ -s "$dump" ]] || { echo "no callgrind dump at $dump"; exit 1; }
cp "$dump" "$OUT/callgrind.out"
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "commit $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'): $REQUESTS requests, $total instructions, $((total / REQUESTS)) per request"
if [[ -n "$MIRROR" ]]; then
    echo "mirror $MIRROR %: $copied copies of the $REQUESTS requests counted: $(curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^switchyard_mirror_requests_total' | tr '\n' ' ')"
fi
echo "profile: $OUT/callgrind.out (callgrind_annotate --inclusive=yes $OUT/callgrind.out | less)"
