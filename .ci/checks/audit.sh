#!/usr/bin/env bash
# cargo audit: no crate in Cargo.lock may have a known advisory in the
# RustSec database (vulnerabilities and, with --deny warnings, also
# unmaintained, unsound and yanked crates) unless `.cargo/audit.toml` ignores
# it with a written reason. Reads the database copy in ../shared/advisory-db
# (offline: this workplace cannot reach GitHub). Installs cargo-audit from
# crates.io when missing (a few minutes once); fails, never skips, when it
# cannot: an audit that did not run is not a pass.
set -euo pipefail
cd "$(dirname "$0")/../.."

db=../shared/advisory-db
[ -d "$db/crates" ] || { echo "FAIL: no advisory database at $db"; exit 1; }

if ! cargo audit --version >/dev/null 2>&1; then
  echo "cargo-audit missing: installing it from crates.io"
  cargo install --quiet --locked cargo-audit
fi
cargo audit --version >/dev/null 2>&1 || { echo "FAIL: cargo-audit is not available"; exit 1; }

# Every ignored advisory must say why, on the comment line(s) just above it.
if [ -e .cargo/audit.toml ] && ! awk '
  /^[[:space:]]*#/ { reason = 1; next }
  /"RUSTSEC-[0-9]+-[0-9]+"/ {
    if (!reason) { print "FAIL: " $0 " is ignored without a reason above it in .cargo/audit.toml"; bad = 1 }
    reason = 0; next
  }
  { reason = 0 }
  END { exit bad }
' .cargo/audit.toml; then
  exit 1
fi

if ! cargo audit --db "$db" --no-fetch --deny warnings; then
  echo "FAIL: cargo audit found an advisory (upgrade, replace, or ignore it with a"
  echo "      reason in .cargo/audit.toml), or could not read the database at $db"
  exit 1
fi
echo "cargo audit: no known advisory outside the reasoned ignores of .cargo/audit.toml"
