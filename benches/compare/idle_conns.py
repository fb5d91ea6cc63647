#!/usr/bin/env python3
"""Memory per idle keep-alive client connection: switchyard, nginx and HAProxy
side by side, in one run, measured from outside.

For each peer in turn (order alternating over --rounds): start it in front of
one bench_upstream instance, warm it up, read its resident set size (VmRSS,
summed over its processes), open N client connections that each send one
GET and read the answer, then stay open and silent; wait --settle seconds
(switchyard parks an idle HTTP/1 connection after one second, src/proxy/park.rs),
read the RSS again and check every connection is still open. The cost of
an idle connection is (after - before) / N. With --active C, wrk then runs C
busy connections for --active-duration seconds next to the idle ones and
its p50/p99 are reported (closed loop: latency at saturation, pinned like
run.sh: wrk on core 0, the proxy and the upstream on core 1).

Kernel memory (socket buffers) is not in the RSS of any peer, and is the same
for all: the figure is what the proxy's own process keeps per connection.

Usage: benches/compare/idle_conns.py [--conns N] [--rounds R] [--settle S]
           [--peers nginx,haproxy,switchyard] [--active C] [--active-duration S]
           [--switchyard-bin PATH] [--upstream-bin PATH] [--port-base N] [--json FILE]
Needs Linux, nginx and haproxy on PATH (or /usr/sbin), wrk for --active,
target/release/switchyard and target/release/examples/bench_upstream
(`cargo build --release --bin switchyard --example bench_upstream`).
Runs as root to raise the file descriptor limit for 10,000 connections.
"""

import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import HOST, REPO, Peer, find_bin, start_upstream, status_kb, stop_upstream  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: app\r\n\r\n"


def log(msg):
    print(f"[idle_conns] {msg}", file=sys.stderr, flush=True)


def read_response(sock):
    """Read one response with a Content-Length body; return its status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(rest) < need:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        rest += chunk
    return int(head.split(b" ", 2)[1])


def still_open(sock):
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def warm_up(port):
    for _ in range(4):
        with socket.create_connection((HOST, port)) as s:
            for _ in range(50):
                s.sendall(REQUEST)
                read_response(s)


def wrk_active(port, args):
    cmd = ["taskset", "-c", args.client_cpu, find_bin("wrk"), "-t1", f"-c{args.active}",
           f"-d{args.active_duration}s", "--latency", f"http://{HOST}:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"rps": float(rps.group(1)) if rps else None, "p50_ms": ms("50"), "p99_ms": ms("99")}


def open_idle(peer, n, settle):
    """Open n connections that each get one answer and then stay silent;
    after `settle` seconds: (bytes of RSS per connection, the sockets)."""
    warm_up(peer.port)
    time.sleep(settle)
    before = status_kb(peer.pids(), "VmRSS")
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, peer.port))
        s.sendall(REQUEST)
        status = read_response(s)
        if status != 200:
            sys.exit(f"idle_conns: {peer.name} answered {status}")
        socks.append(s)
    time.sleep(settle)
    after = status_kb(peer.pids(), "VmRSS")
    return (after - before) * 1024 / n, socks


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard >= want else want, max(hard, want)))
        except (ValueError, OSError):
            sys.exit(f"need {want} file descriptors, have {soft} (run as root or open fewer)")


def measure(peer, args):
    if not peer.start():
        sys.exit(f"idle_conns: {peer.name} did not start")
    try:
        t0 = time.monotonic()
        per_conn, socks = open_idle(peer, args.conns, args.settle)
        result = {
            "peer": peer.name,
            "conns": args.conns,
            "open_after_settle": sum(still_open(s) for s in socks),
            "bytes_per_conn": per_conn,
            "seconds": round(time.monotonic() - t0, 2),
        }
        if args.active:
            result.update(wrk_active(peer.port, args))
        for s in socks:
            s.close()
        return result
    finally:
        peer.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--settle", type=float, default=12.0,
                    help="seconds to wait before each RSS reading (default 12: past jemalloc's 10 s decay)")
    ap.add_argument("--peers", default="nginx,haproxy,switchyard")
    ap.add_argument("--active", type=int, default=0,
                    help="busy wrk connections next to the idle ones (0: none)")
    ap.add_argument("--active-duration", type=int, default=5)
    ap.add_argument("--switchyard-bin", default=os.path.join(REPO, "target/release/switchyard"))
    ap.add_argument("--upstream-bin", default=os.path.join(REPO, "target/release/examples/bench_upstream"))
    ap.add_argument("--port-base", type=int, default=19000)
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    if args.conns < 1 or args.rounds < 1:
        sys.exit("idle_conns: --conns and --rounds must be positive")
    for b in (args.switchyard_bin, args.upstream_bin):
        if "switchyard" in args.peers and not os.access(b, os.X_OK):
            sys.exit(f"idle_conns: {b} missing (cargo build --release --bin switchyard --example bench_upstream)")
    raise_fd_limit(args.conns + 2048)

    work = tempfile.mkdtemp(prefix="idle-conns-")
    up_port = args.port_base + 1
    names = [p for p in args.peers.split(",") if p]
    for p in names:
        if p not in ("nginx", "haproxy", "switchyard"):
            sys.exit(f"idle_conns: unknown peer {p}")
    upstream = start_upstream(args.upstream_bin, up_port, args.server_cpu)
    cell = {"conns": args.conns}
    results = []
    try:
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                peer = Peer(name, args.port_base, work, f"{HOST}:{up_port}", cell,
                            args.server_cpu, args.switchyard_bin)
                res = measure(peer, args)
                res["round"] = r + 1
                log(json.dumps(res))
                results.append(res)
    finally:
        stop_upstream(upstream)

    best = {}
    for name in names:
        rows = [x for x in results if x["peer"] == name]
        best[name] = {
            "bytes_per_conn": statistics.median(x["bytes_per_conn"] for x in rows),
            "open": min(x["open_after_settle"] for x in rows),
        }
        if args.active:
            best[name]["p99_ms"] = statistics.median(x["p99_ms"] or 0 for x in rows)
            best[name]["rps"] = statistics.median(x["rps"] or 0 for x in rows)
    print(f"{'peer':<11} {'conns':>6} {'open':>6} {'B/conn':>8}" + ("  {:>9} {:>8}".format("req/s", "p99 ms") if args.active else ""))
    for name in names:
        b = best[name]
        line = f"{name:<11} {args.conns:>6} {b['open']:>6} {b['bytes_per_conn']:>8.0f}"
        if args.active:
            line += f"  {b['rps']:>9.0f} {b['p99_ms']:>8.2f}"
        print(line)
    peers = [n for n in names if n != "switchyard"]
    if "switchyard" in names and peers:
        better = min(peers, key=lambda n: best[n]["bytes_per_conn"])
        ratio = best["switchyard"]["bytes_per_conn"] / max(best[better]["bytes_per_conn"], 1)
        print(f"switchyard / {better} (the leaner peer): memory per idle connection x{ratio:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": results, "median": best}, f, indent=2)
    bad = [n for n in names if best[n]["open"] < args.conns]
    if bad:
        print(f"idle_conns: connections closed during the settle time: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
