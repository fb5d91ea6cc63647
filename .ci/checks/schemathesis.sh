#!/usr/bin/env bash
# schemathesis (PyPI) against openapi.yaml and the live admin API of the
# demo, with a token, every check on: statuses, content types and response
# schemas as documented, invalid data refused, valid data accepted, auth
# enforced. Installs schemathesis into a cached virtualenv when missing;
# fails, never skips, when it cannot. Settings: .ci/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-ci/schemathesis-venv"
st="$venv/bin/schemathesis"
if [ ! -x "$st" ]; then
  echo "schemathesis missing: installing it from PyPI into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4,<5'
fi
[ -x "$st" ] || { echo "FAIL: schemathesis is not available"; exit 1; }
command -v curl >/dev/null || { apt-get install -y -qq curl >/dev/null; }

cargo build --quiet --bin switchyard
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
proxy=127.0.0.1:$(port); admin=127.0.0.1:$(port); control=127.0.0.1:$(port)
token="ci-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
SWITCHYARD_ADMIN_TOKEN="$token" ./target/debug/switchyard demo --listen "$proxy" --admin "$admin" \
  --control "$control" --traffic 20 >"$work/demo.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

for _ in $(seq 100); do
  curl -fsS "http://$admin/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$admin/healthz" >/dev/null || { cat "$work/demo.log"; echo "FAIL: the demo did not start"; exit 1; }

"$st" --version
if ! "$st" --config-file .ci/schemathesis.toml run openapi.yaml --url "http://$admin" \
  -H "Authorization: Bearer $token" --checks all --max-examples 100 --no-color --generation-database none \
  --report junit --report-dir "$work/report" >"$work/st.log" 2>&1; then
  cat "$work/st.log"
  echo "FAIL: schemathesis found the admin API and openapi.yaml disagree"
  exit 1
fi
tail -n 4 "$work/st.log"
if grep -q -- "$token" "$work/demo.log"; then echo "FAIL: the token is in the demo's log"; exit 1; fi
echo "schemathesis: the admin API answers as openapi.yaml says"
