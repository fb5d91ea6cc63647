#!/usr/bin/env python3
"""The cost curve: switchyard side by side with nginx and HAProxy, cell by cell.

Each cell is a kind of traffic (below). For each cell and round, every peer
is started afresh (order alternating between rounds) in front of one
bench_upstream pinned with it on --server-cpu, and measured with the load
generator on --client-cpu:

1. throughput: a closed-loop run of --duration seconds (after a 1 s warm-up
   run): requests/s, and requests per second of the proxy's CPU time
   (user + system of all its processes, from /proc), the figure that does
   not depend on what the upstream and the load generator leave it;
2. latency: a run at a fixed rate, --rate-share (default 0.5) of the
   slowest peer's median throughput in that cell, the same rate for every
   peer: p50, p99, p99.9 from h2load's per-request log;
3. peak RSS (VmHWM) over the peer's life in that cell.

Medians over rounds; each cell's line "switchyard / better peer" divides by
the better of nginx and HAProxy for that figure. The cell `idle` is
idle_conns.py's: N idle keep-alive connections, memory per connection, then
the same closed-loop and fixed-rate runs on 64 other connections.

Cells (--cells, comma-separated; default all):
  h1-64      64 B responses, 64 kept-alive HTTP/1.1 connections
  h1-16k     16 KiB responses
  h1-1m      1 MiB responses, 16 connections
  upload-1m  1 MiB request bodies (POST), 64 B answers, 16 connections
  tls        TLS termination, 64 kept-alive HTTP/1.1 connections
  tls-new    a new TLS handshake for every request (wrk, Connection: close):
             handshakes per CPU-second; latency p50/p99 from wrk
  h2         HTTP/2 from the client (h2c): 16 connections x 32 streams
  grpc       gRPC unary calls over h2c to an h2 upstream: 16 x 32
  slow       an upstream that takes 20 ms, 1000 concurrent clients
  idle       --idle-conns idle connections next to 64 busy ones
  switch     64 B responses, 64 connections, while all traffic moves between
             two upstreams every 100 ms and the configuration is reloaded
             every second (peers.Peer.switch: each peer by its own means)

A request that fails (h2load's "failed", wrk's socket errors and non-2xx)
is counted in the column "failed" (throughput and latency runs together).

Usage: benches/compare/matrix.py [--cells LIST] [--rounds N] [--duration S]
           [--quick] [--readme] [--json FILE] [--idle-conns N]
--readme rewrites the results block of benches/compare/README.md and
benches/compare/matrix.png. Needs nginx, haproxy, h2load, wrk, openssl, and
target/release/{switchyard,examples/bench_upstream}.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from peers import HOST, REPO, Peer, cpu_seconds, find_bin, pin, start_upstream, status_kb, stop_upstream  # noqa: E402
import chart  # noqa: E402

CELLS = {
    "h1-64": {"body": 64, "conns": 64},
    "h1-16k": {"body": 16384, "conns": 64},
    "h1-1m": {"body": 1 << 20, "conns": 16},
    "upload-1m": {"body": 64, "upload": 1 << 20, "conns": 16},
    "tls": {"body": 64, "tls": True, "conns": 64},
    "tls-new": {"body": 64, "tls": True, "new_conn": True, "conns": 16},
    "h2": {"body": 64, "h2c": True, "conns": 16, "streams": 32},
    "grpc": {"body": 64, "grpc": True, "conns": 16, "streams": 32},
    "slow": {"body": 64, "delay_ms": 20, "conns": 1000},
    "idle": {"body": 64, "conns": 64, "idle": True},
    "switch": {"body": 64, "conns": 64, "switch": True},
}
PEERS = ["nginx", "haproxy", "switchyard"]


def log(msg):
    print(f"[matrix {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def url(peer, cell, path="/"):
    scheme = "https" if cell.get("tls") else "http"
    return f"{scheme}://{HOST}:{peer.port}{path}"


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def h2load(peer, cell, args, duration, rate=None, logfile=None):
    """Run h2load; (2xx responses, [latencies in ms] if logfile)."""
    conns = cell["conns"]
    cmd = pin(args.client_cpu) + [find_bin("h2load"), "-c", str(conns),
           "-m", str(cell.get("streams", 1)), "-D", str(duration), "-t", "1"]
    if not (cell.get("h2c") or cell.get("grpc")):
        cmd.append("--h1")
    if rate:
        cmd += ["--rps", f"{max(rate / conns, 0.1):.2f}"]
    if cell.get("upload"):
        cmd += ["-d", data_file(args.work, "upload", cell["upload"])]
    if cell.get("grpc"):
        cmd += ["-d", data_file(args.work, "grpc", 64, grpc=True),
                "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if logfile:
        cmd += ["--log-file", logfile]
    path = "/bench.Bench/Call" if cell.get("grpc") else "/"
    out = run_bounded(cmd + [url(peer, cell, path)], duration)
    m = re.search(r"status codes: (\d+) 2xx", out)
    ok = int(m.group(1)) if m else 0
    m = re.search(r"requests: .* (\d+) failed", out)
    h2load.failed = int(m.group(1)) if m else 0
    lat = []
    if logfile and os.path.exists(logfile):
        with open(logfile) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) == 3 and parts[1].startswith("2"):
                    lat.append(int(parts[2]) / 1000)
        os.unlink(logfile)
    return ok, sorted(lat)


def run_bounded(cmd, duration):
    """The load generator's output; a run that outlives its duration by 30 s
    (a client stuck on connections that never answer) is killed and counts
    as no requests, so one bad cell cannot stall the matrix."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    except subprocess.TimeoutExpired:
        log(f"{os.path.basename(next(c for c in cmd if c.startswith('/')))} still running {duration + 30} s after its start: killed")
        return ""


