#!/usr/bin/env python3
"""The request-path cost of fleet mode (issue 18's third figure).

One release binary built with the `fleet` feature runs twice side by side,
against the same bench upstream: once with a config without a `fleet`
section (a single proxy), once with one (a fleet of one member on a real
local etcd, its lease kept alive and its member value published while it
serves). wrk measures each on loopback in alternating rounds (the order
swapped every round, so neither always runs on a warmer machine); the
figure is the median requests/s of each, their ratio, and the median wrk
p99. The request path never touches etcd, so the ratio should be 1 within
the rounds' spread.

Build first (LTO off keeps it affordable on a small machine):

    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \\
        cargo build --release --features fleet --bin switchyard --example bench_upstream
    benches/compare/fleet_cost.py --rounds 3 --duration 5

Bounded in time: every child is killed on exit, each wrk run has a hard
timeout, and the whole run stops after --budget seconds. Pinning (with 2
cores or more): wrk on core 0, the proxy and the upstream on core 1, etcd
unpinned (it only sees the lease's keep-alives). Only 127.0.0.1 is used.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_http(url, within, what, proc=None):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{what} exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return r.read().decode()
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{what} did not answer {url} within {within} s")


def pin(core):
    if (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def run_wrk(url, seconds, connections, timeout):
    out = subprocess.run(
        pin(0) + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, timeout=timeout).stdout
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return rps, p99, errors


def config(blue, green, proxy, admin, fleet):
    yaml = (
        f'listeners:\n  - bind: "{HOST}:{proxy}"\n'
        f'admin:\n  bind: "{HOST}:{admin}"\n'
        f'pools:\n  blue:\n    endpoints: ["{HOST}:{blue}"]\n'
        f'  green:\n    endpoints: ["{HOST}:{green}"]\n'
        "state_file: null\n"
    )
    if fleet:
        yaml += (
            f'fleet:\n  etcd:\n    endpoints: ["http://{HOST}:{fleet}"]\n'
            '    prefix: "/switchyard/fleet-cost/"\n'
            '  member_id: "bench"\n  member_ttl: 5s\n  write_fence: 3s\n'
        )
    return yaml


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/switchyard"))
    ap.add_argument("--upstream", default=os.path.join(REPO, "target/release/examples/bench_upstream"))
    ap.add_argument("--etcd", default=os.environ.get("ETCD_BIN", "/usr/bin/etcd"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds of each measured wrk run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of the unmeasured run before each")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--budget", type=int, default=300, help="stop the whole run after this many seconds")
    args = ap.parse_args()
    for path in (args.bin, args.upstream, args.etcd):
        if not os.path.exists(path):
            sys.exit(f"missing {path} (see the build command in this script's help)")
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(f"over the budget of {args.budget} s"))
    signal.alarm(args.budget)

    work = tempfile.TemporaryDirectory(prefix="fleet-cost-")
    procs = []

    def start(cmd, log, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work.name, log), "w"),
                             stdin=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    try:
        blue, green = free_port(), free_port()
        up = start(pin(1) + [args.upstream, "--listen", f"blue-1={HOST}:{blue}",
                             "--listen", f"green-1={HOST}:{green}", "--body-size", "64"], "upstream.log")
        wait_http(f"http://{HOST}:{blue}/health", 10, "bench_upstream", up)

        client, peer, metrics = free_port(), free_port(), free_port()
        etcd = start([args.etcd, "--name", "n0", "--data-dir", os.path.join(work.name, "etcd"),
                      "--listen-client-urls", f"http://{HOST}:{client}",
                      "--advertise-client-urls", f"http://{HOST}:{client}",
                      "--listen-peer-urls", f"http://{HOST}:{peer}",
                      "--initial-advertise-peer-urls", f"http://{HOST}:{peer}",
                      "--initial-cluster", f"n0=http://{HOST}:{peer}",
                      "--listen-metrics-urls", f"http://{HOST}:{metrics}",
                      "--log-level", "warn", "--logger", "zap"], "etcd.log")
        wait_http(f"http://{HOST}:{metrics}/health", 30, "etcd", etcd)

        proxies = {}
        for name, fleet in (("single", None), ("fleet", client)):
            proxy, admin = free_port(), free_port()
            path = os.path.join(work.name, f"{name}.yaml")
            with open(path, "w") as f:
                f.write(config(blue, green, proxy, admin, fleet))
            p = start(pin(1) + [args.bin, "run", "-c", path], f"{name}.log",
                      env=dict(os.environ, RUST_LOG="warn"))
            wait_http(f"http://{HOST}:{admin}/healthz", 20, f"switchyard ({name})", p)
            proxies[name] = (f"http://{HOST}:{proxy}/bench", f"http://{HOST}:{admin}/api/v1/status")
        # The fleet member must be in touch (its lease held) before it counts.
        end = time.monotonic() + 20
        while '"connected":true' not in wait_http(proxies["fleet"][1], 5, "fleet status").replace(" ", ""):
            if time.monotonic() > end:
                sys.exit("the fleet member never got in touch with etcd")
            time.sleep(0.1)

        results = {"single": [], "fleet": []}
        for r in range(args.rounds):
            order = ["single", "fleet"] if r % 2 == 0 else ["fleet", "single"]
            for name in order:
                url = proxies[name][0]
                limit = args.duration + 30
                run_wrk(url, args.warmup, args.connections, limit)
                rps, p99, errors = run_wrk(url, args.duration, args.connections, limit)
                if errors:
                    sys.exit(f"round {r + 1} {name}: {errors} errors")
                results[name].append((rps, p99))
                print(f"round {r + 1} {name:6} {rps:9.0f} req/s  p99 {p99:6.2f} ms", flush=True)

        med = {n: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
               for n, v in results.items()}
        spread = {n: (min(x[0] for x in v), max(x[0] for x in v)) for n, v in results.items()}
        for n in ("single", "fleet"):
            print(f"median {n:6} {med[n][0]:9.0f} req/s (rounds {spread[n][0]:.0f}-{spread[n][1]:.0f})"
                  f"  p99 {med[n][1]:.2f} ms")
        print(f"fleet/single requests/s: {med['fleet'][0] / med['single'][0]:.3f}"
              f"  p99: {med['fleet'][1] / med['single'][1]:.3f}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        work.cleanup()


if __name__ == "__main__":
    main()
