#!/usr/bin/env bash
# Every fuzz target in fuzz/ (`cargo fuzz list`) runs for a bounded time,
# SWITCHYARD_FUZZ_SECS each (default 45), from its seed corpus; the
# mirror's comparison (a pure function of two answers, a small space) at
# most 20 s, to keep the check's added time small.
#
# On the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its -Z and
# sanitizer-coverage flags, and `--sanitizer none` needs no sanitizer
# runtime (the code is `forbid(unsafe_code)`; libFuzzer still finds panics,
# endless loops (-timeout) and runaway memory). New inputs go to a scratch
# directory, so the checked-in corpus stays as it is.
#
# Installs cargo-fuzz (crates.io) when missing. Fails, never skips, when it
# cannot install or build, and when a target finds a crash, a timeout or an
# out-of-memory input: the reproducer is kept under fuzz/artifacts/TARGET/
# and printed in hex.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs="${SWITCHYARD_FUZZ_SECS:-45}"
began=$SECONDS

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz missing: installing it from crates.io"
  cargo install --locked cargo-fuzz || { echo "FAIL: cargo-fuzz could not be installed"; exit 1; }
fi
cargo fuzz --version >/dev/null 2>&1 || { echo "FAIL: cargo fuzz is not available"; exit 1; }
echo "$(cargo fuzz --version) on $(rustc --version)"

export RUSTC_BOOTSTRAP=1
# fuzz/ is a workspace of its own: seed its lock file from the project's, so
# the targets are built with the dependency versions the tests use.
cp Cargo.lock fuzz/Cargo.lock
host=$(rustc -vV | sed -n 's/^host: //p')
if ! (cd fuzz && cargo fuzz build --sanitizer none --target "$host"); then
  echo "FAIL: the fuzz targets do not build"
  exit 1
fi
built=$((SECONDS - began))
bin="fuzz/target/$host/release"
mapfile -t targets < <(cd fuzz && cargo fuzz list)
[ "${#targets[@]}" -gt 0 ] || { echo "FAIL: no fuzz targets listed"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
  [ -d "fuzz/corpus/$t" ] || { echo "FAIL: $t has no seed corpus in fuzz/corpus/$t"; failed+=("$t"); continue; }
  mkdir -p "$work/$t/new" "$work/$t/found"
  t_secs=$secs
  if [ "$t" = mirror_compare ] && [ "$secs" -gt 20 ]; then t_secs=20; fi
  echo "== fuzz $t for ${t_secs}s"
  status=0
  "$bin/$t" -max_total_time="$t_secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/$t/found/" "$work/$t/new" "fuzz/corpus/$t" >"$work/$t.log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' "$work/$t.log" || true
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log")
  summary+=("$(printf '%-12s %10s runs %8s exec/s' "$t" "${runs:-?}" "${rate:-?}")")
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$work/$t.log"
    echo "FAIL: fuzz target $t found a failing input (exit $status)"
    mkdir -p "fuzz/artifacts/$t"
    for found in "$work/$t"/found/*; do
      [ -e "$found" ] || continue
      f="fuzz/artifacts/$t/$(basename "$found")"
      cp "$found" "$f"
      echo "reproducer: $f ($(wc -c <"$f") bytes); replay with: $bin/$t $f"
      od -An -tx1 -v "$f" | head -n 256
      [ "$(wc -c <"$f")" -le 4096 ] || echo "(the first 4096 bytes)"
    done
    failed+=("$t")
  fi
done

echo "== fuzz summary (build ${built}s, whole check $((SECONDS - began))s)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAIL: fuzz targets with findings: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran (${secs}s each, mirror_compare at most 20s) without a finding"
