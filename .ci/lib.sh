# Shared by the scripts in .ci/checks/ (sourced, never run as a check).

# A free port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# need_tool COMMAND PACKAGE: install Debian's PACKAGE when COMMAND is
# missing; fail, never skip, when that does not bring it.
need_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "$1 missing: installing Debian's $2 package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
  command -v "$1" >/dev/null || { echo "FAIL: $1 is not available"; exit 1; }
}

need_tool curl curl

# start_demo TRAFFIC [NAME=VALUE ...]: build the proxy and start
# `switchyard demo` on free ports, sending TRAFFIC requests/s, with the given
# environment. Sets work (a temporary directory, the demo's log in
# $work/demo.log), proxy, admin, control and pid; the caller sets its trap.
start_demo() {
  local traffic="$1"
  shift
  cargo build --quiet --bin switchyard
  work=$(mktemp -d)
  proxy=127.0.0.1:$(free_port); admin=127.0.0.1:$(free_port); control=127.0.0.1:$(free_port)
  env "$@" ./target/debug/switchyard demo --listen "$proxy" --admin "$admin" --control "$control" \
    --traffic "$traffic" >"$work/demo.log" 2>&1 &
  pid=$!
}

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND every 0.1 s until
# it succeeds; fail, with the demo's log, if it has not after SECONDS.
wait_until() {
  local secs="$1" what="$2"
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ] || ! kill -0 "$pid" 2>/dev/null; then
      cat "$work/demo.log" 2>/dev/null || true
      echo "FAIL: $what"
      exit 1
    fi
    sleep 0.1
  done
}

# The demo answers on its admin API and its proxy listener.
wait_for_demo() {
  wait_until 20 "the demo did not start" curl -fsS "http://$admin/healthz"
  wait_until 10 "the demo's proxy did not answer" curl -fsS -o /dev/null "http://$proxy/"
}

# need_selenium: Debian's chromium and chromium-driver, and selenium (PyPI)
# in a cached virtualenv; sets selenium_py to its python.
need_selenium() {
  need_tool chromium chromium
  need_tool chromedriver chromium-driver
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-ci/selenium-venv"
  if ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    echo "selenium missing: installing it from PyPI into $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'selenium>=4.20,<5'
  fi
  "$venv/bin/python" -c 'import selenium' || { echo "FAIL: selenium is not available"; exit 1; }
  selenium_py="$venv/bin/python"
}
