"""Drive the dashboard (SPEC.md section 11) in headless Chromium against real
proxies with real upstreams; run by .ci/checks/dashboard.sh, which installs
Chromium, chromedriver and selenium first.

Two proxies: `switchyard demo` (its sample upstreams, background traffic and
failure switch; an admin token) for the page, weights, a rollout, an
automatic rollback and a wrong token; and `switchyard run` on the demo's
upstreams with a write hold and a gate that says no, for the hold, a 409
shown on the page, and the proxy killed and restarted.

Usage: dashboard.py BINARY WORKDIR [SCREENSHOT.png]
"""
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BIN, WORK = sys.argv[1], sys.argv[2]
SCREENSHOT = sys.argv[3] if len(sys.argv) > 3 else None
TOKEN = "dash-" + os.urandom(8).hex()
TOKEN_KEY = "switchyard-admin-token"
procs = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    raise SystemExit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(method, url, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def wait_http(url, what, secs=30):
    end = time.time() + secs
    while time.time() < end:
        if call("GET", url)[0] == 200:
            return
        time.sleep(0.1)
    fail(what)


def start(args, log, env=None):
    p = subprocess.Popen([BIN] + args, stdout=open(log, "w"), stderr=open(log + ".err", "w"),
                         env=dict(os.environ, **(env or {})))
    procs.append(p)
    return p


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,1500",
              "--user-data-dir=" + tempfile.mkdtemp(dir=WORK)]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def until(d, secs, what, cond):
    """Wait for cond(d) (polled every 50 ms); returns the seconds it took."""
    t0 = time.time()
    try:
        WebDriverWait(d, secs, poll_frequency=0.05).until(lambda d: cond(d))
    except Exception:
        path = os.path.join(WORK, "failed.png")
        d.save_screenshot(path)
        fail(what + " (screenshot: " + path + ")")
    return time.time() - t0


def text(d, id_):
    return d.find_element(By.ID, id_).text


def shown(d, id_):
    return d.find_element(By.ID, id_).is_displayed()


def confirm(d, action):
    d.find_element(By.CSS_SELECTOR, 'button[data-action="%s"]' % action).click()
    until(d, 5, "the confirm dialog for " + action, lambda d: shown(d, "confirm"))
    d.find_element(By.ID, "confirm-ok").click()


def type_token(d, token):
    until(d, 5, "the token dialog", lambda d: shown(d, "token-input"))
    d.find_element(By.ID, "token-input").send_keys(token)
    d.find_element(By.ID, "token-ok").click()


def requested_urls(d):
    urls = []
    for entry in d.get_log("performance"):
        m = json.loads(entry["message"])["message"]
        if m.get("method") == "Network.requestWillBeSent":
            urls.append(m["params"]["request"]["url"])
    return urls


def demo_part(d, admin, control):
    base = "http://%s" % admin
    requested_urls(d)  # drop what the browser fetched for its own blank tab
    d.get(base + "/")
    type_token(d, TOKEN)
    until(d, 10, "the stream goes live", lambda d: "live" in text(d, "conn"))
    until(d, 10, "history draws the charts",
          lambda d: d.find_element(By.CSS_SELECTOR, "#chart-blue-rps polyline").get_attribute("points"))
    # Nothing from any other host, no console error.
    urls = requested_urls(d)
    # chrome:// is the browser's own pages, not a request to a host.
    others = [u for u in urls if not u.startswith((base + "/", "data:", "chrome:"))]
    if others:
        fail("the page asked another host: %s" % others)
    noisy = [l for l in d.get_log("browser") if l["level"] in ("SEVERE", "WARNING")]
    if noisy:
        fail("console errors: %s" % noisy)
    print("page: loaded, %d requests all to %s, no console error" % (len(urls), admin))

    # A change through the API shows without a reload.
    t0 = time.time()
    code, body = call("PUT", base + "/api/v1/weights", {"blue": 80, "green": 20}, TOKEN)
    if code != 200:
        fail("PUT weights: %s %s" % (code, body))
    until(d, 2, "the new split within 2 s", lambda d: text(d, "split-text") == "blue 80% · green 20%")
    print("weights: PUT 80/20 shown on the page after %.2f s" % (time.time() - t0))
    call("PUT", base + "/api/v1/weights", {"blue": 100, "green": 0}, TOKEN)
    until(d, 2, "back to 100/0", lambda d: text(d, "split-text") == "blue 100% · green 0%")

    # A rollout started from the page advances on the page.
    d.find_element(By.ID, "rollout-steps").send_keys("10, 50, 100")
    d.find_element(By.ID, "rollout-interval").send_keys("3s")
    confirm(d, "rollout")
    until(d, 5, "the rollout's answer", lambda d: text(d, "result").startswith("rollout: 200"))
    until(d, 3, "phase rolling", lambda d: text(d, "phase") == "rolling")
    current = lambda d: d.find_element(By.CSS_SELECTOR, "#steps li.current").text
    until(d, 3, "step 1 current", lambda d: current(d).startswith("10%"))
    took = until(d, 8, "step 2 on the page", lambda d: current(d).startswith("50%"))
    print("rollout: started from the page, step 2 shown %.2f s after step 1" % took)

    # An automatic rollback shows in the timeline with its evidence.
    call("POST", "http://%s/fail/green?rate=0.5" % control)
    sel = '#timeline li[data-kind="rollback"] .evidence'
    took = until(d, 20, "the automatic rollback in the timeline",
                 lambda d: d.find_elements(By.CSS_SELECTOR, sel))
    ev = d.find_element(By.CSS_SELECTOR, '#timeline li[data-kind="rollback"]').text
    if "by auto" not in ev or "error rate" not in ev:
        fail("the rollback's evidence is missing: " + ev)
    until(d, 3, "the rollback lock", lambda d: shown(d, "lock"))
    print("rollback: in the timeline %.2f s after green started failing, with evidence" % took)
    call("POST", "http://%s/fail/green?rate=0" % control)

    # A refusal shows the API's reason; rearm clears the lock.
    confirm(d, "switch-green")
    until(d, 5, "the 409 and its reason",
          lambda d: re.match(r"switch-green: 409 conflict: .*lock", text(d, "result")))
    print("refusal: " + text(d, "result"))
    confirm(d, "rearm")
    until(d, 5, "the lock cleared", lambda d: not shown(d, "lock"))

    if SCREENSHOT:
        call("POST", base + "/api/v1/rollout", {"to": "green", "steps": [10, 25, 50, 100],
                                                "step_interval": "1m"}, TOKEN)
        until(d, 5, "a rollout for the screenshot", lambda d: text(d, "phase") == "rolling")
        time.sleep(3)  # let a few seconds of charts accumulate for the picture
        d.save_screenshot(SCREENSHOT)
        print("screenshot: " + SCREENSHOT)

    # A wrong token is refused and asked for again.
    d.execute_script("sessionStorage.setItem(arguments[0], 'wrong-token')", TOKEN_KEY)
    d.refresh()
    until(d, 10, "the wrong token asked again",
          lambda d: shown(d, "token-input") and "refused" in text(d, "token-why"))
    type_token(d, TOKEN)
    until(d, 10, "live again with the right token", lambda d: "live" in text(d, "conn"))
    print("token: a wrong one is refused and asked for again")