def wrk(peer, cell, args, duration):
    """wrk with Connection: close (a handshake per request): (2xx, p50, p99)."""
    cmd = pin(args.client_cpu) + [find_bin("wrk"), "-t1", f"-c{cell['conns']}",
           f"-d{duration}s", "--latency", "-H", "Connection: close", url(peer, cell)]
    out = run_bounded(cmd, duration)

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        v = float(m.group(1))
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]

    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    ok = (int(total.group(1)) if total else 0) - (int(bad.group(1)) if bad else 0)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    wrk.failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return ok, ms("50"), ms("99")


def data_file(work, name, size, grpc=False):
    path = os.path.join(work, f"{name}.bin")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            if grpc:
                f.write(b"\0" + size.to_bytes(4, "big"))
            f.write(b"x" * size)
    return path


class Switcher:
    """For the cell `switch`: in a thread, move all traffic to the other
    pool every 100 ms and reload the configuration every 10th time (once a
    second), on a fixed schedule, until stopped. Counts the peer's refusals."""

    def __init__(self, peer):
        self.peer, self.calls, self.refused = peer, 0, 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        start = time.monotonic()
        n = 0
        while not self.stop_event.wait(max(0.0, start + (n + 1) * 0.1 - time.monotonic())):
            n += 1
            self.calls += 1
            if not self.peer.switch(reload=n % 10 == 0):
                self.refused += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()


class NoSwitch:
    calls = refused = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def switching(peer, cell):
    return Switcher(peer) if cell.get("switch") else NoSwitch()


def throughput(peer, cell, args):
    """Closed loop: requests/s and requests per CPU-second of the proxy."""
    if cell.get("new_conn"):
        wrk(peer, cell, args, 1)
        before = cpu_seconds(peer.pids())
        t0 = time.monotonic()
        ok, p50, p99 = wrk(peer, cell, args, args.duration)
        failed = wrk.failed
    else:
        h2load(peer, cell, args, 1)
        before = cpu_seconds(peer.pids())
        t0 = time.monotonic()
        with switching(peer, cell) as sw:
            ok, _ = h2load(peer, cell, args, args.duration)
        failed = h2load.failed
        p50 = p99 = None
    wall = time.monotonic() - t0
    cpu = cpu_seconds(peer.pids()) - before
    res = {"ok": ok, "rps": ok / wall, "cpu_s": cpu, "per_cpu_s": ok / cpu if cpu > 0 else 0,
           "errors": failed}
    if cell.get("switch"):
        res.update({"switches": sw.calls, "refused": sw.refused})
    if cell.get("new_conn"):
        res.update({"p50_ms": p50, "p99_ms": p99, "p999_ms": None})
    return res


def latency(peer, cell, args, rate):
    logfile = os.path.join(args.work, f"lat-{peer.name}.log")
    with switching(peer, cell) as sw:
        ok, lat = h2load(peer, cell, args, args.duration, rate=rate, logfile=logfile)
    offered = rate * args.duration
    return {"lat_ok": ok, "lat_errors": h2load.failed, "lat_refused": sw.refused,
            "lat_answered": min(1.0, ok / offered) if offered else None,
            "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
            "p999_ms": percentile(lat, 0.999)}


