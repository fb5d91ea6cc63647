#!/usr/bin/env bash
# A database cutover on one machine (README: A database cutover): a PostgreSQL
# primary and its streaming replica, a blue app writing to the primary, a
# green app on the replica, and switchyard in front with the PostgreSQL
# gate (hold writes, wait until the replica has replayed everything, promote
# it, flip). All on loopback; Ctrl-C stops everything.
#
#   cargo build && scripts/pg-demo.sh           # then try the lines it prints
#   scripts/pg-demo.sh --check                  # run the walkthrough itself and verify it
#
# Needs Debian's postgresql (initdb, pg_ctl, pg_basebackup, psql) and
# python3. As root, the servers run as the postgres user (PostgreSQL
# refuses root). Environment: SWITCHYARD_BIN (default
# target/debug/switchyard), PG_BIN (default the newest
# /usr/lib/postgresql/*/bin), PG_DEMO_DIR (default a temp dir), and the
# ports: PG_DEMO_PRIMARY_PORT, PG_DEMO_REPLICA_PORT, PG_DEMO_BLUE_PORT,
# PG_DEMO_GREEN_PORT, PG_DEMO_PROXY and PG_DEMO_ADMIN (host:port); with
# --check, PG_DEMO_THEN (a command run at the end with the admin address).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${SWITCHYARD_BIN:-target/debug/switchyard}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
DIR=${PG_DEMO_DIR:-$(mktemp -d -t switchyard-pg.XXXXXX)}
PRIMARY_PORT=${PG_DEMO_PRIMARY_PORT:-54320} REPLICA_PORT=${PG_DEMO_REPLICA_PORT:-54321}
BLUE_PORT=${PG_DEMO_BLUE_PORT:-8001} GREEN_PORT=${PG_DEMO_GREEN_PORT:-8011}
PROXY=${PG_DEMO_PROXY:-127.0.0.1:8080} ADMIN=${PG_DEMO_ADMIN:-127.0.0.1:9901}
if [ "${1:-}" = "--check" ]; then
    # Free ports: a check must not collide with a demo already running.
    free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    PRIMARY_PORT=$(free_port) REPLICA_PORT=$(free_port) BLUE_PORT=$(free_port) GREEN_PORT=$(free_port)
    PROXY=127.0.0.1:$(free_port) ADMIN=127.0.0.1:$(free_port)
fi
[ -x "$BIN" ] || { echo "no $BIN: run cargo build" >&2; exit 1; }
[ -x "$PG_BIN/initdb" ] || { echo "no PostgreSQL: apt-get install postgresql (or set PG_BIN)" >&2; exit 1; }

as_pg=()
if [ "$(id -u)" = 0 ]; then
    as_pg=(runuser -u postgres --)
    chown postgres: "$DIR"
fi
pg() { "${as_pg[@]}" env LC_ALL=C "$PG_BIN/$1" "${@:2}"; }

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for d in replica primary; do
        [ -f "$DIR/$d/postmaster.pid" ] && pg pg_ctl stop -m fast -D "$DIR/$d" >/dev/null 2>&1 || true
    done
    wait 2>/dev/null || true
    echo "logs are in $DIR"
}
trap cleanup EXIT INT TERM

wait_http() {
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not answer; see the logs in $DIR" >&2
    exit 1
}

echo "primary on 127.0.0.1:$PRIMARY_PORT, replica on 127.0.0.1:$REPLICA_PORT (data in $DIR)"
pg initdb -D "$DIR/primary" -U postgres --auth=trust --no-locale -E UTF8 --no-sync >"$DIR/initdb.log"
cat >>"$DIR/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PRIMARY_PORT
unix_socket_directories = '$DIR'
CONF
pg pg_ctl start -w -D "$DIR/primary" -l "$DIR/primary.log" >/dev/null
# -R: a standby that streams from the primary (standby.signal, primary_conninfo).
pg pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$DIR/replica" -R -X stream
echo "port = $REPLICA_PORT" >>"$DIR/replica/postgresql.conf"
pg pg_ctl start -w -D "$DIR/replica" -l "$DIR/replica.log" >/dev/null

