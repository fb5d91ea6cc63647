#!/usr/bin/env bash
# contrib/systemd/switchyard.service: `systemd-analyze verify` (Debian's
# systemd package, installed when missing) finds no mistake in it, with
# the binary where the unit expects it (the unit is verified from a copy
# whose /usr/local/bin/switchyard is this build's binary), and the binary
# accepts contrib/systemd/switchyard.yaml (its state paths moved to a
# temporary directory). The signals it sends are tested from the outside
# by tests/e2e/operator.rs. Fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib.sh
source .ci/lib.sh
need_tool systemd-analyze systemd
systemd-analyze --version | sed -n 1p
cargo build --quiet --bin switchyard
bin="$(pwd)/target/debug/switchyard"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#/usr/local/bin/switchyard#$bin#g" contrib/systemd/switchyard.service >"$work/switchyard.service"
grep -q "ExecStart=$bin run" "$work/switchyard.service" || { echo "FAIL: the unit does not run $bin"; exit 1; }
# No man page is installed here (`switchyard man` writes one): --man=no.
if ! out=$(systemd-analyze verify --man=no "$work/switchyard.service" 2>&1) || [ -n "$out" ]; then
  echo "$out"
  echo "FAIL: systemd-analyze verify found problems in contrib/systemd/switchyard.service"
  exit 1
fi
mkdir -p "$work/state"
sed "s#/var/lib/switchyard/#$work/state/#g" contrib/systemd/switchyard.yaml >"$work/switchyard.yaml"
"$bin" check -c "$work/switchyard.yaml"
echo "systemd: passed"