def run_cell(name, args):
    cell = dict(CELLS[name])
    green_port = args.port_base + 2 if cell.get("switch") else None
    upstream = start_upstream(args.upstream_bin, args.port_base + 1, args.server_cpu,
                              body_size=cell["body"], delay_ms=cell.get("delay_ms", 0),
                              h2=bool(cell.get("grpc")), green_port=green_port)
    upstream_addr = f"{HOST}:{args.port_base + 1}"
    if green_port:
        cell["green"] = f"{HOST}:{green_port}"
    rows = []
    try:
        if cell.get("idle"):
            import idle_conns
            cell["conns_idle"] = args.idle_conns
        for r in range(args.rounds):
            order = PEERS if r % 2 == 0 else PEERS[::-1]
            for p in order:
                peer_cell = dict(cell, conns=cell["conns"] + cell.get("conns_idle", 0))
                peer = Peer(p, args.port_base, args.work, upstream_addr, peer_cell,
                            args.server_cpu, args.switchyard_bin)
                if not peer.start():
                    rows.append({"cell": name, "peer": p, "round": r + 1, "failed": True})
                    continue
                try:
                    row = {"cell": name, "peer": p, "round": r + 1}
                    socks = []
                    if cell.get("idle"):
                        row["bytes_per_conn"], socks = idle_conns.open_idle(peer, args.idle_conns, args.settle)
                    row.update(throughput(peer, cell, args))
                    row["hwm_kb"] = status_kb(peer.pids(), "VmHWM")
                    rows.append(row)
                    log(f"{name} {p} round {r + 1}: {row['rps']:.0f} req/s, {row['per_cpu_s']:.0f} req/CPU-s")
                    for s in socks:
                        s.close()
                finally:
                    peer.stop()
        # The fixed rate is known once every peer's throughput is: the
        # latency runs start each peer again.
        if not cell.get("new_conn"):
            weakest = min(statistics.median(x["rps"] for x in rows if x["peer"] == p and not x.get("failed"))
                          for p in PEERS if any(x["peer"] == p and not x.get("failed") for x in rows))
            rate = weakest * args.rate_share
            for r in range(args.rounds):
                order = PEERS if r % 2 == 0 else PEERS[::-1]
                for p in order:
                    row = next(x for x in rows if x["peer"] == p and x["round"] == r + 1)
                    if row.get("failed"):
                        continue
                    peer_cell = dict(cell, conns=cell["conns"] + cell.get("conns_idle", 0))
                    peer = Peer(p, args.port_base, args.work, upstream_addr, peer_cell,
                                args.server_cpu, args.switchyard_bin)
                    if not peer.start():
                        continue
                    try:
                        socks = []
                        if cell.get("idle"):
                            _, socks = idle_conns.open_idle(peer, args.idle_conns, 0)
                        h2load(peer, cell, args, 1, rate=rate)
                        row.update(latency(peer, cell, args, rate))
                        row["rate"] = rate
                        log(f"{name} {p} latency round {r + 1} at {rate:.0f} req/s: p99 {fmt(row['p99_ms'], '.2f')} ms")
                        for s in socks:
                            s.close()
                    finally:
                        peer.stop()
    finally:
        stop_upstream(upstream)
    return rows