PRIMARY="host=127.0.0.1 port=$PRIMARY_PORT user=postgres dbname=postgres"
REPLICA="host=127.0.0.1 port=$REPLICA_PORT user=postgres dbname=postgres"
python3 examples/pg_app.py --listen 127.0.0.1:$BLUE_PORT --name blue --dsn "$PRIMARY" --create-table >"$DIR/blue.log" 2>&1 &
pids+=($!)
python3 examples/pg_app.py --listen 127.0.0.1:$GREEN_PORT --name green --dsn "$REPLICA" >"$DIR/green.log" 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:$BLUE_PORT/
wait_http http://127.0.0.1:$GREEN_PORT/

cat >"$DIR/switchyard.yaml" <<YAML
listeners:
  - bind: "$PROXY"
admin:
  bind: "$ADMIN"
pools:
  blue:  { endpoints: ["127.0.0.1:$BLUE_PORT"] }
  green: { endpoints: ["127.0.0.1:$GREEN_PORT"] }
health_check: { interval: 500ms, timeout: 250ms, healthy_threshold: 1 }
cutover:
  hold_writes: true
  max_hold: 5s
  gate:
    poll_interval: 50ms
    postgres:
      primary: "$PRIMARY"
      replica: "$REPLICA"
      promote: true
state_file: $DIR/state.json
YAML
"$BIN" check -c "$DIR/switchyard.yaml"
"$BIN" run -c "$DIR/switchyard.yaml" >"$DIR/switchyard.log" 2>&1 &
pids+=($!)
wait_http "http://$ADMIN/readyz"

if [ "${1:-}" != "--check" ]; then
    cat <<TRY

Ready. Writes go through the proxy to blue (the primary):
  for i in \$(seq 1 300); do curl -s -XPOST -H "x-request-id: w\$i" http://$PROXY/write; done &
Cut over while they flow (holds writes, waits for the replica, promotes it, flips):
  $BIN ctl --admin http://$ADMIN switch green
  $BIN ctl --admin http://$ADMIN status           # the gate: LSNs, lag, promotion
  (or the dashboard: http://$ADMIN/)
Every acknowledged write is on the promoted replica, once:
  curl -s http://127.0.0.1:$GREEN_PORT/count
Ctrl-C stops everything.
TRY
    wait
    exit 0
fi

# --check: the walkthrough, verified.
green_healthy() {
    curl -fsS "http://$ADMIN/api/v1/status" | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["pools"]["green"]["healthy"] >= 1 else 1)'
}
for _ in $(seq 1 100); do green_healthy && break; sleep 0.1; done
acked="$DIR/acked"
: >"$acked"
( for i in $(seq 1 150); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST -H "x-request-id: w$i" "http://$PROXY/write")
      [ "$code" = 200 ] && echo "w$i" >>"$acked"
  done ) &
writer=$!
sleep 1
"$BIN" ctl --admin "http://$ADMIN" switch green
wait "$writer"
n=$(wc -l <"$acked")
count=$(curl -fsS http://127.0.0.1:$GREEN_PORT/count)
echo "acknowledged $n writes; on the promoted replica: $count"
[ "$count" = "$n rows, $n distinct ids" ] || { echo "FAIL: writes lost or doubled" >&2; exit 1; }
[ "$n" -eq 150 ] || { echo "FAIL: only $n of 150 writes acknowledged" >&2; exit 1; }
echo "pg-demo: every write acknowledged is on the promoted replica exactly once"
# PG_DEMO_THEN: a command run now, with everything still up, given the
# admin address as its last argument (postgres.sh's look at the dashboard).
if [ -n "${PG_DEMO_THEN:-}" ]; then
    $PG_DEMO_THEN "$ADMIN"
fi
