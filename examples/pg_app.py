#!/usr/bin/env python3
"""A tiny application that writes to PostgreSQL, for the README's database
cutover walkthrough (scripts/pg-demo.sh starts two of them).

    examples/pg_app.py --listen 127.0.0.1:8001 --name blue \
        --dsn "host=127.0.0.1 port=54320 user=postgres dbname=postgres"

POST (any path) inserts one row into `writes` with the request's
X-Request-Id and answers 200 once it is committed, or 500 with the
database's message (a replica still in recovery is read-only). GET /count
answers the number of rows and of distinct ids; any other GET answers 200
(the proxy's health check). It talks to the database through `psql`
(Debian's postgresql-client), so it needs no Python driver.
"""

import argparse
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TABLE = "CREATE TABLE IF NOT EXISTS writes (id text NOT NULL, at timestamptz DEFAULT now());"


def psql(dsn, sql, **variables):
    """Run `sql` (psql variables quoted with :'name'); (ok, output)."""
    args = ["psql", dsn, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    done = subprocess.run(args, input=sql, capture_output=True, text=True, timeout=10)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


class App(BaseHTTPRequestHandler):
    dsn = ""
    name = ""
    counter = 0
    lock = threading.Lock()

    def answer(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-app", self.name)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/count":
            ok, out = psql(self.dsn, "SELECT count(*) || ' rows, ' || count(DISTINCT id) || ' distinct ids' FROM writes;")
            self.answer(200 if ok else 500, out)
        else:
            self.answer(200, f"{self.name} ok")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        rid = self.headers.get("x-request-id")
        if not rid:
            with App.lock:
                App.counter += 1
                rid = f"{self.name}-{App.counter}"
        ok, out = psql(self.dsn, "INSERT INTO writes (id) VALUES (:'id');", id=rid)
        self.answer(200 if ok else 500, f"{self.name} stored {rid}" if ok else out)

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="host:port, e.g. 127.0.0.1:8001")
    p.add_argument("--dsn", required=True, help="libpq connection string")
    p.add_argument("--name", default="app")
    p.add_argument("--create-table", action="store_true", help="create `writes` first (on the primary)")
    a = p.parse_args()
    if a.create_table:
        ok, out = psql(a.dsn, TABLE)
        if not ok:
            raise SystemExit(f"cannot create the table: {out}")
    App.dsn, App.name = a.dsn, a.name
    host, port = a.listen.rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), App).serve_forever()


if __name__ == "__main__":
    main()
