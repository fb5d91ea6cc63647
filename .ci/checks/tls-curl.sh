#!/usr/bin/env bash
# curl over TLS through the proxy (issue 6): `curl --http1.1` and `--http2`
# against the demo's HTTPS listener get 200 from the right pool, before and
# after a switch to green, and a curl that does not trust the demo's CA is
# refused. Installs curl when it is missing; fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "FAIL: $*" >&2; exit 1; }

install_curl() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq && $sudo apt-get install -y -qq curl
  elif command -v dnf >/dev/null; then
    $sudo dnf install -y -q curl
  elif command -v apk >/dev/null; then
    $sudo apk add --no-cache curl
  elif command -v brew >/dev/null; then
    brew install curl
  fi
}

command -v curl >/dev/null || install_curl || true
command -v curl >/dev/null || fail "curl is missing and could not be installed"
curl --version | grep -qw HTTP2 || fail "this curl was built without HTTP/2: $(curl --version | head -1)"

cargo build --quiet --bin switchyard
bin=target/debug/switchyard
out=$(mktemp)
work=$(mktemp -d)
"$bin" demo --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 --admin 127.0.0.1:0 >"$out" 2>"$work/stderr" &
demo=$!
cleanup() {
  kill -TERM "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
  rm -rf "$out" "$work"
}
trap cleanup EXIT

# Wait (at most 60 s) for the demo to print where it listens.
for _ in $(seq 300); do
  grep -q "proxy (HTTPS)" "$out" && break
  kill -0 "$demo" 2>/dev/null || fail "the demo exited: $(cat "$work/stderr")"
  sleep 0.2
done
line=$(grep "proxy (HTTPS)" "$out") || fail "the demo never printed its HTTPS listener"
port=$(sed -n 's|.*https://localhost:\([0-9]*\).*|\1|p' <<<"$line")
ca=$(sed -n 's|.*(CA: \(.*\))$|\1|p' <<<"$line")
admin=$(sed -n 's|.*admin API *on \(http://[0-9.:]*\).*|\1|p' "$out")
[ -n "$port" ] && [ -f "$ca" ] && [ -n "$admin" ] || fail "cannot read the demo's addresses from: $(cat "$out")"
url="https://localhost:$port/"

# check VERSION_FLAG EXPECTED_HTTP_VERSION EXPECTED_POOL
check() {
  local got
  got=$(curl -sS --cacert "$ca" "$1" -D "$work/headers" -o "$work/body" -w '%{http_version} %{http_code}' "$url") \
    || fail "curl $1 $url failed"
  [ "$got" = "$2 200" ] || fail "curl $1: got '$got', expected '$2 200'"
  grep -qi "^x-switchyard-pool: $3" "$work/headers" || fail "curl $1: not answered by $3: $(cat "$work/headers")"
  grep -q "Hello from $3-" "$work/body" || fail "curl $1: unexpected body: $(cat "$work/body")"
  echo "ok: curl $1 -> HTTP/$2 200 from $3"
}

check --http1.1 1.1 blue
check --http2 2 blue
"$bin" ctl --admin "$admin" weights 0 100 >/dev/null || fail "ctl weights 0 100 failed"
check --http1.1 1.1 green
check --http2 2 green

# Without the demo's CA, curl must refuse the certificate.
if curl -sS -o /dev/null "$url" 2>"$work/err"; then
  fail "curl accepted a certificate from a CA it does not trust"
fi
grep -qi "certificate" "$work/err" || fail "curl failed, but not on the certificate: $(cat "$work/err")"
echo "ok: curl without the CA refuses the certificate"
echo "tls-curl: all checks passed"
