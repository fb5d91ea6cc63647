#!/usr/bin/env python3
"""What mirroring costs (issue 21): the same switchyard binary without and
with `mirror: {percent: 10}`, side by side in one run.

Blue and green are two listeners of one bench_upstream process (64-byte
answers; both named `app`, so green answers as blue does and every copy is
compared and matches), pinned with the proxy on --server-cpu; wrk runs on
--client-cpu. Traffic is all on blue; copies go to green. Variants:

  off        no mirror section
  mirror10   mirror: {percent: 10} (the defaults otherwise: GET and HEAD,
             compared, learn_noise)
  hang10     (--hang) mirror: {percent: 10} to a green that never answers
             (a second bench_upstream with --delay-ms 600000; its /health
             answers, so green stays healthy): copies fill max_inflight
             (256), the rest are dropped
  off2       (--aa) the same as off: off2 / off is what noise alone does
             to each figure on this machine, the yardstick for the others

Each round starts every variant afresh (order alternating between rounds)
and measures:
1. closed loop: wrk -t1 -c64 for --duration s after a 1 s warm-up:
   requests/s, requests per CPU-second of the proxy (user + system from
   /proc), wrk's p50/p99;
2. fixed rate: h2load --h1 at --rate-share of the first round's `off`
   throughput, the same rate for every variant: p50/p99/p99.9 from
   h2load's per-request log;
3. the mirror counters from /metrics, to show the share copied.

It prints per-round paired ratios (variant / off of the same round) and
their median, which is the figure: the machine may be shared, and only a
ratio measured side by side means anything.

Usage: benches/compare/mirror.py [--rounds N] [--duration S] [--hang] [--aa]
           [--switchyard-bin PATH] [--upstream-bin PATH] [--json FILE]
Needs wrk, h2load, taskset and target/release/{switchyard,
examples/bench_upstream} (cargo build --release --bin switchyard
--example bench_upstream).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import HOST, REPO, cpu_seconds, find_bin, request_ok, stop_upstream  # noqa: E402
from matrix import percentile  # noqa: E402

MIRROR = {
    "off": "",
    "off2": "",
    "mirror10": "mirror: { percent: 10 }\n",
    "hang10": "mirror: { percent: 10 }\n",
}


def log(msg):
    print(f"[mirror {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start_upstreams(args):
    """The upstream of blue and green, and one that hangs for hang10."""
    base = args.port_base
    procs = {}
    for name, listen, extra in [
        ("app", [f"app={HOST}:{base + 1}", f"app={HOST}:{base + 2}"], []),
        ("hang", [f"app={HOST}:{base + 3}"], ["--delay-ms", "600000"]),
    ]:
        cmd = ["taskset", "-c", args.server_cpu, args.upstream_bin, "--body-size", "64"] + extra
        for spec in listen:
            cmd += ["--listen", spec]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for port in (base + 1, base + 2, base + 3):
        wait(lambda p=port: request_ok(p, path="/health"), f"bench_upstream on {port}")
    return procs


def wait(check, what, deadline=10):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"mirror.py: {what} not ready")


class Proxy:
    def __init__(self, variant, args):
        self.variant, self.args = variant, args
        base = args.port_base
        self.port, self.admin = base + 82, base + 901
        green = base + 3 if variant == "hang10" else base + 2
        self.conf = os.path.join(args.work, f"{variant}.yaml")
        with open(self.conf, "w") as f:
            f.write(f"""listeners:
  - bind: "{HOST}:{self.port}"
admin:
  bind: "{HOST}:{self.admin}"
pools:
  blue:
    endpoints: ["{HOST}:{base + 1}"]
  green:
    endpoints: ["{HOST}:{green}"]
health_check:
  path: /health
  interval: 2s
timeouts:
  client_header: 300s
