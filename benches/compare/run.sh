#!/usr/bin/env bash
# Load comparison of switchyard with nginx and HAProxy on loopback.
#
# Starts 2 blue + 2 green upstreams (examples/bench_upstream.rs) and, in
# front of them with equivalent configs (weights 90/10), nginx (one worker),
# HAProxy (one thread) and switchyard; then measures with wrk, in alternating
# order over several rounds: requests/s, proxy CPU time, requests per second
# of proxy CPU time, peak RSS, errors. Then latency at a fixed rate below
# every peer's capacity (h2load, in rounds), then switchyard-only scenarios (weight
# flips every 100 ms, a config reload every second, green failing until the
# automatic rollback fires). See README.md next to this file for the method
# and how to read the output. With --with-pingora, Cloudflare's Pingora
# (benches/compare/pingora/, built from its published crates) is measured as
# one more peer, with the same configuration.
#
# Usage: benches/compare/run.sh [--quick] [--rounds N] [--duration S]
#          [--latency-duration S] [--latency-rounds N] [--rate N] [--peers LIST] [--no-scenarios]
#          [--no-install] [--no-build] [--keep] [--port-base N] [--noise-max X]
#          [--switchyard-bin PATH] [--rollback-fail-rate R] [--with-pingora]
set -euo pipefail

# ---------------------------------------------------------------- settings --
ROUNDS=3                 # measured rounds per peer, order alternating
DURATION=8               # seconds of each measured wrk run
WARMUP=1                 # seconds of the unmeasured wrk run before each one
LAT_DURATION=6           # seconds of each fixed-rate latency run
LAT_ROUNDS=3             # fixed-rate latency runs per peer, order alternating
SCEN_DURATION=6          # seconds of each scenario run
SCEN_ROUNDS=3            # rounds of steady, flips and reload, order alternating
CONNECTIONS=64           # keep-alive connections (wrk and h2load)
BODY_SIZE=64             # upstream response body, bytes
SPLIT_SAMPLES=1000       # requests of the 90/10 split check per peer
RATE=auto                # fixed request rate of the latency runs
NOISE_MAX=0.15           # CPU used by other processes (cores) that flags a round
PORT_BASE=18000
PEERS="direct nginx haproxy switchyard"
QUICK=0
SCENARIOS=1
STALLS=0                 # --stalls: latency while the proxy is stopped 5 ms every 300 ms
STALL_MS=5
STALL_EVERY_MS=300
INSTALL=1
BUILD=1
KEEP=0
SWITCHYARD_BIN=""        # default: target/release/switchyard, built here
WITH_PINGORA=0           # optional peer: Pingora 0.9 (benches/compare/pingora/)
# Auto-rollback scenario: green answers RB_FAIL_STATUS to RB_FAIL_RATE of its
# requests from a third of the run on; the rollback: rules below are applied
# by a reload just before (SPEC.md sections 2 and 4). Chosen to fire fast and
# always: evaluated every 200 ms, 3 breaches in a row, so about 0.6 s after
# green's error rate passes 5 % (which takes milliseconds at 50 %).
RB_FAIL_RATE=0.5         # not 1: see README.md (outlier detection)
RB_FAIL_STATUS=500       # a status switchyard never answers itself (SPEC.md section 8)
RB_INTERVAL_MS=200
RB_BREACHES=3
RB_GRACE_MS=500          # after the weight change that opens the scenario
RB_WINDOW=5s
RB_MIN_REQUESTS=50
RB_MAX_ERROR_RATE=0.05

usage() {
    sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    cat <<'EOF'

  --quick               one round of 3 s, 3 s latency and scenario runs (smoke test)
  --rounds N            measured rounds per peer (default 3)
  --duration S          seconds per measured run (default 8)
  --latency-duration S  seconds per fixed-rate latency run (default 6)
  --latency-rounds N    fixed-rate latency runs per peer (default 3)
  --rate N              fixed rate of the latency runs, requests/s
                        (default: half the weakest proxy's median throughput)
  --peers LIST          comma-separated subset of: direct,nginx,haproxy,switchyard
                        (and pingora, with --with-pingora)
  --no-scenarios        skip the switchyard-only scenarios
  --stalls              one more fixed-rate latency run per proxy, during
                        which the proxy is stopped (SIGSTOP) for 5 ms every
                        300 ms: how each recovers from the same stalls
  --no-install          never call apt-get
  --no-build            use the binaries already in target/release
  --keep                keep the work directory (configs, raw outputs)
  --port-base N         loopback ports N+1.. are used (default 18000)
  --noise-max X         flag a round when other processes used more than X
                        cores on average (default 0.15)
  --switchyard-bin PATH measure this switchyard binary instead of building one
  --rollback-fail-rate R  share of green's requests failing in the
                        auto-rollback scenario (default 0.5)
  --with-pingora        add the peer pingora: Pingora 0.9 built from
                        benches/compare/pingora/ into
                        target/bench-compare/pingora-target (a few minutes
                        the first time; needs cmake); not in the default run
EOF
}

while (($# > 0)); do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --latency-duration) LAT_DURATION="$2"; shift ;;
        --latency-rounds) LAT_ROUNDS="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --peers) PEERS="${2//,/ }"; shift ;;
        --no-scenarios) SCENARIOS=0 ;;
        --stalls) STALLS=1 ;;
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --port-base) PORT_BASE="$2"; shift ;;
        --noise-max) NOISE_MAX="$2"; shift ;;
        --switchyard-bin) SWITCHYARD_BIN="$2"; shift ;;
        --rollback-fail-rate) RB_FAIL_RATE="$2"; shift ;;
        --with-pingora) WITH_PINGORA=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if ((QUICK)); then
    ROUNDS=1 DURATION=3 LAT_DURATION=3 LAT_ROUNDS=1 SCEN_DURATION=3 SCEN_ROUNDS=1
fi
for v in "$ROUNDS" "$DURATION" "$LAT_DURATION" "$LAT_ROUNDS" "$PORT_BASE"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $v: expected a positive integer" >&2; exit 2; }
done
[[ "$RATE" == auto || "$RATE" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rate $RATE: expected requests/s" >&2; exit 2; }
awk -v r="$RB_FAIL_RATE" 'BEGIN { exit !(r ~ /^[0-9]*\.?[0-9]+$/ && r > 0 && r <= 1) }' ||
    { echo "run.sh: --rollback-fail-rate $RB_FAIL_RATE: expected a share above 0, at most 1" >&2; exit 2; }
for p in $PEERS; do
    case "$p" in
        direct | nginx | haproxy | switchyard) ;;
        pingora)
            ((WITH_PINGORA)) || { echo "run.sh: peer pingora needs --with-pingora" >&2; exit 2; } ;;
        *) echo "run.sh: unknown peer $p" >&2; exit 2 ;;
    esac
done
# --with-pingora adds the peer (last, so the others keep their order) unless
# --peers already names it.
if ((WITH_PINGORA)) && [[ " $PEERS " != *" pingora "* ]]; then
    PEERS="$PEERS pingora"
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HOST=127.0.0.1
BLUE1=$((PORT_BASE + 1)) BLUE2=$((PORT_BASE + 2))
GREEN1=$((PORT_BASE + 11)) GREEN2=$((PORT_BASE + 12))
NGINX_PORT=$((PORT_BASE + 80)) HAPROXY_PORT=$((PORT_BASE + 81))
SWITCHYARD_PORT=$((PORT_BASE + 82)) ADMIN_PORT=$((PORT_BASE + 901))
PINGORA_PORT=$((PORT_BASE + 83))
PINGORA_DIR="$REPO/benches/compare/pingora"
PINGORA_TARGET="$REPO/target/bench-compare/pingora-target"
PINGORA_BIN="$PINGORA_TARGET/release/pingora-bench-proxy"
ADMIN="http://$HOST:$ADMIN_PORT"
CLK_TCK="$(getconf CLK_TCK)"
START_TIME=$SECONDS