def median(rows, key):
    vals = [x[key] for x in rows if x.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(rows):
    """{cell: {peer: {figure: median}}}."""
    out = {}
    for x in rows:
        out.setdefault(x["cell"], {}).setdefault(x["peer"], []).append(x)
    keys = ["rps", "per_cpu_s", "p50_ms", "p99_ms", "p999_ms", "hwm_kb", "bytes_per_conn", "lat_answered"]
    res = {c: {p: {k: median(rs, k) for k in keys} for p, rs in peers.items()}
           for c, peers in out.items()}
    for c, peers in out.items():
        for p, rs in peers.items():
            res[c][p]["errors"] = sum(x.get("errors", 0) + x.get("lat_errors", 0) for x in rs)
            res[c][p]["refused"] = sum(x.get("refused", 0) + x.get("lat_refused", 0) for x in rs)
    return res


# A peer whose latency run answered less than this share of the requests
# offered at the fixed rate is left out of the latency ratios: its
# percentiles are over the requests it served before it stopped keeping up
# (in the cell `switch`, nginx's and HAProxy's reloads close the load
# generator's kept-alive connections, which h2load does not reopen).
ANSWERED_MIN = 0.9
LATENCY = ("p50_ms", "p99_ms", "p999_ms")


def ratios(cell_sum):
    """switchyard / the better peer, per figure (None when not measured)."""
    sy = cell_sum.get("switchyard", {})
    others = [v for p, v in cell_sum.items() if p != "switchyard"]
    res = {}
    for k, higher_better in [("per_cpu_s", True), ("rps", True), ("p50_ms", False), ("p99_ms", False),
                             ("p999_ms", False), ("hwm_kb", False), ("bytes_per_conn", False)]:
        vals = [o[k] for o in others if o.get(k)
                and (k not in LATENCY or o.get("lat_answered") is None or o["lat_answered"] >= ANSWERED_MIN)]
        if sy.get(k) is None or not vals:
            res[k] = None
            continue
        best = max(vals) if higher_better else min(vals)
        res[k] = sy[k] / best if best else None
    return res


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(summary, cells):
    lines = ["| cell | peer | req/s | req/CPU-s | p50 ms | p99 ms | p99.9 ms | answered | peak RSS MiB | B/idle conn | failed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        if c not in summary:
            continue
        for p in PEERS:
            v = summary[c].get(p)
            if not v:
                continue
            lines.append(f"| {c} | {p} | {fmt(v['rps'], '.0f')} | {fmt(v['per_cpu_s'], '.0f')} | "
                         f"{fmt(v['p50_ms'], '.2f')} | {fmt(v['p99_ms'], '.2f')} | {fmt(v['p999_ms'], '.2f')} | "
                         f"{fmt(v.get('lat_answered') and 100 * v['lat_answered'], '.0f')}{'' if v.get('lat_answered') is None else ' %'} | "
                         f"{fmt(v['hwm_kb'] and v['hwm_kb'] / 1024, '.1f')} | {fmt(v['bytes_per_conn'], '.0f')} | "
                         f"{v.get('errors', 0)}{' (' + str(v['refused']) + ' switches refused)' if v.get('refused') else ''} |")
        r = ratios(summary[c])
        lines.append(f"| **{c}** | **switchyard / better peer** | x{fmt(r['rps'], '.2f')} | "
                     f"**x{fmt(r['per_cpu_s'], '.2f')}** | x{fmt(r['p50_ms'], '.2f')} | x{fmt(r['p99_ms'], '.2f')} | "
                     f"x{fmt(r['p999_ms'], '.2f')} | | x{fmt(r['hwm_kb'], '.2f')} | x{fmt(r['bytes_per_conn'], '.2f')} | |")
    return "\n".join(lines)


def write_readme(text, image, readme):
    with open(readme) as f:
        doc = f.read()
    start, end = "<!-- matrix:start -->", "<!-- matrix:end -->"
    block = f"{start}\n{text}\n{end}"
    if start in doc:
        doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc += f"\n## The cost curve (matrix.py)\n\n{block}\n"
    with open(readme, "w") as f:
        f.write(doc)
    with open(os.path.join(os.path.dirname(readme), "matrix.png"), "wb") as f:
        f.write(image)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, 2000 idle connections")
    ap.add_argument("--rate-share", type=float, default=0.5)
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=12.0)
    ap.add_argument("--readme", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--switchyard-bin", default=os.path.join(REPO, "target/release/switchyard"))
    ap.add_argument("--upstream-bin", default=os.path.join(REPO, "target/release/examples/bench_upstream"))
    ap.add_argument("--port-base", type=int, default=19100)
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--rt", type=int, metavar="PRIO",
                    help="run peers, upstream and load generator under SCHED_FIFO at PRIO (chrt), "
                         "so that other work on a shared machine cannot preempt them")
    args = ap.parse_args()
    peers.RT_PRIORITY = args.rt
    if args.quick:
        args.rounds, args.duration, args.idle_conns = 1, 2, 2000
    cells = [c for c in args.cells.split(",") if c]
    for c in cells:
        if c not in CELLS:
            sys.exit(f"matrix: unknown cell {c} (known: {', '.join(CELLS)})")
    for b in (args.switchyard_bin, args.upstream_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"matrix: {b} missing (cargo build --release --bin switchyard --example bench_upstream)")
    import idle_conns
    idle_conns.raise_fd_limit(args.idle_conns + 2048)
    args.work = tempfile.mkdtemp(prefix="matrix-")
    load = os.getloadavg()[0]
    log(f"cells {', '.join(cells)}; {args.rounds} round(s) of {args.duration} s; load average {load:.1f}")
    rows = []
    for c in cells:
        rows += run_cell(c, args)
    summary = summarize(rows)
    text = table(summary, cells)
    meta = (f"\n\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} round(s) of "
            f"{args.duration} s per cell and peer, load average {load:.1f} at the start "
            f"(`benches/compare/matrix.py --cells {','.join(cells)} --rounds {args.rounds} "
            f"--duration {args.duration} --settle {args.settle:g} --idle-conns {args.idle_conns}"
            f"{f' --rt {args.rt}' if args.rt else ''}`).")
    print(text + meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)
    if args.readme:
        image = chart.png({c: ratios(summary[c]) for c in cells if c in summary})
        write_readme(text + meta + "\n\n![switchyard / the better peer, per cell](matrix.png)",
                     image, os.path.join(REPO, "benches/compare/README.md"))
    failed = [f"{x['cell']}/{x['peer']}" for x in rows if x.get("failed")]
    if failed:
        print(f"matrix: not measured: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
