"""The peers of the load comparison (nginx, HAProxy, switchyard) as the
Python scripts of benches/compare start them: one configuration per cell,
each process pinned, its CPU time and memory read from /proc.

A cell says what the peer must speak: `tls` (terminate TLS, ALPN h2 and
http/1.1), `h2c` (HTTP/2 with prior knowledge from the client), `grpc`
(the upstream speaks HTTP/2: nginx grpc_pass, HAProxy `proto h2`,
switchyard `protocol: h2`), `green` (HOST:PORT of a second upstream: the cell
`switch` moves all traffic between `upstream` (blue) and it, see
Peer.switch). Every peer passes Host, adds X-Forwarded-For,
keeps idle upstream connections, and logs nothing per request; nginx
streams large bodies without temporary files (as the others do).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PORTS = {"nginx": 80, "haproxy": 81, "switchyard": 82}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# Set by a script's --rt: every process of a run (peers, upstream, load
# generator) runs under SCHED_FIFO at this priority, so that builds or
# anything else on a shared machine cannot preempt them mid-request.
RT_PRIORITY = None


def pin(cpu):
    """The command prefix that runs a program on `cpu` (and, with
    RT_PRIORITY, at that real-time priority)."""
    prefix = ["chrt", "-f", str(RT_PRIORITY)] if RT_PRIORITY else []
    return prefix + ["taskset", "-c", str(cpu)]


def find_bin(name):
    for path in (shutil.which(name), f"/usr/sbin/{name}"):
        if path and os.path.exists(path):
            return path
    sys.exit(f"{name} not found (apt-get install -y {name})")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def status_kb(pids, field):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pids):
    """User plus system CPU time of the processes, all their threads, and
    of their children that have exited and been waited for (cutime,
    cstime): the nginx and HAProxy workers that a reload replaces."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        except FileNotFoundError:
            pass
    return total / CLK_TCK


def make_cert(work):
    """A self-signed P-256 certificate for localhost and 127.0.0.1:
    (cert, key, both in one file for HAProxy)."""
    d = os.path.join(work, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key, both = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "both.pem"))
    if not os.path.exists(both):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True)
        with open(both, "w") as out:
            for p in (cert, key):
                with open(p) as f:
                    out.write(f.read())
    return cert, key, both


def request_ok(port, tls=False, path="/"):
    """One GET on a new connection answers 200 (over TLS: through openssl)."""
    if tls:
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection((HOST, port), timeout=1)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    else:
        s = socket.create_connection((HOST, port), timeout=1)
    with s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200")