# ------------------------------------------------------- output and failure --
FAILURES=()
log() { printf '[%3ds] %s\n' "$((SECONDS - START_TIME))" "$*"; }
warn() { printf '[%3ds] WARNING: %s\n' "$((SECONDS - START_TIME))" "$*" >&2; }
fail() {
    FAILURES+=("$*")
    printf '[%3ds] FAIL: %s\n' "$((SECONDS - START_TIME))" "$*" >&2
}
die() {
    printf 'run.sh: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------- processes and cleanup --
# Every process this script starts in the background is recorded here and
# stopped on exit, whatever the reason for exiting. A recorded process that
# has exited may see its PID reused, so a PID is only signalled while it is
# still ours: a child of this script, or (nginx workers) of the recorded
# parent, or an orphaned one of the same name.
PIDS=()
declare -A PARENT_OF=() NAME_OF=()
WORK=""
SWITCHYARD_CONF="" # set with WORK: $WORK/switchyard/switchyard.yaml
is_ours() {
    local pid="$1" stat rest ppid comm
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    comm="${stat#*(}" comm="${comm%)*}"
    rest="${stat##*) }"
    ppid=$(cut -d' ' -f2 <<<"$rest")
    [[ "$ppid" == "${PARENT_OF[$pid]:-$$}" ]] && return 0
    [[ "$ppid" == 1 && -n "${NAME_OF[$pid]:-}" && "$comm" == "${NAME_OF[$pid]}" ]]
}
cleanup() {
    local status=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        if is_ours "$pid"; then
            kill -CONT "$pid" 2>/dev/null || true # in case --stalls left it stopped
            pkill -TERM -P "$pid" 2>/dev/null || true # children of our loops (curl)
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for i in $(seq 1 30); do # wait at most 3 s for a clean exit
        local alive=0
        for pid in "${PIDS[@]}"; do
            if is_ours "$pid" && [[ "$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
                alive=1
            fi
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        if is_ours "$pid" && [[ "$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
            warn "pid $pid did not stop on SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        local keep_dir="$REPO/target/bench-compare/last"
        rm -rf "$keep_dir"
        mkdir -p "$(dirname "$keep_dir")"
        cp -r "$WORK" "$keep_dir" 2>/dev/null || true
        if ((KEEP)); then
            echo "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
        echo "configs and raw outputs of this run: $keep_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background with output to $1 (a log file); sets BG_PID.
BG_PID=""
start_bg() {
    local logfile="$1"
    shift
    "$@" >"$logfile" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# Pinning: the load generator on core 0, proxies and upstreams on core 1.
PIN_CLIENT=()
PIN_SERVER=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    PIN_CLIENT=(taskset -c 0)
    PIN_SERVER=(taskset -c 1)
else
    warn "taskset missing or fewer than 2 cores: running unpinned (figures are noisier)"
fi

# -------------------------------------------------------------- tools ------
apt_candidate() { # prints the candidate version of a Debian package, or nothing
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}'
}

ensure_tools() {
    local missing=() pkgs=() sudo=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq) # admin API answers (scenarios)
    if [[ " $PEERS " == *" nginx "* ]] && ! command -v nginx >/dev/null &&
        [[ ! -x /usr/sbin/nginx ]]; then
        missing+=(nginx)
    fi
    if [[ " $PEERS " == *" haproxy "* ]] && ! command -v haproxy >/dev/null &&
        [[ ! -x /usr/sbin/haproxy ]]; then
        missing+=(haproxy)
    fi
    # Pingora's first build compiles zlib-ng (flate2's zlib-ng feature,
    # required by pingora-core) with cmake.
    if ((BUILD)) && [[ " $PEERS " == *" pingora "* && ! -x "$PINGORA_BIN" ]] &&
        ! command -v cmake >/dev/null; then
        missing+=(cmake)
    fi
    ((${#missing[@]} > 0)) || return 0
    ((INSTALL)) || die "missing tools (${missing[*]}) and --no-install given"
    command -v apt-get >/dev/null || die "missing tools (${missing[*]}) and no apt-get: install them by hand"
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing tools (${missing[*]}): run as root or install them"
        sudo=(sudo)
    fi
    log "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    local m
    for m in "${missing[@]}"; do
        if [[ "$m" == nginx ]]; then
            # nginx-light is enough (upstream keepalive is a core module).
            if [[ -n "$(apt_candidate nginx-light)" ]]; then
                pkgs+=(nginx-light)
            else
                pkgs+=(nginx)
            fi
        elif [[ -n "$(apt_candidate "$m")" ]]; then
            pkgs+=("$m")
        else
            die "package $m has no installation candidate (apt-cache policy $m)"
        fi
    done
    # policy-rc.d in containers stops the packaged services from starting;
    # elsewhere they start on port 80 and are left to the system, not to us.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
}

NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
HAPROXY_BIN="$(command -v haproxy || echo /usr/sbin/haproxy)"

# ------------------------------------------------------------- /proc -------
# Sum over the given processes of an awk expression of the fields of
# /proc/PID/stat after the command name ($12 utime, $13 stime, in ticks).
stat_sum() {
    local expr="$1" pid total=0 t
    shift
    for pid in "$@"; do
        # The command name (field 2) may hold spaces: cut after the last ')'.
        t=$(awk "{ sub(/.*\\) /, \"\"); print $expr }" "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}
# utime + stime (clock ticks) of the given processes, threads included.
cpu_ticks() { stat_sum '$12 + $13' "$@"; }
# stime alone (clock ticks): the proxy's CPU spent in the kernel.
sys_ticks() { stat_sum '$13' "$@"; }
# CPU ticks of this script's finished children (wrk, h2load, curl, ...).
children_ticks() { awk '{ sub(/.*\) /, ""); print $14 + $15 }' "/proc/$$/stat"; }
# Busy ticks of all CPUs from /proc/stat: user nice system irq softirq steal.
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# Peak resident set size (kB) summed over the given processes.
hwm_kb() {
    local pid total=0 k
    for pid in "$@"; do
        k=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${k:-0}))
    done
    echo "$total"
}
now_us() { echo "${EPOCHREALTIME/./}"; }

# ---------------------------------------------------------- waiting --------
# Waits until URL answers 200, at most $2 seconds, and gives up early when
# the process $3 (optional) has exited. Returns non-zero if it never did.
wait_http() {
    local url="$1" limit_s="$2" pid="${3:-}" i
    for ((i = 0; i < limit_s * 10; i++)); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.5 "$url" || true)" == 200 ]]; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# ------------------------------------------------------- generated configs -
write_configs() {
    mkdir -p "$WORK/nginx/tmp"
    local temp_paths="" m
    temp_paths+="    client_body_temp_path $WORK/nginx/tmp/body;"$'\n'
    temp_paths+="    proxy_temp_path $WORK/nginx/tmp/proxy;"$'\n'
    for m in fastcgi uwsgi scgi; do
        if ! "$NGINX_BIN" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
            temp_paths+="    ${m}_temp_path $WORK/nginx/tmp/$m;"$'\n'
        fi
    done

    # nginx: one worker, weighted round robin 9:9:1:1 (blue 90 %, green 10 %),
    # a pool of idle keep-alive connections to the upstreams, no access log.
    # nginx OSS has no active health checks; max_fails is its passive check.
    cat >"$WORK/nginx/nginx.conf" <<EOF
# generated by benches/compare/run.sh
worker_processes 1;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
$temp_paths
    keepalive_requests 1000000;   # wrk keeps its 64 connections for the run
    keepalive_timeout 90s;
    upstream pools {
        server $HOST:$BLUE1 weight=9 max_fails=5 fail_timeout=30s;
        server $HOST:$BLUE2 weight=9 max_fails=5 fail_timeout=30s;
        server $HOST:$GREEN1 weight=1 max_fails=5 fail_timeout=30s;
        server $HOST:$GREEN2 weight=1 max_fails=5 fail_timeout=30s;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 90s;
    }
    server {
        listen $HOST:$NGINX_PORT;
        location / {
            proxy_pass http://pools;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }
    }
}
EOF

    # HAProxy: one thread, server weights 45/45/5/5 (blue 90 %, green 10 %),
    # idle server connections shared between clients, active health checks
    # with the thresholds of switchyard's defaults, no logging.
    cat >"$WORK/haproxy.cfg" <<EOF
# generated by benches/compare/run.sh
global
    nbthread 1
    maxconn 4096                  # as nginx's worker_connections; fits a 20000 fd limit
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 90s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend fe
    bind $HOST:$HAPROXY_PORT
    default_backend pools
backend pools
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health
    default-server check inter 2s rise 2 fall 3
    server blue-1 $HOST:$BLUE1 weight 45
    server blue-2 $HOST:$BLUE2 weight 45
    server green-1 $HOST:$GREEN1 weight 5
    server green-2 $HOST:$GREEN2 weight 5
EOF

    write_switchyard_config ""
}

# switchyard (SPEC.md section 2): the same pools and split, health checks as
# HAProxy's, no state file, warnings only. $1 is a comment line that the
# reload scenario changes so that every reload sees a new file; $2, if
# given, is appended as it is (the auto-rollback scenario's rollback: block).
# The file has a directory of its own, as /etc/switchyard would be: the
# proxy watches that directory, and the h2load logs written into $WORK
# during the latency runs are no business of its watcher.
write_switchyard_config() {
    mkdir -p "$WORK/switchyard"
    local tmp="$SWITCHYARD_CONF.tmp"
    cat >"$tmp" <<EOF
# generated by benches/compare/run.sh${1:+ $1}
listeners:
  - bind: "$HOST:$SWITCHYARD_PORT"
admin:
  bind: "$HOST:$ADMIN_PORT"
pools:
  blue:
    endpoints: ["$HOST:$BLUE1", "$HOST:$BLUE2"]
  green:
    endpoints: ["$HOST:$GREEN1", "$HOST:$GREEN2"]
health_check:
  path: /health
  interval: 2s
  healthy_threshold: 2
  unhealthy_threshold: 3
traffic:
  initial: { blue: 90, green: 10 }
state_file: null
log: { level: warn }
${2:-}
EOF
    mv -f "$tmp" "$SWITCHYARD_CONF" # replaced by rename, as editors do
}

# --------------------------------------------------------------- peers -----
declare -A PEER_URL PEER_CPU_PIDS PEER_RSS_PIDS PEER_OK
UPSTREAM_PID=""
SWITCHYARD_BUILT=1
PINGORA_BUILT=1

start_upstreams() {
    start_bg "$WORK/upstream.log" "${PIN_SERVER[@]}" "$REPO/target/release/examples/bench_upstream" \
        --listen "blue-1=$HOST:$BLUE1" --listen "blue-2=$HOST:$BLUE2" \
        --listen "green-1=$HOST:$GREEN1" --listen "green-2=$HOST:$GREEN2" \
        --body-size "$BODY_SIZE"
    UPSTREAM_PID=$BG_PID
    local port
    for port in "$BLUE1" "$BLUE2" "$GREEN1" "$GREEN2"; do
        wait_http "http://$HOST:$port/health" 10 "$UPSTREAM_PID" ||
            die "upstream on port $port did not come up: $(tail -5 "$WORK/upstream.log")"
    done
}

start_peer() {
    local peer="$1" pid workers
    case "$peer" in
        direct)
            PEER_URL[$peer]="http://$HOST:$BLUE1/"
            PEER_CPU_PIDS[$peer]="" PEER_RSS_PIDS[$peer]=""
            ;;
        nginx)
            "$NGINX_BIN" -t -q -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" ||
                { fail "nginx: generated config rejected (nginx -t)"; return 1; }
            start_bg "$WORK/nginx/stdout.log" "${PIN_SERVER[@]}" "$NGINX_BIN" \
                -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
            pid=$BG_PID
            PEER_URL[$peer]="http://$HOST:$NGINX_PORT/"
            wait_http "${PEER_URL[$peer]}" 10 "$pid" ||
                { fail "nginx did not start: $(tail -3 "$WORK/nginx/error.log")"; return 1; }
            workers=$(pgrep -P "$pid" | tr '\n' ' ' || true)
            [[ -n "$workers" ]] || { fail "nginx: no worker process found"; return 1; }
            local -a worker_pids
            read -r -a worker_pids <<<"$workers"
            local w
            for w in "${worker_pids[@]}"; do # the master stops them; recorded in case it dies
                PIDS+=("$w")
                PARENT_OF[$w]=$pid NAME_OF[$w]=nginx
            done
            PEER_CPU_PIDS[$peer]="$pid $workers"
            PEER_RSS_PIDS[$peer]="$workers"
            ;;
        haproxy)
            "$HAPROXY_BIN" -c -q -f "$WORK/haproxy.cfg" ||
                { fail "haproxy: generated config rejected (haproxy -c)"; return 1; }
            # -db: foreground, one process (no master-worker), one thread.
            start_bg "$WORK/haproxy.log" "${PIN_SERVER[@]}" "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg"
            PEER_URL[$peer]="http://$HOST:$HAPROXY_PORT/"
            wait_http "${PEER_URL[$peer]}" 10 "$BG_PID" ||
                { fail "haproxy did not start: $(grep -m3 ALERT "$WORK/haproxy.log" || tail -3 "$WORK/haproxy.log")"; return 1; }
            PEER_CPU_PIDS[$peer]="$BG_PID" PEER_RSS_PIDS[$peer]="$BG_PID"
            ;;
        pingora)
            ((PINGORA_BUILT)) || return 1 # already reported
            [[ -x "$PINGORA_BIN" ]] || { fail "pingora: $PINGORA_BIN missing (drop --no-build)"; return 1; }
            # Its configuration is its command line (src/main.rs holds the
            # rest): the same pools, weights 9:9:1:1.
            local -a pingora_args=(--listen "$HOST:$PINGORA_PORT"
                --blue "$HOST:$BLUE1" --blue "$HOST:$BLUE2" --green "$HOST:$GREEN1" --green "$HOST:$GREEN2"
                --blue-weight 9 --green-weight 1)
            printf '%s\n' "$PINGORA_BIN ${pingora_args[*]}" >"$WORK/pingora.cmdline"
            start_bg "$WORK/pingora.log" "${PIN_SERVER[@]}" "$PINGORA_BIN" "${pingora_args[@]}"
            pid=$BG_PID
            PEER_URL[$peer]="http://$HOST:$PINGORA_PORT/"
            wait_http "${PEER_URL[$peer]}" 10 "$pid" ||
                { fail "pingora did not start: $(tail -3 "$WORK/pingora.log")"; return 1; }
            # One process: the proxy's worker thread, the health checks'
            # runtime, the signal and timer threads all count in its stat.
            PEER_CPU_PIDS[$peer]="$pid" PEER_RSS_PIDS[$peer]="$pid"
            ;;
        switchyard)
            local bin="${SWITCHYARD_BIN:-$REPO/target/release/switchyard}"
            ((SWITCHYARD_BUILT)) || return 1 # already reported
            [[ -x "$bin" ]] || { fail "switchyard: $bin missing (drop --no-build)"; return 1; }
            if ! "$bin" check -c "$SWITCHYARD_CONF" >"$WORK/switchyard-check.log" 2>&1; then
                fail "switchyard check rejected the generated config: $(cat "$WORK/switchyard-check.log")"
                return 1
            fi
            start_bg "$WORK/switchyard.log" "${PIN_SERVER[@]}" "$bin" run -c "$SWITCHYARD_CONF"
            pid=$BG_PID
            PEER_URL[$peer]="http://$HOST:$SWITCHYARD_PORT/"
            if ! wait_http "${PEER_URL[$peer]}" 15 "$pid"; then
                if kill -0 "$pid" 2>/dev/null; then
                    fail "switchyard run is up but $HOST:$SWITCHYARD_PORT did not answer 200 within 15 s (log: $(tail -3 "$WORK/switchyard.log"))"
                else
                    local st=0
                    wait "$pid" || st=$?
                    fail "switchyard run exited with status $st without serving $HOST:$SWITCHYARD_PORT: not implemented yet? (log: $(tail -3 "$WORK/switchyard.log"))"
                fi
                return 1
            fi
            PEER_CPU_PIDS[$peer]="$pid" PEER_RSS_PIDS[$peer]="$pid"
            ;;
    esac
    PEER_OK[$peer]=1
}

# Sends SPLIT_SAMPLES requests through the peer on one keep-alive connection
# and checks the share of each instance in x-upstream against 90/10.
check_split() {
    local peer="$1" url="${PEER_URL[$1]}" i
    local curlcfg="$WORK/split-$peer.curl" out="$WORK/split-$peer.txt"
    for ((i = 0; i < SPLIT_SAMPLES; i++)); do
        printf 'url = "%s"\noutput = "/dev/null"\n' "$url"
    done >"$curlcfg"
    # Bounded: 2 s per request, 30 s in all.
    timeout 30 curl -s --max-time 2 -w '%header{x-upstream}\n' -K "$curlcfg" >"$out" || true
    local summary
    summary=$(sort "$out" | uniq -c | awk '{ printf "%s=%s ", $2, $1 }')
    local verdict
    verdict=$(awk -v peer="$peer" -v n="$SPLIT_SAMPLES" '
        { total++; if ($1 ~ /^blue-/) blue++; else if ($1 ~ /^green-/) green++ }
        END {
            if (total < n) { print "only " total + 0 " of " n " answered"; exit }
            share = blue / total
            if (peer == "direct") { if (blue == total) print "ok"; else print "not all blue" ; exit }
            # 3.5 standard deviations of a binomial share at n = 1000 is 3.3 %.
            if (share >= 0.865 && share <= 0.935) print "ok"
            else printf "blue share %.3f, expected 0.90\n", share
        }' "$out")
    if [[ "$verdict" == ok ]]; then
        log "split $peer: $summary(ok)"
    else
        fail "split $peer: $summary: $verdict"
    fi
}

# -------------------------------------------------------------- wrk --------
# Parses a wrk --latency output into:
#   requests rps p99_ms errors   (errors = non-2xx/3xx + socket errors)
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v * 0.001
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/)  return v * 1000
            return v + 0
        }
        /requests in/           { requests = $1 }
        /^Requests\/sec:/       { rps = $2 }
        /^ +99%/                { p99 = ms($2) }
        /Socket errors:/        { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx/        { errors += $NF }
        END { printf "%d %.0f %.3f %d\n", requests, rps, p99, errors }
    ' "$1"
}

run_wrk() { # url seconds outfile [lua script]
    local script=()
    [[ -z "${4:-}" ]] || script=(-s "$4")
    "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"$2s" --latency "${script[@]}" "$1" >"$3" 2>&1 || true
}

ROUNDS_TSV=""
# One measured run of a peer: warm-up, then wrk with /proc snapshots around it.
measure_round() {
    local peer="$1" round="$2" url="${PEER_URL[$1]}"
    local out="$WORK/wrk-$peer-$round.txt"
    local -a cpu_pids rss_pids
    read -r -a cpu_pids <<<"${PEER_CPU_PIDS[$peer]}"
    read -r -a rss_pids <<<"${PEER_RSS_PIDS[$peer]}"
    run_wrk "$url" "$WARMUP" "$WORK/wrk-$peer-$round-warmup.txt"

    local p0 u0 c0 b0 t0 p1 u1 c1 b1 t1 s0 s1
    p0=$(cpu_ticks "${cpu_pids[@]}") u0=$(cpu_ticks "$UPSTREAM_PID") s0=$(sys_ticks "${cpu_pids[@]}")
    c0=$(children_ticks) b0=$(busy_ticks) t0=$(now_us)
    run_wrk "$url" "$DURATION" "$out"
    t1=$(now_us) b1=$(busy_ticks) c1=$(children_ticks)
    p1=$(cpu_ticks "${cpu_pids[@]}") u1=$(cpu_ticks "$UPSTREAM_PID") s1=$(sys_ticks "${cpu_pids[@]}")

    local requests rps p99 errors hwm
    read -r requests rps p99 errors < <(parse_wrk "$out")
    if ((requests == 0)); then
        fail "round $round $peer: no request completed ($(head -c 300 "$out" | tr '\n' ' '))"
    fi
    hwm=$(hwm_kb "${rss_pids[@]}")
    # other = CPU busy time that is neither the proxy, the upstreams nor our
    # own children (wrk): compilers and the like sharing the machine.
    local line
    line=$(awk -v peer="$peer" -v round="$round" -v req="$requests" -v rps="$rps" \
        -v p99="$p99" -v err="$errors" -v hwm="$hwm" -v hz="$CLK_TCK" -v max="$NOISE_MAX" \
        -v wall_us=$((t1 - t0)) -v proxy=$((p1 - p0)) -v up=$((u1 - u0)) \
        -v ours_child=$((c1 - c0)) -v busy=$((b1 - b0)) -v has_proxy="${#cpu_pids[@]}" \
        -v sys=$((s1 - s0)) 'BEGIN {
            wall = wall_us / 1e6
            cpu = proxy / hz
            per_cpu = (has_proxy > 0 && cpu > 0) ? sprintf("%.0f", req / cpu) : "-"
            other = (busy - proxy - up - ours_child) / hz / wall
            if (other < 0) other = 0
            noisy = (other > max) ? 1 : 0
            # CPU per request of the proxy, in user space and in the kernel (us).
            us_user = (has_proxy > 0 && req > 0) ? sprintf("%.2f", 1e6 * (proxy - sys) / hz / req) : "-"
            us_sys = (has_proxy > 0 && req > 0) ? sprintf("%.2f", 1e6 * sys / hz / req) : "-"
            printf "%s\t%d\t%d\t%d\t%.3f\t%.3f\t%s\t%.3f\t%.3f\t%d\t%.2f\t%d\t%d\t%s\t%s\t%s\n",
                peer, round, rps, req, wall, cpu, per_cpu, up / hz, p99, err, other, noisy, hwm,
                (has_proxy > 0) ? sprintf("%.0f", 100 * cpu / wall) : "-", us_user, us_sys
        }')
    printf '%s\n' "$line" >>"$ROUNDS_TSV"
    awk -F'\t' '{
        cpu = ($6 > 0) ? sprintf("proxy CPU %3.0f%%, %s req/CPU-s", 100 * $6 / $5, $7) : "(no proxy)"
        printf "  round %d %-10s %7d req/s  %s  wrk p99 %.2f ms  errors %d  other CPU %.2f cores%s\n",
            $2, $1, $3, cpu, $9, $10, $11, ($12 ? "  NOISY" : "")
    }' <<<"$line"
}

# Median of column $2 of the peer's throughput rounds; noisy rounds are left
# out unless every round was noisy. Prints "-" when there is nothing to take
# it from.
median() { median_of "$ROUNDS_TSV" "$1" "$2" 12; }

# The same over any table: file, peer, column, the column of the noisy flag.
median_of() {
    local tsv="$1" peer="$2" col="$3" noisy_col="$4"
    awk -F'\t' -v peer="$peer" -v col="$col" -v nc="$noisy_col" '
        $1 == peer { all[++n] = $col; if (!$nc) clean[++m] = $col }
        END {
            if (m > 0) for (i = 1; i <= m; i++) print clean[i]
            else for (i = 1; i <= n; i++) print all[i]
        }' "$tsv" | awk '$1 != "-"' | sort -g | awk '
        { v[++n] = $1 }
        END {
            if (n == 0) { print "-"; exit }
            if (n % 2) m = v[(n + 1) / 2]; else m = (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%.10g\n", m
        }'
}

# ----------------------------------------------------- latency at fixed rate -
# h2load --h1 with LAT_CONNS clients, each at RATE/LAT_CONNS requests/s,
# 1 s warm-up, then LAT_DURATION s whose every request is logged with its
# duration (request written -> response complete); percentiles are taken from
# that log by nearest rank.
#
# LAT_CONNS = RATE/1000 (1 to 64), so that every client sends one request
# per millisecond: h2load's --rps timers of all clients fire together, so
# the load arrives in bursts of LAT_CONNS requests. With 64 clients at a few
# hundred requests/s each, bursts of 64 every few ms made p50 measure the
# time to drain a burst (0.65 ms direct at 16000 req/s, against 0.09 ms with
# bursts of 8). One burst per millisecond is as smooth as a millisecond
# timer gets.
LAT_TSV=""
LAT_CONNS=""
measure_latency() {
    local peer="$1" round="$2" url="${PEER_URL[$1]}" per_client
    local out="$WORK/h2load-$peer-$round.txt" reqlog="$WORK/h2load-$peer-$round.log"
    per_client=$(awk -v r="$RATE" -v c="$LAT_CONNS" 'BEGIN { printf "%.3f", r / c }')
    rm -f "$reqlog" # h2load appends to its log file
    local -a pids
    read -r -a pids <<<"${PEER_CPU_PIDS[$peer]} $UPSTREAM_PID"
    local o0 c0 b0 t0 o1 c1 b1 t1 other
    o0=$(cpu_ticks "${pids[@]}") c0=$(children_ticks) b0=$(busy_ticks) t0=$(now_us)
    "${PIN_CLIENT[@]}" h2load --h1 -t 1 -c "$LAT_CONNS" --rps "$per_client" \
        --warm-up-time 1 -D "$LAT_DURATION" --log-file "$reqlog" "$url" >"$out" 2>&1 || true
    t1=$(now_us) b1=$(busy_ticks) c1=$(children_ticks) o1=$(cpu_ticks "${pids[@]}")
    # As for the throughput rounds: CPU used by other processes, in cores.
    other=$(awk -v busy=$((b1 - b0)) -v ours=$((o1 - o0 + c1 - c0)) -v hz="$CLK_TCK" -v us=$((t1 - t0)) \
        'BEGIN { o = (busy - ours) / hz / (us / 1e6); printf "%.2f", (o < 0) ? 0 : o }')
    if [[ ! -s "$reqlog" ]]; then
        fail "latency $peer: h2load logged no request ($(tail -2 "$out" | tr '\n' ' '))"
        return
    fi
    local line
    # Errors: logged requests without a 2xx/3xx status (-1: failed stream).
    line=$(awk -F'\t' -v peer="$peer" -v d="$LAT_DURATION" '
        { n++; if ($2 < 200 || $2 > 399) bad++ }
        END { printf "%s\t%.0f\t%d\t", peer, n / d, bad }' "$reqlog")
    line+=$(cut -f3 "$reqlog" | sort -n | awk '
        { v[++n] = $1 }
        function rank(p) { i = int(p * n); if (i < p * n) i++; if (i < 1) i = 1; return v[i] / 1000 }
        END { printf "%.3f\t%.3f\t%.3f", rank(0.50), rank(0.99), rank(0.999) }')
    line+=$(awk -v o="$other" -v max="$NOISE_MAX" -v r="$round" 'BEGIN { printf "\t%s\t%d\t%d", o, (o > max), r }')
    printf '%s\n' "$line" >>"$LAT_TSV"
    awk -F'\t' -v rate="$RATE" '{ printf "  latency %d %-10s target %d req/s, achieved %d  p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  errors %d  other CPU %.2f cores%s\n",
        $9, $1, rate, $2, $4, $5, $6, $3, $7, ($8 ? "  NOISY" : "") }' <<<"$line"
    local achieved="${line#*$'\t'}"
    achieved="${achieved%%$'\t'*}"
    if ((achieved * 10 < RATE * 9)); then
        warn "latency $peer: achieved $achieved req/s of $RATE: the rate is above its capacity here, so its percentiles include queueing"
    elif ((achieved * 10 > RATE * 11)); then
        warn "latency $peer: achieved $achieved req/s, more than the $RATE asked for: h2load caught up after a stall"
    fi
}

# ------------------------------------------------- latency under stalls ----
# The tail at a fixed rate is set by moments when the machine takes core 1
# away for milliseconds (see README.md). --stalls makes such moments on
# purpose and the same for every proxy: all the peer's processes are stopped
# for STALL_MS every STALL_EVERY_MS during one more latency run, so that the
# tails compare how each proxy catches up with the backlog, not how lucky
# its run was. The stopping loop runs on core 0 (the client's).
STALL_LINES=()
stall_loop() { # seconds pids...
    local end=$((SECONDS + $1)) n=0
    shift
    trap 'kill -CONT "$@" 2>/dev/null; exit 0' TERM INT
    local every stall
    every=$(awk -v ms="$STALL_EVERY_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
    stall=$(awk -v ms="$STALL_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
    while ((SECONDS < end)); do
        sleep "$every"
        kill -STOP "$@" 2>/dev/null || break
        sleep "$stall"
        kill -CONT "$@" 2>/dev/null || break
        n=$((n + 1))
    done
    echo "$n"
}

measure_stalls() {
    local peer="$1" url="${PEER_URL[$1]}" per_client
    local out="$WORK/h2load-stalls-$peer.txt" reqlog="$WORK/stalls-$peer.log" count="$WORK/stalls-$peer.count"
    local -a pids
    read -r -a pids <<<"${PEER_CPU_PIDS[$peer]}"
    per_client=$(awk -v r="$RATE" -v c="$LAT_CONNS" 'BEGIN { printf "%.3f", r / c }')
    rm -f "$reqlog"
    (stall_loop $((LAT_DURATION + 1)) "${pids[@]}" >"$count") &
    local loop_pid=$!
    PIDS+=("$loop_pid")
    if ((${#PIN_CLIENT[@]} > 0)); then taskset -p -c 0 "$loop_pid" >/dev/null || true; fi
    "${PIN_CLIENT[@]}" h2load --h1 -t 1 -c "$LAT_CONNS" --rps "$per_client" \
        --warm-up-time 1 -D "$LAT_DURATION" --log-file "$reqlog" "$url" >"$out" 2>&1 || true
    kill -TERM "$loop_pid" 2>/dev/null || true
    wait "$loop_pid" 2>/dev/null || true
    kill -CONT "${pids[@]}" 2>/dev/null || true
    if [[ ! -s "$reqlog" ]]; then
        fail "stalls $peer: h2load logged no request ($(tail -2 "$out" | tr '\n' ' '))"
        return
    fi
    local line
    line=$(cut -f3 "$reqlog" | sort -n | awk -v peer="$peer" -v stalls="$(cat "$count" 2>/dev/null || echo 0)" '
        { v[++n] = $1; if ($1 > 2000) a++; if ($1 > 4000) b++ }
        function rank(p) { i = int(p * n); if (i < p * n) i++; if (i < 1) i = 1; return v[i] / 1000 }
        END { printf "%-10s %9d %7d %9.3f %9.3f %9.3f %9d %9d", peer, n, stalls, rank(0.5), rank(0.99), rank(0.999), a + 0, b + 0 }')
    local bad
    bad=$(awk -F'\t' '$2 < 200 || $2 > 399 { n++ } END { print n + 0 }' "$reqlog")
    STALL_LINES+=("$line $(printf '%7d' "$bad")")
    log "stalls $peer: $line errors $bad"
    ((bad == 0)) || fail "stalls $peer: $bad requests failed while the proxy was stopped and resumed"
}

# ------------------------------------------------ switchyard scenarios -----
# Admin calls are made from core 0 (the client side), in loops bounded both by
# the scenario's duration and by a count.
admin_code() { # method path [json]
    local code
    if [[ $# -ge 3 ]]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -X "$1" \
            -H 'content-type: application/json' -d "$3" "$ADMIN$2") || true
    else
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -X "$1" "$ADMIN$2") || true
    fi
    echo "${code:-000}"
}

# PUT /api/v1/weights alternating 100/0 and 0/100 every 100 ms for $1 s.
# One curl process paces them (--rate 10/s) on one keep-alive connection: a
# process started per call costs the load generator's core several per
# cent, which showed as lost throughput of the proxy.
flip_loop() {
    local secs="$1" out="$2" cfg="$WORK/flips.curl" n body
    : >"$cfg"
    for ((n = 0; n < secs * 10; n++)); do
        if ((n % 2 == 0)); then body='{\"blue\": 100, \"green\": 0}'; else body='{\"blue\": 0, \"green\": 100}'; fi
        if ((n > 0)); then echo "next" >>"$cfg"; fi
        printf '%s\n' "url = \"$ADMIN/api/v1/weights\"" 'request = "PUT"' \
            'header = "content-type: application/json"' "data = \"$body\"" \
            'output = "/dev/null"' 'write-out = "%{http_code}\n"' 'max-time = 1' 'silent' >>"$cfg"
    done
    curl --rate 10/s --config "$cfg" >>"$out" || true
}

# Every second: a new comment in the config file (replaced by rename), then
# POST /api/v1/reload; for $1 s.
reload_loop() {
    local secs="$1" out="$2" n=0 start next now
    start=$(now_us)
    while ((n < secs + 2)); do
        now=$(now_us)
        ((now - start < secs * 1000000)) || break
        n=$((n + 1))
        write_switchyard_config "(reload $n)"
        admin_code POST /api/v1/reload >>"$out"
        next=$((start + n * 1000000))
        now=$(now_us)
        if ((next > now)); then sleep "$(awk -v us=$((next - now)) 'BEGIN { printf "%.6f", us / 1e6 }')"; fi
    done
}

SCEN_LINES=()
# Per scenario (steady, flips, reload): the req/s of each round, space
# separated; and the failed requests and admin calls summed over rounds.
declare -A SCEN_RPS=() SCEN_FAILED=() SCEN_ADMIN_OK=() SCEN_ADMIN_ALL=() SCEN_NOISY=()
RB_SCENARIO_RAN=0
STATUS_LUA="" # the wrk script of every scenario run, written by run_scenarios
# The non-2xx/3xx responses of a scenario's wrk output, by status and
# x-upstream ("-" when the proxy answered itself): "500 green-1: 3; ...".
status_breakdown() { awk '$1 == "status-count" { printf "%s %s: %s; ", $2, $3, $4 }' "$1"; }

# The noise check of the rounds around a scenario run, so that a ratio to
# steady taken while a neighbour compiled is seen as such: scen_mark before
# (and after the run and its loop have been waited for), scen_noise prints
# the cores used by other processes in between and " NOISY" above NOISE_MAX.
scen_mark() {
    echo "$(busy_ticks) $(children_ticks) $(cpu_ticks "${PEER_CPU_PIDS[switchyard]}") $(cpu_ticks "$UPSTREAM_PID") $(now_us)"
}
scen_noise() {
    awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" -v max="$NOISE_MAX" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        wall = (y[5] - x[5]) / 1e6
        other = ((y[1] - x[1]) - (y[2] - x[2]) - (y[3] - x[3]) - (y[4] - x[4])) / hz / wall
        if (other < 0) other = 0
        printf "%.2f%s", other, (other > max) ? " NOISY" : ""
    }'
}

# Runs wrk against switchyard for SCEN_DURATION s while $2 (a loop function)
# runs in the background; logs its throughput against $3 (steady req/s so
# far) and records it for the table (round $4).
run_scenario() {
    local name="$1" loop="$2" steady="$3" round="$4"
    local out="$WORK/scenario-$1-$4.txt" calls="$WORK/scenario-$1-$4-admin.txt"
    : >"$calls"
    local mark0 noise
    mark0=$(scen_mark)
    local loop_pid=""
    if [[ -n "$loop" ]]; then
        ("$loop" "$SCEN_DURATION" "$calls") &
        loop_pid=$!
        PIDS+=("$loop_pid")
        # The admin client belongs to the client side: core 0, like wrk.
        if ((${#PIN_CLIENT[@]} > 0)); then taskset -p -c 0 "$loop_pid" >/dev/null || true; fi
    fi
    run_wrk "${PEER_URL[switchyard]}" "$SCEN_DURATION" "$out" "$STATUS_LUA"
    if [[ -n "$loop_pid" ]]; then wait "$loop_pid" || true; fi
    noise=$(scen_noise "$mark0" "$(scen_mark)")
    local other_cpu="${noise% NOISY}" noisy_tag=""
    [[ "$noise" != *NOISY ]] || noisy_tag="  NOISY"
    local requests rps p99 errors admin_total admin_ok ratio
    read -r requests rps p99 errors < <(parse_wrk "$out")
    admin_total=$(wc -l <"$calls")
    admin_ok=$(grep -c '^2' "$calls" || true)
    if [[ "$name" == steady && -z "$steady" ]]; then steady="$rps"; fi
    ratio=$(awk -v a="$rps" -v b="$steady" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    SCEN_RPS[$name]+="$rps "
    SCEN_FAILED[$name]=$((${SCEN_FAILED[$name]:-0} + errors))
    SCEN_ADMIN_OK[$name]=$((${SCEN_ADMIN_OK[$name]:-0} + admin_ok))
    SCEN_ADMIN_ALL[$name]=$((${SCEN_ADMIN_ALL[$name]:-0} + admin_total))
    [[ -z "$noisy_tag" ]] || SCEN_NOISY[$name]=1
    log "scenario $name, round $round: $rps req/s (x$ratio of steady so far), failed requests $errors, admin calls 2xx $admin_ok/$admin_total, other CPU $other_cpu cores$noisy_tag"
    if ((errors > 0)); then fail "scenario $name: $errors failed requests (non-2xx + socket errors; non-2xx by status and x-upstream: $(status_breakdown "$out")), must be 0"; fi
    if ((requests == 0)); then fail "scenario $name: no request completed"; fi
    if [[ -n "$loop" ]]; then
        if ((admin_total == 0)); then
            fail "scenario $name: the admin loop made no call"
        elif ((admin_ok < admin_total)); then
            fail "scenario $name: $((admin_total - admin_ok)) of $admin_total admin calls failed (codes: $(sort "$calls" | uniq -c | tr -s ' \n' ' ')); the admin API of SPEC.md section 3 is needed"
        fi
    fi
}

# ---------------------------------------------- auto-rollback scenario -----
# Longest accepted time from green starting to fail to the rollback event:
# the breaches needed, one interval more for the phase of the evaluation
# timer, and a second for a loaded 2-core machine (SPEC.md section 4 asks for
# the decision within one interval of the last breach).
rb_bound_ms() { echo $(((RB_BREACHES + 1) * RB_INTERVAL_MS + 1000)); }

rollback_yaml() {
    cat <<EOF
rollback:                 # auto-rollback scenario
  enabled: true
  interval: ${RB_INTERVAL_MS}ms
  window: $RB_WINDOW
  min_requests: $RB_MIN_REQUESTS
  max_error_rate: $RB_MAX_ERROR_RATE
  consecutive_breaches: $RB_BREACHES
  grace: ${RB_GRACE_MS}ms
EOF
}

# Sets the failure knob of both green instances (examples/bench_upstream.rs,
# POST /__fail); prints the status code of each call.
set_green_failure() { # rate
    local port
    for port in "$GREEN1" "$GREEN2"; do
        curl -s -o /dev/null -w '%{http_code}\n' --max-time 1 -X POST \
            "http://$HOST:$port/__fail?rate=$1&status=$RB_FAIL_STATUS" || echo 000
    done
}

# Failures answered so far by both green instances (GET /__fail), or -1.
green_injected() {
    local port total=0 n
    for port in "$GREEN1" "$GREEN2"; do
        n=$(curl -s --max-time 1 "http://$HOST:$port/__fail" | sed -n 's/.*injected=\([0-9]*\).*/\1/p') || true
        [[ -n "$n" ]] || { echo -1; return; }
        total=$((total + n))
    done
    echo "$total"
}

rollbacks_total() { # sum of switchyard_rollbacks_total over reasons
    curl -s --max-time 1 "$ADMIN/metrics" | awk '/^switchyard_rollbacks_total/ { s += $NF } END { print s + 0 }'
}

# wrk script: counts the responses wrk calls errors (status > 399) by status
# and x-upstream, printed as "status-count STATUS UPSTREAM N" at the end.
write_status_counter() {
    cat >"$1" <<'EOF'
-- generated by benches/compare/run.sh: non-2xx/3xx responses by status and x-upstream
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
  if status > 399 then
    local key = status .. " " .. (headers["x-upstream"] or "-")
    counts[key] = (counts[key] or 0) + 1
  end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for key, n in pairs(t:get("counts") or {}) do
      io.write("status-count ", key, " ", n, "\n")
    end
  end
end
EOF
}

# The client side of the run, next to wrk: after $1 µs, green's failure on;
# then GET /api/v1/status every 100 ms until the rollback lock shows, for at
# most the bound + 1 s. Writes "key value" lines to $2, codes of the knob
# calls to $3.
rollback_loop() {
    local on_after_us="$1" out="$2" calls="$3" start now t_on deadline lock
    start=$(now_us)
    now=$(now_us)
    if ((start + on_after_us > now)); then
        sleep "$(awk -v us=$((start + on_after_us - now)) 'BEGIN { printf "%.6f", us / 1e6 }')"
    fi
    t_on=$(now_us)
    set_green_failure "$RB_FAIL_RATE" >>"$calls"
    echo "on_us $t_on" >>"$out"
    deadline=$((t_on + ($(rb_bound_ms) + 1000) * 1000))
    while (($(now_us) < deadline)); do
        lock=$(curl -s --max-time 1 "$ADMIN/api/v1/status" | jq -r '.rollback_lock.pool // empty' 2>/dev/null) || true
        if [[ -n "$lock" ]]; then
            echo "seen_us $(now_us)" >>"$out"
            break
        fi
        sleep 0.1
    done
    echo "injected_seen $(green_injected)" >>"$out"
}

# Green starts failing partway through a wrk run at 90/10 (as the steady
# run); switchyard must roll back to blue by itself, in time, and the client
# must see no failure other than green's own answers. $1: steady req/s.
run_rollback_scenario() {
    local steady="$1" name=auto-rollback
    local out="$WORK/scenario-$name.txt" calls="$WORK/scenario-$name-admin.txt"
    local timeline="$WORK/scenario-$name-timeline.txt"
    : >"$calls"
    : >"$timeline"
    RB_SCENARIO_RAN=1
    local injected0
    injected0=$(green_injected)
    if ((injected0 < 0)); then
        fail "scenario $name: GET http://$HOST:$GREEN1/__fail did not answer: bench_upstream has no failure knob (rebuild it: drop --no-build)"
        return
    fi

    # The rollback rules, by reload; a fresh statistics window and grace.
    local code status body
    write_switchyard_config "(auto-rollback scenario)" "$(rollback_yaml)"
    code=$(admin_code POST /api/v1/reload)
    echo "$code" >>"$calls"
    if [[ "$code" != 2* ]]; then
        fail "scenario $name: reload with the rollback: section answered $code"
        return
    fi
    status=$(curl -s --max-time 1 "$ADMIN/api/v1/status") || true
    if [[ "$(jq -r '.live' <<<"$status" 2>/dev/null)" != blue ||
        "$(jq -c '.rollback_lock' <<<"$status" 2>/dev/null)" != null ]]; then
        fail "scenario $name: expected blue live and no rollback lock before the run, status: $(head -c 300 <<<"$status")"
        return
    fi
    # A weight change restarts grace and the window (SPEC.md section 4):
    # 100/0 then 90/10, so that green's statistics start with this run.
    for body in '{"blue": 100, "green": 0}' '{"blue": 90, "green": 10}'; do
        code=$(admin_code PUT /api/v1/weights "$body")
        echo "$code" >>"$calls"
        if [[ "$code" != 2* ]]; then
            fail "scenario $name: PUT /api/v1/weights $body answered $code"
            return
        fi
    done
    local rb0 ev0
    rb0=$(rollbacks_total)
    ev0=$(curl -s --max-time 1 "$ADMIN/api/v1/events?limit=1" | jq '.events[0].id // 0' 2>/dev/null) || ev0=0

    # Failure on at a third of the run (at least 1 s: grace is over by then).
    local on_after_us=$((SCEN_DURATION * 1000000 / 3))
    ((on_after_us >= 1000000)) || on_after_us=1000000
    local mark0
    mark0=$(scen_mark)
    (rollback_loop "$on_after_us" "$timeline" "$calls") &
    local loop_pid=$!
    PIDS+=("$loop_pid")
    if ((${#PIN_CLIENT[@]} > 0)); then taskset -p -c 0 "$loop_pid" >/dev/null || true; fi
    run_wrk "${PEER_URL[switchyard]}" "$SCEN_DURATION" "$out" "$STATUS_LUA"
    wait "$loop_pid" || true
    local noise
    noise=$(scen_noise "$mark0" "$(scen_mark)")
    local other_cpu="${noise% NOISY}" noisy_tag=""
    [[ "$noise" != *NOISY ]] || noisy_tag="  NOISY"
    set_green_failure 0 >>"$calls"
    local injected1
    injected1=$(green_injected)

    # What the client saw: wrk's errors, split by the status counter.
    local requests rps p99 errors signal other socket
    read -r requests rps p99 errors < <(parse_wrk "$out")
    signal=$(awk -v st="$RB_FAIL_STATUS" '$1 == "status-count" && $2 == st && $3 ~ /^green-/ { s += $4 } END { print s + 0 }' "$out")
    socket=$(awk '/Socket errors:/ { gsub(/,/, ""); s = $4 + $6 + $8 + $10 } END { print s + 0 }' "$out")
    other=$((errors - signal))

    # When the rollback came: its event against the moment the knob was set.
    local events event ev_time ev_us on_us seen_us injected_seen delay_ms="" rb1 reason
    events=$(curl -s --max-time 2 "$ADMIN/api/v1/events?limit=1000") || true
    event=$(jq -c --argjson since "${ev0:-0}" '[.events[] | select(.id > $since and .kind == "rollback")] | last // empty' <<<"$events" 2>/dev/null) || true
    on_us=$(awk '$1 == "on_us" { print $2 }' "$timeline")
    seen_us=$(awk '$1 == "seen_us" { print $2 }' "$timeline")
    injected_seen=$(awk '$1 == "injected_seen" { print $2 }' "$timeline")
    rb1=$(rollbacks_total)
    if [[ -n "$event" && -n "$on_us" ]]; then
        ev_time=$(jq -r '.time' <<<"$event")
        ev_us=$(date -u -d "$ev_time" +%s%6N 2>/dev/null) || ev_us=""
        [[ -z "$ev_us" ]] || delay_ms=$(((ev_us - on_us) / 1000))
        reason=$(jq -r '"\(.actor): \(.reason)"' <<<"$event")
    fi
    local ejections
    ejections=$(jq --argjson since "${ev0:-0}" '[.events[] | select(.id > $since and (.kind == "endpoint_ejected" or .kind == "failover"))] | length' <<<"$events" 2>/dev/null) || ejections="?"

    local ratio admin_total admin_ok delay_text=none
    [[ -z "$delay_ms" ]] || delay_text="$delay_ms ms"
    ratio=$(awk -v a="$rps" -v b="$steady" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    admin_total=$(wc -l <"$calls")
    admin_ok=$(grep -c '^2' "$calls" || true)
    SCEN_LINES+=("$(printf '%-13s %9s %8s %8s %9s %9s %14s%s' "$name" "$rps" "$ratio" "$other" \
        "$admin_ok/$admin_total" "$signal" "$delay_text" "$noisy_tag")")
    log "scenario $name: $rps req/s (x$ratio of steady); green failing at $RB_FAIL_RATE from $((on_after_us / 1000)) ms: rollback $delay_text${delay_ms:+ later} (bound $(rb_bound_ms) ms; ${reason:-no rollback event})"
    log "scenario $name: client saw $signal x $RB_FAIL_STATUS from green (the signal, expected), failed otherwise $other (socket errors $socket), admin calls 2xx $admin_ok/$admin_total"
    log "scenario $name: green answered $((injected1 - injected0)) injected failures in all, $((injected1 - ${injected_seen:-$injected1})) of them after the lock showed in status; switchyard_rollbacks_total +$((rb1 - rb0)); ejection/failover events: $ejections; other CPU $other_cpu cores$noisy_tag"

    if [[ -z "$event" ]]; then
        fail "scenario $name: no rollback event within the run (green failing at $RB_FAIL_RATE; status lock seen: ${seen_us:+yes}${seen_us:-no})"
    elif [[ -z "$delay_ms" ]]; then
        fail "scenario $name: rollback event without a readable time: $event"
    elif ((delay_ms > $(rb_bound_ms))); then
        fail "scenario $name: rollback $delay_ms ms after green began failing, more than $(rb_bound_ms) ms"
    fi
    if [[ -n "$event" && "$(jq -r '.actor' <<<"$event")" != auto ]]; then
        fail "scenario $name: the rollback event's actor is $(jq -r '.actor' <<<"$event"), not auto"
    fi
    ((rb1 > rb0)) || fail "scenario $name: switchyard_rollbacks_total did not grow ($rb0 -> $rb1)"
    if ((other > 0)); then
        fail "scenario $name: $other failed requests besides green's own $RB_FAIL_STATUS answers (socket errors $socket; non-2xx by status and x-upstream: $(status_breakdown "$out")), must be 0"
    fi
    if ((signal > injected1 - injected0)); then
        fail "scenario $name: the client saw $signal x $RB_FAIL_STATUS from green, but green answered only $((injected1 - injected0))"
    elif ((signal < injected1 - injected0)); then
        warn "scenario $name: green answered $((injected1 - injected0)) failures, the client saw $signal of them"
    fi
    ((requests > 0)) || fail "scenario $name: no request completed"
    if ((admin_ok < admin_total)); then
        fail "scenario $name: $((admin_total - admin_ok)) of $admin_total admin and knob calls failed (codes: $(sort "$calls" | uniq -c | tr -s ' \n' ' '))"
    fi

    if [[ -n "$event" ]]; then
        status=$(curl -s --max-time 1 "$ADMIN/api/v1/status") || true
        if [[ "$(jq -c '[.weights.green == 0, .rollback_lock.pool]' <<<"$status" 2>/dev/null)" != '[true,"green"]' ]]; then
            fail "scenario $name: after the rollback, expected green at 0 and rollback-locked, status: $(head -c 300 <<<"$status")"
        fi
    fi

    # Put things back: lock cleared, the plain config, 90/10.
    code=$(admin_code POST /api/v1/rearm)
    [[ "$code" == 2* ]] || fail "scenario $name: POST /api/v1/rearm answered $code"
    write_switchyard_config ""
    code=$(admin_code POST /api/v1/reload)
    [[ "$code" == 2* ]] || fail "scenario $name: reload of the plain config answered $code"
    code=$(admin_code PUT /api/v1/weights '{"blue": 90, "green": 10}')
    [[ "$code" == 2* ]] || fail "scenario $name: restoring weights 90/10 answered $code"
}

run_scenarios() {
    log "scenarios (switchyard only, $SCEN_DURATION s each)"
    local code
    code=$(admin_code GET /api/v1/status)
    if [[ "$code" != 200 ]]; then
        fail "scenarios: GET $ADMIN/api/v1/status answered $code, not 200: the admin API (openapi.yaml) is not available yet, so weight flips and reloads cannot be measured"
        return
    fi
    # Every scenario run uses the same wrk script, so that its cost (small:
    # wrk has core 0 to itself) is the same in the reference and the others.
    STATUS_LUA="$WORK/status-count.lua"
    write_status_counter "$STATUS_LUA"
    # Rounds in alternating order (steady, flips, reload; then reload,
    # flips, steady; ...): one 6 s run moves by several per cent on this
    # machine, and a ratio of two single runs by twice that.
    local round name steady=""
    local -a order=(steady flips reload)
    for ((round = 1; round <= SCEN_ROUNDS; round++)); do
        local -a this=("${order[@]}")
        if ((round % 2 == 0)); then this=(reload flips steady); fi
        for name in "${this[@]}"; do
            case "$name" in
                steady) run_scenario steady "" "$steady" "$round" ;;
                flips)
                    run_scenario flips flip_loop "$steady" "$round"
                    code=$(admin_code PUT /api/v1/weights '{"blue": 90, "green": 10}')
                    [[ "$code" == 2* ]] || fail "scenarios: restoring weights 90/10 answered $code"
                    ;;
                reload) run_scenario reload reload_loop "$steady" "$round" ;;
            esac
            if [[ "$name" == steady ]]; then steady=$(median_list ${SCEN_RPS[steady]}); fi
        done
    done
    for name in steady flips reload; do
        local rps ratio admin_col="-"
        rps=$(median_list ${SCEN_RPS[$name]})
        ratio=$(awk -v a="$rps" -v b="$steady" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
        [[ "$name" == steady ]] || admin_col="${SCEN_ADMIN_OK[$name]}/${SCEN_ADMIN_ALL[$name]}"
        SCEN_LINES+=("$(printf '%-13s %9s %8s %8s %9s %9s %14s%s' "$name" "$rps" "$ratio" \
            "${SCEN_FAILED[$name]}" "$admin_col" - - "${SCEN_NOISY[$name]:+  NOISY}")")
    done
    # Last, once: it leaves a rollback behind (undone, but in the event log).
    run_rollback_scenario "$steady"
}

# Every logged request of all latency rounds of a peer: "requests p99 p99.9
# >2ms >4ms" (ms, nearest rank; the last two are counts).
pooled_latency() {
    cat "$WORK"/h2load-"$1"-*.log 2>/dev/null | cut -f3 | sort -n | awk '
        { v[++n] = $1; if ($1 > 2000) a++; if ($1 > 4000) b++ }
        function rank(p) { i = int(p * n); if (i < p * n) i++; if (i < 1) i = 1; return v[i] / 1000 }
        END { if (n == 0) { print "0 - - 0 0"; exit }
              printf "%d %.3f %.3f %d %d\n", n, rank(0.99), rank(0.999), a + 0, b + 0 }'
}

# The median of its arguments (numbers), rounded to an integer.
median_list() {
    printf '%s\n' "$@" | sort -g | awk '{ v[++n] = $1 } END {
        if (n == 0) { print 0; exit }
        m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        printf "%.0f\n", m }'
}

# ------------------------------------------------------------ report -------
report() {
    echo
    echo "== throughput: wrk -t1 -c$CONNECTIONS, $DURATION s per round, median of $ROUNDS round(s) =="
    printf '%-10s %9s %7s %10s %9s %9s %9s %8s %7s %7s\n' peer 'req/s' 'CPU%' 'req/CPU-s' 'user us' 'kernel us' 'p99(ms)' 'RSS MiB' errors noisy
    local -A med_rps med_per rss_mib
    local peer
    for peer in $PEERS; do
        if [[ -z "${PEER_OK[$peer]:-}" ]]; then
            printf '%-10s %9s\n' "$peer" 'not run'
            continue
        fi
        local pct p99 rss err noisy us_user us_sys
        med_rps[$peer]=$(median "$peer" 3)
        us_user=$(median "$peer" 15)
        us_sys=$(median "$peer" 16)
        med_per[$peer]=$(median "$peer" 7)
        pct=$(median "$peer" 14)
        p99=$(median "$peer" 9)
        rss=$(awk -F'\t' -v p="$peer" '$1 == p && $13 > m { m = $13 } END { print m + 0 }' "$ROUNDS_TSV")
        err=$(awk -F'\t' -v p="$peer" '$1 == p { s += $10 } END { print s + 0 }' "$ROUNDS_TSV")
        noisy=$(awk -F'\t' -v p="$peer" '$1 == p { n++; s += $12 } END { printf "%d/%d", s, n }' "$ROUNDS_TSV")
        if [[ "$peer" == direct ]]; then
            rss_mib[$peer]="-"
        else
            rss_mib[$peer]=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
        fi
        printf '%-10s %9s %7s %10s %9s %9s %9s %8s %7s %7s\n' "$peer" "${med_rps[$peer]}" "$pct" \
            "${med_per[$peer]}" "$us_user" "$us_sys" "$p99" "${rss_mib[$peer]}" "$err" "$noisy"
    done

    if [[ -s "$LAT_TSV" ]]; then
        echo
        echo "== latency at a fixed rate: h2load --h1 -c$LAT_CONNS, $RATE req/s in total, $LAT_DURATION s per round, median of $LAT_ROUNDS round(s) =="
        printf '%-10s %9s %9s %9s %9s %7s %7s\n' peer 'req/s' 'p50(ms)' 'p99(ms)' 'p99.9(ms)' errors noisy
        for peer in $PEERS; do
            grep -q "^$peer"$'\t' "$LAT_TSV" || continue
            local -a lat=()
            local col
            for col in 2 4 5 6; do lat+=("$(median_of "$LAT_TSV" "$peer" "$col" 8)"); done
            printf '%-10s %9.0f %9.3f %9.3f %9.3f %7s %7s\n' "$peer" "${lat[@]}" \
                "$(awk -F'\t' -v p="$peer" '$1 == p { s += $3 } END { print s + 0 }' "$LAT_TSV")" \
                "$(awk -F'\t' -v p="$peer" '$1 == p { n++; s += $8 } END { printf "%d/%d", s, n }' "$LAT_TSV")"
        done
        if ((LAT_ROUNDS > 1)); then
            echo
            echo "== the same, every request of the $LAT_ROUNDS rounds together (the tail from $LAT_ROUNDS times as many requests) =="
            printf '%-10s %9s %9s %9s %9s %9s\n' peer requests 'p99(ms)' 'p99.9(ms)' '>2ms' '>4ms'
            for peer in $PEERS; do
                grep -q "^$peer"$'\t' "$LAT_TSV" || continue
                printf '%-10s %9s %9s %9s %9s %9s\n' "$peer" $(pooled_latency "$peer")
            done
        fi
    fi

    if ((${#STALL_LINES[@]} > 0)); then
        echo
        echo "== latency at $RATE req/s while each proxy is stopped ${STALL_MS} ms every ${STALL_EVERY_MS} ms, $LAT_DURATION s =="
        printf '%-10s %9s %7s %9s %9s %9s %9s %9s %7s\n' peer requests stalls 'p50(ms)' 'p99(ms)' 'p99.9(ms)' '>2ms' '>4ms' errors
        printf '%s\n' "${STALL_LINES[@]}"
    fi

    echo
    echo "== switchyard relative to the others: x = switchyard / other =="
    local other others=(nginx haproxy)
    # pingora only when asked for: the default output stays as it was.
    [[ " $PEERS " != *" pingora "* ]] || others+=(pingora)
    for other in "${others[@]}"; do
        if [[ -z "${PEER_OK[switchyard]:-}" || -z "${PEER_OK[$other]:-}" ]]; then
            printf 'switchyard / %-8s n/a (not both measured)\n' "$other"
            continue
        fi
        local p99_ratio="-" p999_ratio="-" pooled_ratio="-"
        if [[ -s "$LAT_TSV" ]]; then
            p99_ratio=$(ratio "$(median_of "$LAT_TSV" switchyard 5 8)" "$(median_of "$LAT_TSV" "$other" 5 8)")
            p999_ratio=$(ratio "$(median_of "$LAT_TSV" switchyard 6 8)" "$(median_of "$LAT_TSV" "$other" 6 8)")
            local -a mine theirs
            read -r -a mine <<<"$(pooled_latency switchyard)"
            read -r -a theirs <<<"$(pooled_latency "$other")"
            pooled_ratio=$(ratio "${mine[2]}" "${theirs[2]}")
        fi
        printf 'switchyard / %-8s req/s x%s   req/CPU-s x%s   p99 x%s   p99.9 x%s (pooled x%s)   peak RSS x%s\n' \
            "$other" "$(ratio "${med_rps[switchyard]}" "${med_rps[$other]}")" \
            "$(ratio "${med_per[switchyard]}" "${med_per[$other]}")" "$p99_ratio" "$p999_ratio" \
            "$pooled_ratio" "$(ratio "${rss_mib[switchyard]}" "${rss_mib[$other]}")"
    done

    if ((${#SCEN_LINES[@]} > 0)); then
        echo
        echo "== switchyard scenarios: $SCEN_DURATION s each, median of $SCEN_ROUNDS round(s) (auto-rollback: one run), failed requests must be 0 =="
        printf '%-13s %9s %8s %8s %9s %9s %14s\n' scenario 'req/s' 'x steady' failed 'admin 2xx' 'green 5xx' 'rollback after'
        printf '%s\n' "${SCEN_LINES[@]}"
        if ((RB_SCENARIO_RAN)); then
            echo "auto-rollback: 'green 5xx' are the $RB_FAIL_STATUS answers that green itself gave to"
            echo "  $RB_FAIL_RATE of its requests once made to fail, up to the rollback: the upstream really"
            echo "  failed, the proxy passed its answers on faithfully, and they are what the rollback"
            echo "  reacts to, so they are not counted as failed. 'failed' is everything else the client"
            echo "  saw: socket errors and any other non-2xx (a 502/503/504 made by the proxy). It must"
            echo "  be 0, and the rollback must come within $(rb_bound_ms) ms of green starting to fail."
        fi
    fi
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f", a / b; else print "-" }'; }

# The peers in the order of --peers (1) or in the reverse order (0), one a line.
peer_order() {
    local -a all
    local i
    read -r -a all <<<"$PEERS"
    if (($1)); then
        printf '%s\n' "${all[@]}"
    else
        for ((i = ${#all[@]} - 1; i >= 0; i--)); do printf '%s\n' "${all[$i]}"; done
    fi
}

# -------------------------------------------------------------- main -------
main() {
    ensure_tools
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-compare.XXXXXX")"
    SWITCHYARD_CONF="$WORK/switchyard/switchyard.yaml"
    chmod 755 "$WORK" # nginx workers run as nobody when started by root
    ROUNDS_TSV="$WORK/rounds.tsv" LAT_TSV="$WORK/latency.tsv"
    : >"$ROUNDS_TSV"
    : >"$LAT_TSV"

    local port
    local ports=("$BLUE1" "$BLUE2" "$GREEN1" "$GREEN2" "$NGINX_PORT" "$HAPROXY_PORT" "$SWITCHYARD_PORT" "$ADMIN_PORT")
    [[ " $PEERS " != *" pingora "* ]] || ports+=("$PINGORA_PORT")
    for port in "${ports[@]}"; do
        if port_in_use "$port"; then die "port $HOST:$port is already in use (try --port-base)"; fi
    done

    if ((BUILD)); then
        log "building bench_upstream and switchyard (release)"
        (cd "$REPO" && nice cargo build --release --quiet --example bench_upstream) ||
            die "cargo build of examples/bench_upstream.rs failed"
        if [[ " $PEERS " == *" switchyard "* && -z "$SWITCHYARD_BIN" ]]; then
            (cd "$REPO" && nice cargo build --release --quiet --bin switchyard) || {
                fail "cargo build of switchyard failed: not measured"
                SWITCHYARD_BUILT=0
            }
        fi
        if [[ " $PEERS " == *" pingora "* ]]; then
            # Its own Cargo project and lock file, outside the workspace; the
            # output goes under target/ so nothing lands in the source tree.
            [[ -x "$PINGORA_BIN" ]] || log "building pingora (release, first time: a few minutes)"
            (cd "$PINGORA_DIR" && CARGO_TARGET_DIR="$PINGORA_TARGET" nice cargo build --release --locked --quiet) || {
                fail "cargo build of benches/compare/pingora failed: not measured"
                PINGORA_BUILT=0
            }
        fi
    fi
    [[ -x "$REPO/target/release/examples/bench_upstream" ]] ||
        die "target/release/examples/bench_upstream missing (drop --no-build)"

    log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
    log "tools: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(h2load --version 2>&1 | head -1)"
    [[ " $PEERS " != *" nginx "* ]] || log "tools: $("$NGINX_BIN" -v 2>&1)"
    [[ " $PEERS " != *" haproxy "* ]] || log "tools: $("$HAPROXY_BIN" -v 2>&1 | head -1)"
    [[ " $PEERS " != *" pingora "* ]] ||
        log "tools: pingora $(awk '$0 == "name = \"pingora\"" { getline; gsub(/[^0-9.]/, ""); print }' "$PINGORA_DIR/Cargo.lock") (benches/compare/pingora, Cargo.lock)"
    log "work directory: $WORK"
    write_configs
    start_upstreams
    local peer
    for peer in $PEERS; do
        if start_peer "$peer"; then check_split "$peer"; fi
    done

    local ordered=() round i
    read -r -a ordered <<<"$PEERS"
    for ((round = 1; round <= ROUNDS; round++)); do
        local order=()
        mapfile -t order < <(peer_order $((round % 2)))
        log "round $round/$ROUNDS: ${order[*]}"
        for peer in "${order[@]}"; do
            [[ -n "${PEER_OK[$peer]:-}" ]] || continue
            measure_round "$peer" "$round"
        done
    done

    if [[ "$RATE" == auto ]]; then
        # Half the lowest median req/s among the proxies (direct if none ran).
        local medians="" weakest
        for peer in $PEERS; do
            [[ -n "${PEER_OK[$peer]:-}" && "$peer" != direct ]] || continue
            medians+="$(median "$peer" 3) "
        done
        [[ -n "$medians" || -z "${PEER_OK[direct]:-}" ]] || medians="$(median direct 3)"
        weakest=$(tr ' ' '\n' <<<"$medians" | awk '$1 > 0 && (!m || $1 < m) { m = $1 } END { print m + 0 }')
        RATE=$(awk -v m="$weakest" 'BEGIN { r = int(m / 2 / 1000) * 1000; print (r < 1000) ? 1000 : r }')
        log "latency runs at $RATE req/s: half the weakest peer's median throughput in this run"
    fi
    LAT_CONNS=$(awk -v r="$RATE" 'BEGIN { c = int(r / 1000 + 0.5); print (c < 1) ? 1 : (c > 64) ? 64 : c }')
    # Latency rounds alternate order too, the first in the reverse order of
    # the last throughput round.
    local lat_round
    for ((lat_round = 1; lat_round <= LAT_ROUNDS; lat_round++)); do
        local lat_order=()
        mapfile -t lat_order < <(peer_order $(((ROUNDS + lat_round) % 2)))
        log "latency round $lat_round/$LAT_ROUNDS: ${lat_order[*]}"
        for peer in "${lat_order[@]}"; do
            [[ -n "${PEER_OK[$peer]:-}" ]] || continue
            measure_latency "$peer" "$lat_round"
        done
    done

    if ((STALLS)); then
        log "latency under stalls: each proxy stopped ${STALL_MS} ms every ${STALL_EVERY_MS} ms"
        for peer in "${ordered[@]}"; do
            [[ -n "${PEER_OK[$peer]:-}" && "$peer" != direct ]] || continue
            measure_stalls "$peer"
        done
    fi

    if ((SCENARIOS)) && [[ " $PEERS " == *" switchyard "* ]]; then
        if [[ -n "${PEER_OK[switchyard]:-}" ]]; then
            run_scenarios
        else
            fail "scenarios: switchyard is not running, so weight flips and reloads were not measured"
        fi
    fi

    report
    echo
    log "done in $((SECONDS - START_TIME)) s"
    if ((${#FAILURES[@]} > 0)); then
        echo
        echo "FAILED (${#FAILURES[@]}):"
        printf '  - %s\n' "${FAILURES[@]}"
        exit 1
    fi
}

main
