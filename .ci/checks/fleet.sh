#!/usr/bin/env bash
# Fleet mode against real etcd (issue 18): the `fleet` feature's lints, its
# unit tests, and tests/fleet, which start Debian's etcd on loopback ports.
# Installs etcd-server, protobuf-compiler and libprotobuf-dev (etcd-client's
# build script compiles etcd's protos) when missing; fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib.sh
source .ci/lib.sh

need_tool etcd etcd-server
need_tool protoc protobuf-compiler
# libprotobuf-dev has no command: look for the protos it ships.
if [ ! -f /usr/include/google/protobuf/descriptor.proto ]; then
  echo "libprotobuf-dev missing: installing it"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libprotobuf-dev >/dev/null
fi
[ -f /usr/include/google/protobuf/descriptor.proto ] || { echo "FAIL: libprotobuf-dev is not available"; exit 1; }
etcd --version | sed -n 1p  # sed reads it all: head would cut etcd off (SIGPIPE under pipefail)

start=$SECONDS
cargo clippy --features fleet --all-targets -- -D warnings
cargo test --features fleet --lib fleet
cargo test --features fleet --test fleet
# The dashboard of a fleet in a browser: the members, and a hold seen on
# every member's page (the fleet binary is built already).
bash .ci/checks/dashboard.sh --fleet
echo "fleet: passed in $((SECONDS - start)) s"
