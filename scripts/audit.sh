#!/usr/bin/env bash
# cargo audit: no dependency in Cargo.lock may have a known advisory in the
# RustSec database (vulnerabilities, and with -D warnings also unmaintained,
# unsound and yanked crates). Installs cargo-audit from crates.io when missing
# (about 5 minutes once); fetches the advisory database from GitHub, or uses
# a local clone given in $SWITCHYARD_ADVISORY_DB. Fails, never skips, when it
# cannot: an audit that did not run is not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo audit --version >/dev/null 2>&1; then
  echo "cargo-audit missing: installing it from crates.io"
  cargo install --quiet --locked cargo-audit
fi
cargo audit --version >/dev/null 2>&1 || { echo "FAIL: cargo-audit is not available"; exit 1; }

args=(--deny warnings)
if [ -n "${SWITCHYARD_ADVISORY_DB:-}" ]; then
  args+=(--db "$SWITCHYARD_ADVISORY_DB" --no-fetch)
fi
if ! cargo audit "${args[@]}"; then
  echo "FAIL: cargo audit found an advisory, or could not read the advisory database"
  echo "      (offline? clone https://github.com/RustSec/advisory-db and set SWITCHYARD_ADVISORY_DB)"
  exit 1
fi
echo "cargo audit: no known advisory"