state_file: null
log: {{ level: warn }}
{MIRROR[variant]}""")

    def start(self):
        self.proc = subprocess.Popen(["taskset", "-c", self.args.server_cpu, self.args.switchyard_bin,
                                      "run", "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: request_ok(self.port), f"switchyard ({self.variant})")
        # Green must be healthy before copies are sent to it.
        wait(lambda: b'"green"' in self.api("/api/v1/status") and self.green_healthy(), "green healthy")

    def api(self, path):
        with urllib.request.urlopen(f"http://{HOST}:{self.admin}{path}", timeout=2) as r:
            return r.read()

    def green_healthy(self):
        st = json.loads(self.api("/api/v1/status"))
        eps = st["pools"]["green"]["endpoints"]
        return all(e.get("state") == "healthy" for e in eps)

    def mirrored(self):
        text = self.api("/metrics").decode()
        out = {}
        for m in re.finditer(r'^switchyard_mirror_requests_total\{result="(\w+)"\} (\d+)', text, re.M):
            out[m.group(1)] = int(m.group(2))
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(args, port, duration):
    cmd = ["taskset", "-c", args.client_cpu, find_bin("wrk"), "-t1", f"-c{args.conns}",
           f"-d{duration}s", "--latency", f"http://{HOST}:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return None if not m else float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]

    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    ok = (int(total.group(1)) if total else 0) - (int(bad.group(1)) if bad else 0)
    return ok, ms("50"), ms("99")


def fixed_rate(args, port, rate):
    logfile = os.path.join(args.work, "lat.log")
    cmd = ["taskset", "-c", args.client_cpu, find_bin("h2load"), "--h1", "-c", str(args.conns), "-t", "1",
           "-D", str(args.duration), "--rps", f"{rate / args.conns:.2f}", "--log-file", logfile,
           f"http://{HOST}:{port}/"]
    subprocess.run(cmd, capture_output=True, text=True)
    lat = []
    with open(logfile) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) == 3 and parts[1].startswith("2"):
                lat.append(int(parts[2]) / 1000)
    os.unlink(logfile)
    lat.sort()
    return {"rate_ok": len(lat), "fr_p50": percentile(lat, 0.5), "fr_p99": percentile(lat, 0.99),
            "fr_p999": percentile(lat, 0.999)}


def measure(variant, args, rate):
    p = Proxy(variant, args)
    p.start()
    try:
        wrk(args, p.port, 1)
        before, seen = cpu_seconds([p.proc.pid]), p.mirrored()
        t0 = time.monotonic()
        ok, p50, p99 = wrk(args, p.port, args.duration)
        wall = time.monotonic() - t0
        cpu = cpu_seconds([p.proc.pid]) - before
        after = p.mirrored()
        copies = {k: after.get(k, 0) - seen.get(k, 0) for k in after}
        row = {"variant": variant, "ok": ok, "rps": ok / wall, "cpu_s": cpu,
               "per_cpu_s": ok / cpu if cpu else 0, "p50": p50, "p99": p99, "copies": copies}
        if rate:
            row.update(fixed_rate(args, p.port, rate))
        return row
    finally:
        p.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--rate-share", type=float, default=0.5)
    ap.add_argument("--hang", action="store_true")
    ap.add_argument("--aa", action="store_true", help="also off2, the same as off: the noise")
    ap.add_argument("--json")
    ap.add_argument("--switchyard-bin", default=os.path.join(REPO, "target/release/switchyard"))
    ap.add_argument("--upstream-bin", default=os.path.join(REPO, "target/release/examples/bench_upstream"))
    ap.add_argument("--port-base", type=int, default=19300)
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--server-cpu", default="1")
    args = ap.parse_args()
    for b in (args.switchyard_bin, args.upstream_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"mirror.py: {b} missing (cargo build --release --bin switchyard --example bench_upstream)")
    args.work = tempfile.mkdtemp(prefix="mirror-bench-")
    variants = ["off", "mirror10"] + (["hang10"] if args.hang else []) + (["off2"] if args.aa else [])
    load = os.getloadavg()[0]
    log(f"{args.rounds} round(s) of {args.duration} s, variants {', '.join(variants)}; load average {load:.1f}")
    ups = start_upstreams(args)
    rows, rate = [], None
    try:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            if rate is None:
                # The fixed rate comes from a first closed-loop run of `off`.
                first = measure("off", args, None)
                rate = first["rps"] * args.rate_share
                log(f"fixed rate {rate:.0f} req/s ({args.rate_share} of off's {first['rps']:.0f})")
            for v in order:
                row = measure(v, args, rate)
                row["round"] = r + 1
                rows.append(row)
                log(f"round {r + 1} {v}: {row['rps']:.0f} req/s, {row['per_cpu_s']:.0f} req/CPU-s, "
                    f"wrk p99 {row['p99']} ms, fixed-rate p99 {row['fr_p99']:.2f} ms, copies {row['copies']}")
    finally:
        for p in ups.values():
            stop_upstream(p)
    report(rows, variants, args, load, rate)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "rate": rate}, f, indent=1)


def report(rows, variants, args, load, rate):
    keys = [("per_cpu_s", "req/CPU-s"), ("rps", "req/s"), ("p50", "wrk p50 ms"), ("p99", "wrk p99 ms"),
            ("fr_p50", "fixed-rate p50 ms"), ("fr_p99", "fixed-rate p99 ms"), ("fr_p999", "fixed-rate p99.9 ms")]
    by = {(x["round"], x["variant"]): x for x in rows}
    print(f"| figure | {' | '.join(variants)} | " + " | ".join(f"{v} / off" for v in variants[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(variants) - 1))
    for k, label in keys:
        med = [statistics.median(x[k] for x in rows if x["variant"] == v and x.get(k) is not None)
               for v in variants]
        paired = []
        for v in variants[1:]:
            ratios = sorted(by[(r, v)][k] / by[(r, "off")][k] for r in range(1, args.rounds + 1)
                            if by[(r, v)].get(k) and by[(r, "off")].get(k))
            paired.append(f"x{statistics.median(ratios):.3f} ({ratios[0]:.2f}-{ratios[-1]:.2f})")
        print(f"| {label} | " + " | ".join(f"{m:.2f}" if m < 100 else f"{m:.0f}" for m in med) + " | "
              + " | ".join(paired) + " |")
    for v in variants[1:]:
        c = [x["copies"] for x in rows if x["variant"] == v]
        total = sum(sum(x.values()) for x in c)
        ok = sum(x["ok"] for x in rows if x["variant"] == v)
        res = {k: sum(x.get(k, 0) for x in c) for k in ("match", "mismatch", "error", "dropped")}
        print(f"\n{v}: {total} copies of {ok} closed-loop requests ({100 * total / max(ok, 1):.1f} %): {res}")
    print(f"\nMedians over {args.rounds} rounds; `variant / off` is the median of the per-round ratios "
          f"(range in brackets). Fixed rate {rate:.0f} req/s. Load average {load:.1f} at the start. "
          f"`benches/compare/mirror.py --rounds {args.rounds} --duration {args.duration}"
          f"{' --hang' if args.hang else ''}{' --aa' if args.aa else ''}`")


if __name__ == "__main__":
    main()