class Gate(http.server.BaseHTTPRequestHandler):
    """The cutover gate: never ready, so a held switch runs to max_hold."""

    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def run_part(d, blue, green):
    gate = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    admin, proxy = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    cfg = os.path.join(WORK, "hold.yaml")
    with open(cfg, "w") as f:
        f.write("""listeners: [{bind: "%s"}]
admin: {bind: "%s"}
pools:
  blue: {endpoints: %s}
  green: {endpoints: %s}
health_check: {interval: 500ms, timeout: 400ms, healthy_threshold: 1}
cutover:
  hold_writes: true
  max_hold: 4s
  gate: {url: "http://127.0.0.1:%d/ready"}
state_file: null
""" % (proxy, admin, json.dumps(blue), json.dumps(green), gate.server_port))
    log = os.path.join(WORK, "run.log")
    p = start(["run", "-c", cfg], log)
    wait_http("http://%s/readyz" % admin, "the run proxy did not start")
    base = "http://%s" % admin
    requested_urls(d)  # drop what the browser fetched for its own blank tab
    d.get(base + "/")
    until(d, 10, "live without a token", lambda d: "live" in text(d, "conn"))
    until(d, 10, "green healthy",
          lambda d: "2 of 2 endpoints healthy" in d.find_element(By.ID, "figures-green").text)

    # A switch holds writes while the gate says no; the page shows the hold
    # and the write it holds, then the 409 when max_hold aborts it.
    confirm(d, "switch-green")
    until(d, 3, "the hold on the page", lambda d: shown(d, "hold"))
    answer = {}

    def write():
        answer["code"] = call("POST", "http://%s/orders" % proxy, {"n": 1})[0]

    w = threading.Thread(target=write)
    w.start()
    until(d, 3, "the held write on the page", lambda d: "1 write held" in text(d, "hold-text"))
    print("hold: " + text(d, "hold-text"))
    until(d, 8, "the aborted switch's 409",
          lambda d: text(d, "result").startswith("switch-green: 409 switch_aborted"))
    until(d, 3, "the hold gone", lambda d: not shown(d, "hold"))
    w.join(10)
    if answer.get("code") != 200:
        fail("the held write was not answered after the abort: %s" % answer)
    print("hold: aborted at max_hold, shown as " + text(d, "result"))

    # The proxy killed: the banner says so; restarted: it clears by itself.
    t0 = time.time()
    p.send_signal(signal.SIGKILL)
    p.wait()
    took = until(d, 10, "the disconnected banner",
                 lambda d: shown(d, "banner") and "Disconnected" in text(d, "banner"))
    print("lost: banner %.2f s after the kill: %s" % (took, text(d, "banner")))
    t0 = time.time()
    start(["run", "-c", cfg], log)
    until(d, 20, "the banner cleared after the restart",
          lambda d: not shown(d, "banner") and "live" in text(d, "conn"))
    print("back: banner cleared %.2f s after the restart began" % (time.time() - t0))
    gate.shutdown()


def main():
    admin, proxy, control = ("127.0.0.1:%d" % free_port() for _ in range(3))
    demo_log = os.path.join(WORK, "demo.log")
    start(["demo", "--listen", proxy, "--tls-listen", "127.0.0.1:%d" % free_port(),
           "--admin", admin, "--control", control, "--traffic", "50"],
          demo_log, {"SWITCHYARD_ADMIN_TOKEN": TOKEN})
    wait_http("http://%s/healthz" % admin, "the demo did not start")
    end = time.time() + 10
    ups = {}
    while time.time() < end and len(ups.get("green", [])) < 2:
        ups = {}
        for m in re.finditer(r"upstream \S+\s+\((blue|green)\s*\) on (\S+)", open(demo_log).read()):
            ups.setdefault(m.group(1), []).append(m.group(2))
        time.sleep(0.1)
    first = open(demo_log).readline().strip()
    if first != "Dashboard: http://%s/" % admin:
        fail("the demo's first line is not the dashboard: " + first)
    d = browser()
    try:
        t0 = time.time()
        demo_part(d, admin, control)
        run_part(d, ups["blue"], ups["green"])
        print("dashboard: every check passed in %.1f s" % (time.time() - t0))
    finally:
        d.quit()


try:
    main()
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
