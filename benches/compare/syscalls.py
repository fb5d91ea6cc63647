#!/usr/bin/env python3
"""Where a 64-byte request's CPU goes, per peer: system calls per request
(by name), user and system CPU microseconds per request, side by side.

The matrix says how many requests each peer serves per CPU-second; this
says why. For each peer (nginx, HAProxy, switchyard; order alternating
between rounds) in front of one bench_upstream pinned with it on
--server-cpu, h2load --h1 runs --conns kept-alive connections for
--duration seconds on --client-cpu while `perf stat` counts the peer's
system calls (the tracepoints raw_syscalls:sys_enter and
syscalls:sys_enter_<name>, which need no hardware counters). Per request:
system calls in all and by name, and the peer's user and system CPU time
from /proc. Medians over rounds.

Usage: benches/compare/syscalls.py [--rounds N] [--duration S] [--conns N]
Needs perf (Debian's linux-perf), nginx, haproxy, h2load, and
target/release/{switchyard,examples/bench_upstream}.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import HOST, REPO, Peer, cpu_seconds, find_bin, start_upstream, stop_upstream  # noqa: E402

NAMES = ["read", "recvfrom", "readv", "write", "writev", "sendto", "sendmsg",
         "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "clock_gettime",
         "accept4", "close", "setsockopt", "getsockopt", "ioctl"]


def cpu_split(pids):
    """(user, system) seconds of the processes and their threads."""
    tck = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11]) / tck
            system += int(fields[12]) / tck
        except FileNotFoundError:
            pass
    return user, system


def measure(peer, args):
    pids = peer.pids()
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{n}" for n in NAMES]
    perf_out = os.path.join(args.work, "perf.txt")
    u0, s0 = cpu_split(pids)
    # `perf stat -p PIDS -- COMMAND` attaches to the peer, then starts the
    # load generator, and counts until it exits: no wait for perf to attach.
    out = subprocess.run([find_bin("perf"), "stat", "-x", ",", "-o", perf_out,
                          "-e", ",".join(events), "-p", ",".join(map(str, pids)), "--",
                          "taskset", "-c", args.client_cpu, find_bin("h2load"), "--h1",
                          "-c", str(args.conns), "-D", str(args.duration), "-t", "1",
                          f"http://{HOST}:{peer.port}/"],
                         capture_output=True, text=True, timeout=args.duration + 30).stdout
    u1, s1 = cpu_split(pids)
    m = re.search(r"status codes: (\d+) 2xx", out)
    reqs = int(m.group(1)) if m else 0
    counts = {}
    with open(perf_out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[0].isdigit():
                event = parts[2]
                key = "raw_syscalls" if event.startswith("raw_syscalls") else event.split("sys_enter_")[-1]
                counts[key] = int(parts[0])
    if reqs == 0:
        sys.exit(f"{peer.name}: no 2xx answer:\n{out}")
    per = {k: v / reqs for k, v in counts.items()}
    per["user_us"] = (u1 - u0) / reqs * 1e6
    per["sys_us"] = (s1 - s0) / reqs * 1e6
    per["req_per_cpu_s"] = reqs / max((u1 - u0) + (s1 - s0), 1e-9)
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--port-base", type=int, default=19300)
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--switchyard-bin", default=os.path.join(REPO, "target/release/switchyard"))
    ap.add_argument("--upstream-bin", default=os.path.join(REPO, "target/release/examples/bench_upstream"))
    args = ap.parse_args()
    args.work = tempfile.mkdtemp(prefix="syscalls-")
    peers = ["nginx", "haproxy", "switchyard"]
    results = {p: [] for p in peers}
    up_port = args.port_base + 1
    upstream = start_upstream(args.upstream_bin, up_port, args.server_cpu, body_size=64)
    try:
        for r in range(args.rounds):
            for name in (peers if r % 2 == 0 else peers[::-1]):
                peer = Peer(name, args.port_base, args.work, f"{HOST}:{up_port}",
                            {"body": 64, "conns": args.conns}, args.server_cpu, args.switchyard_bin)
                if not peer.start():
                    sys.exit(f"{name} did not start")
                try:
                    res = measure(peer, args)
                finally:
                    peer.stop()
                results[name].append(res)
                print(f"round {r + 1} {name}: {res['raw_syscalls']:.2f} syscalls/req, "
                      f"user {res['user_us']:.2f} us, sys {res['sys_us']:.2f} us, "
                      f"{res['req_per_cpu_s']:.0f} req/CPU-s", flush=True)
    finally:
        stop_upstream(upstream)
    keys = ["req_per_cpu_s", "user_us", "sys_us", "raw_syscalls"] + NAMES
    print("\n| per request | " + " | ".join(peers) + " |")
    print("|---|" + "---:|" * len(peers))
    for k in keys:
        vals = [statistics.median(r.get(k, 0) for r in results[p]) for p in peers]
        if k in NAMES and not any(v >= 0.005 for v in vals):
            continue
        fmt = "{:.0f}" if k == "req_per_cpu_s" else "{:.2f}"
        print(f"| {k} | " + " | ".join(fmt.format(v) for v in vals) + " |")


if __name__ == "__main__":
    main()
