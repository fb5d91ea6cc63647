#!/usr/bin/env bash
# A fleet on one machine (README: Running a fleet): one local etcd, the demo's
# sample upstreams (from `switchyard demo`), and three replicas sharing one
# state through etcd, all on loopback. Ctrl-C stops everything.
#
#   cargo build --features fleet      # needs protoc and libprotobuf-dev
#   scripts/fleet-demo.sh
#
# Then, e.g.:
#   switchyard ctl --admin http://127.0.0.1:9911 fleet
#   switchyard ctl --admin http://127.0.0.1:9911 switch green
#   switchyard ctl --admin http://127.0.0.1:9912 status     # same generation
#   curl -s http://127.0.0.1:8081/ -D- -o/dev/null | grep x-upstream
#
# Environment: SWITCHYARD_BIN (default target/debug/switchyard), ETCD_BIN
# (default etcd on PATH or /usr/bin/etcd), FLEET_DIR (default a temp dir).
set -euo pipefail

BIN=${SWITCHYARD_BIN:-target/debug/switchyard}
ETCD=${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}
DIR=${FLEET_DIR:-$(mktemp -d -t switchyard-fleet.XXXXXX)}
mkdir -p "$DIR"
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800
DEMO_ADMIN=127.0.0.1:9901

[ -x "$BIN" ] || { echo "no $BIN: run cargo build --features fleet" >&2; exit 1; }
[ -x "$ETCD" ] || { echo "no etcd: apt-get install etcd-server (or set ETCD_BIN)" >&2; exit 1; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "logs and state are in $DIR"
}
trap cleanup EXIT INT TERM

# Wait until `url` answers 200, at most 20 s.
wait_http() {
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not answer; see the logs in $DIR" >&2
    exit 1
}

echo "etcd on $ETCD_CLIENT (data in $DIR/etcd)"
"$ETCD" --name fleet-demo --data-dir "$DIR/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "fleet-demo=http://$ETCD_PEER" \
    >"$DIR/etcd.log" 2>&1 &
pids+=($!)
wait_http "http://$ETCD_CLIENT/health"

# The demo's sample upstreams (its own proxy, on 8080, is not part of the fleet).
echo "switchyard demo (sample upstreams; failure switch on 127.0.0.1:9902)"
"$BIN" demo --traffic 0 --listen 127.0.0.1:8080 --tls-listen 127.0.0.1:8443 \
    --admin "$DEMO_ADMIN" --control 127.0.0.1:9902 >"$DIR/demo.log" 2>&1 &
pids+=($!)
wait_http "http://$DEMO_ADMIN/healthz"
endpoints() {
    curl -fsS "http://$DEMO_ADMIN/api/v1/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(json.dumps([e["address"] for e in s["pools"][sys.argv[1]]["endpoints"]]))' "$1"
}
BLUE=$(endpoints blue)
GREEN=$(endpoints green)

for i in 1 2 3; do
    mkdir -p "$DIR/r$i"
    cat >"$DIR/r$i/switchyard.yaml" <<YAML
listeners:
  - bind: "127.0.0.1:808$i"
admin:
  bind: "127.0.0.1:991$i"
pools:
  blue:
    endpoints: $BLUE
  green:
    endpoints: $GREEN
health_check:
  interval: 1s
  timeout: 500ms
traffic:
  expose_pool_header: true
state_file: "$DIR/r$i/state.json"
fleet:
  etcd:
    endpoints: ["http://$ETCD_CLIENT"]
    prefix: /switchyard/demo/
  member_id: "r$i"
  member_ttl: 5s
  write_fence: 3s
YAML
    "$BIN" run -c "$DIR/r$i/switchyard.yaml" >"$DIR/r$i/run.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do wait_http "http://127.0.0.1:991$i/healthz"; done

cat <<TEXT

A fleet of three is running:
  replica r1: proxy http://127.0.0.1:8081  admin http://127.0.0.1:9911
  replica r2: proxy http://127.0.0.1:8082  admin http://127.0.0.1:9912
  replica r3: proxy http://127.0.0.1:8083  admin http://127.0.0.1:9913
  etcd:       http://$ETCD_CLIENT     logs: $DIR

Try:
  $BIN ctl --admin http://127.0.0.1:9911 fleet
  $BIN ctl --admin http://127.0.0.1:9911 switch green
  $BIN ctl --admin http://127.0.0.1:9913 status
  kill -STOP ${pids[0]}   # freeze etcd: reads flow, admin 503, writes 503 after 3 s
  kill -CONT ${pids[0]}   # and back

Ctrl-C stops everything.
TEXT
wait
