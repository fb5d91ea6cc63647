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
source .ci/lib.sh
token="ci-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
start_demo 20 SWITCHYARD_ADMIN_TOKEN="$token"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
wait_for_demo

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