class Peer:
    """One proxy in front of `upstream` (HOST:PORT), for `cell` (a dict with
    the optional keys tls, h2c, grpc, conns)."""

    def __init__(self, name, port_base, work, upstream, cell, cpu, switchyard_bin):
        self.name, self.work, self.upstream, self.cell = name, work, upstream, cell
        self.port = port_base + PORTS[name]
        self.admin_port = port_base + 901
        self.cpu, self.switchyard_bin = cpu, switchyard_bin
        self.proc = None

    def _nginx_servers(self):
        if not self.cell.get("green"):
            return f"server {self.upstream};"
        # nginx (open source) changes its servers only by a reload: the
        # pool that takes no traffic is marked down.
        blue, green = ("", " down") if self.active == "blue" else (" down", "")
        return f"server {self.upstream}{blue}; server {self.cell['green']}{green};"

    def _nginx(self, d, n):
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        # nginx's listen backlog is 511 unless set: too short for the 1000
        # clients of the cell `slow` connecting at once. HAProxy's follows
        # its maxconn, switchyard's is tokio's 1024.
        listen = f"{HOST}:{self.port} backlog=4096"
        ssl = ""
        if self.cell.get("tls"):
            cert, key, _ = make_cert(self.work)
            listen += " ssl http2"
            ssl = f"ssl_certificate {cert};\n        ssl_certificate_key {key};\n        ssl_session_cache off;\n        ssl_session_tickets off;"
        elif self.cell.get("h2c") or self.cell.get("grpc"):
            listen += " http2"
        if self.cell.get("grpc"):
            location = "grpc_pass grpc://pools;\n            grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
        else:
            location = ("proxy_pass http://pools;\n            proxy_http_version 1.1;\n"
                        "            proxy_set_header Connection \"\";\n"
                        "            proxy_set_header Host $host;\n"
                        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                        "            proxy_max_temp_file_size 0;\n"
                        "            proxy_request_buffering off;")
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {2 * n};
events {{ worker_connections {n}; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    client_max_body_size 4m;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 256;
    upstream pools {{ {self._nginx_servers()} keepalive 64; keepalive_requests 1000000; }}
    server {{
        listen {listen};
        {ssl}
        location / {{
            {location}
        }}
    }}
}}
""")
        return [find_bin("nginx"), "-p", d, "-c", conf, "-e", f"{d}/error.log"]

    def _haproxy(self, d, n):
        bind = f"{HOST}:{self.port}"
        if self.cell.get("tls"):
            _, _, both = make_cert(self.work)
            bind += f" ssl crt {both} alpn h2,http/1.1 no-tls-tickets"
        elif self.cell.get("h2c") or self.cell.get("grpc"):
            bind += " proto h2"
        server = f"server up {self.upstream}" + (" proto h2" if self.cell.get("grpc") else "")
        stats = ""
        if self.cell.get("green"):
            # Weights change at run time over the stats socket; a reload
            # (master-worker, SIGUSR2) starts a new worker from the file.
            blue, green = (100, 0) if self.active == "blue" else (0, 100)
            server = (f"server blue {self.upstream} weight {blue}\n"
                      f"    server green {self.cell['green']} weight {green}")
            stats = f"\n    stats socket {d}/admin.sock mode 600 level admin"
        conf = os.path.join(d, "haproxy.cfg")
        # HAProxy wants two descriptors per connection; idle client
        # connections need one, so cap it at what the process may open.
        import resource
        fds = min(2 * n + 100, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        with open(conf, "w") as f:
            f.write(f"""global
    nbthread 1
    maxconn {min(n, (fds - 100) // 2)}
    ulimit-n {fds}
    tune.ssl.cachesize 0{stats}
defaults
    mode http
    timeout connect 2s
    timeout client 300s
    timeout server 60s
    timeout http-keep-alive 300s
    timeout http-request 300s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend fe
    bind {bind}
    default_backend pools
backend pools
    {server}
""")
        if self.cell.get("green"):
            return [find_bin("haproxy"), "-W", "-db", "-f", conf]
        return [find_bin("haproxy"), "-db", "-f", conf]

    def _switchyard(self, d, n):
        tls = ""
        if self.cell.get("tls"):
            cert, key, _ = make_cert(self.work)
            tls = f'\n    tls: {{ cert: "{cert}", key: "{key}" }}'
        protocol = "\n    protocol: h2" if self.cell.get("grpc") else ""
        green, traffic = self.upstream, ""
        if self.cell.get("green"):
            green = self.cell["green"]
            traffic = "\ntraffic:\n  initial: { blue: 100, green: 0 }"
        conf = os.path.join(d, "switchyard.yaml")
        with open(conf, "w") as f:
            f.write(f"""listeners:
  - bind: "{HOST}:{self.port}"{tls}
admin:
  bind: "{HOST}:{self.admin_port}"
pools:
  blue:
    endpoints: ["{self.upstream}"]{protocol}
  green:
    endpoints: ["{green}"]{protocol}{traffic}
health_check:
  path: /health
  interval: 2s
timeouts:
  client_header: 300s
limits:
  max_connections: {n}
state_file: null
log: {{ level: warn }}
""")
        return [self.switchyard_bin, "run", "-c", conf]

    def start(self):
        d = os.path.join(self.work, self.name)
        os.makedirs(d, exist_ok=True)
        n = self.cell.get("conns", 64) + 2000
        self.active = "blue"
        self._conf = (d, n)
        cmd = getattr(self, "_" + self.name)(d, n)
        self.log = open(os.path.join(d, "out.log"), "w")
        self.proc = subprocess.Popen(pin(self.cpu) + cmd,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                if self.ready():
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        print(f"{self.name} did not start; see {self.log.name}", file=sys.stderr)
        return False

    def switch(self, reload):
        """Move all traffic to the other pool; with `reload`, reload the
        configuration too (the weights in the file follow the switch). Each
        peer by its own means: switchyard PUT /api/v1/weights and POST
        /api/v1/reload; HAProxy `set weight` on its stats socket and SIGUSR2
        to its master; nginx rewrites its file and reloads (SIGHUP), its only
        way to change servers. True when the peer accepted it."""
        self.active = "green" if self.active == "blue" else "blue"
        if self.name == "nginx":
            self._nginx(*self._conf)
            self.proc.send_signal(signal.SIGHUP)
            return True
        if self.name == "haproxy":
            weights = (100, 0) if self.active == "blue" else (0, 100)
            ok = self._haproxy_cmd(f"set weight pools/blue {weights[0]}; set weight pools/green {weights[1]}")
            if reload:
                self._haproxy(*self._conf)
                self.proc.send_signal(signal.SIGUSR2)
            return ok
        import json
        body = {"blue": 100, "green": 0} if self.active == "blue" else {"blue": 0, "green": 100}
        ok = self._admin("PUT", "/api/v1/weights", json.dumps(body).encode())
        if reload:
            ok = self._admin("POST", "/api/v1/reload", b"") and ok
        return ok

    def _admin(self, method, path, body):
        import urllib.request
        req = urllib.request.Request(f"http://{HOST}:{self.admin_port}{path}", data=body, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=1) as r:
                return 200 <= r.status < 300
        except OSError:
            return False

    def _haproxy_cmd(self, line):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(os.path.join(self._conf[0], "admin.sock"))
                s.sendall(line.encode() + b"\n")
                out = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    out += chunk
            return out.strip() == b""
        except OSError:
            return False

    def ready(self):
        if self.cell.get("grpc") or self.cell.get("h2c"):
            # Listening is all that can be checked without an h2 client.
            with socket.create_connection((HOST, self.port), timeout=1):
                return True
        return request_ok(self.port, tls=bool(self.cell.get("tls")))

    def pids(self):
        # nginx's master forks a worker; HAProxy and switchyard are one process.
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def start_upstream(binary, port, cpu, body_size=64, delay_ms=0, h2=False, green_port=None):
    """bench_upstream on `port` (and, with green_port, a second instance in
    the same process)."""
    cmd = pin(cpu) + [binary, "--listen", f"up={HOST}:{port}",
           "--body-size", str(body_size)]
    if green_port:
        cmd += ["--listen", f"green={HOST}:{green_port}"]
    if delay_ms:
        cmd += ["--delay-ms", str(delay_ms)]
    if h2:
        cmd.append("--h2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"bench_upstream did not listen on {port}")


def stop_upstream(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
