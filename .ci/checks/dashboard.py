"""Drive the dashboard (SPEC.md section 11) in headless Chromium against real
proxies with real upstreams; run by .ci/checks/dashboard.sh, which installs
Chromium, chromedriver and selenium first.

Two proxies: `switchyard demo` (its sample upstreams, background traffic and
failure switch; an admin token) for the page, weights, a rollout, an
automatic rollback and a wrong token; and `switchyard run` on the demo's
upstreams with a write hold and a gate that says no, for the hold, a 409
shown on the page, and the proxy killed and restarted.

With --fleet (a binary built with `--features fleet`, and etcd): two
replicas on one etcd, the page showing the members and a fleet-wide hold.

Usage: dashboard.py BINARY WORKDIR [SCREENSHOT.png] [--fleet]
"""
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

import dashlib
from dashlib import (browser, call, confirm, fail, free_port, procs, requested_urls, shown, start,
                     text, type_token, until, wait_http)

BIN, WORK = sys.argv[1], sys.argv[2]
FLEET = "--fleet" in sys.argv[3:]
SCREENSHOT = next((a for a in sys.argv[3:] if a != "--fleet"), None)
TOKEN = "dash-" + os.urandom(8).hex()
TOKEN_KEY = "switchyard-admin-token"
dashlib.BIN, dashlib.WORK = BIN, WORK


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
    # The countdown to the next step, then the bake time left (demo: 30s).
    until(d, 2, "the countdown to step 3",
          lambda d: re.search(r"step 2 of 3 \(50%\)\. Next step in [1-3] s", text(d, "countdown")))
    countdown = text(d, "countdown")
    until(d, 8, "the bake time left after the last step",
          lambda d: re.match(r"Baking green: (2[0-9]|30) s left", text(d, "bake")))
    print("rollout: %s / %s" % (countdown, text(d, "bake")))

    # An automatic rollback shows in the timeline with its evidence.
    call("POST", "http://%s/fail/green?rate=0.5" % control)
    sel = '#timeline li[data-kind="rollback"] .evidence'
    took = until(d, 20, "the automatic rollback in the timeline",
                 lambda d: d.find_elements(By.CSS_SELECTOR, sel))
    ev = d.find_element(By.CSS_SELECTOR, '#timeline li[data-kind="rollback"]').text
    if "by auto" not in ev or "error rate" not in ev:
        fail("the rollback's evidence is missing: " + ev)
    until(d, 3, "the rollback lock with its reason",
          lambda d: shown(d, "lock") and "error rate" in text(d, "lock-reason"))
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
        code, body = call("POST", base + "/api/v1/rollout/abort", {}, TOKEN)
        if code != 200:
            fail("abort the screenshot's rollout: %s %s" % (code, body))
        call("POST", base + "/api/v1/rearm", {}, TOKEN)  # an abort locks green

    # A wrong token is refused and asked for again.
    d.execute_script("sessionStorage.setItem(arguments[0], 'wrong-token')", TOKEN_KEY)
    d.refresh()
    until(d, 10, "the wrong token asked again",
          lambda d: shown(d, "token-input") and "refused" in text(d, "token-why"))
    type_token(d, TOKEN)
    until(d, 10, "live again with the right token", lambda d: "live" in text(d, "conn"))
    print("token: a wrong one is refused and asked for again")
    polling_part(d, admin)
    phone_dark_keyboard_part(d)


def open_stream(admin):
    """A stream held open by a raw socket, or None and the refusal's status line."""
    s = socket.create_connection(tuple(admin.rsplit(":", 1)), timeout=5)
    s.sendall(("GET /api/v1/stream HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n"
               % (admin, TOKEN)).encode())
    line = s.recv(4096).split(b"\r\n", 1)[0].decode()
    if " 200 " in line:
        return s, line
    s.close()
    return None, line


def polling_part(d, admin):
    """The stream refused (every place taken): the page polls status, still
    shows changes within 2 s, and goes back to the stream once it can."""
    base = "http://%s" % admin
    d.get("about:blank")  # the page's own stream ends (freed at its next heartbeat)
    socks, line, end = [], "", time.time() + 10
    while len(socks) < 64 or " 503 " not in line:
        if time.time() > end:
            fail("64 streams never filled the proxy (%d open, the last answer: %s)" % (len(socks), line))
        s, line = open_stream(admin)
        if s:
            socks.append(s)
        elif len(socks) < 64:
            time.sleep(0.1)  # places still held by streams that have gone
    try:
        d.get(base + "/")
        until(d, 10, "polling while the stream is refused", lambda d: "polling" in text(d, "conn"))
        t0 = time.time()
        code, body = call("PUT", base + "/api/v1/weights", {"blue": 70, "green": 30}, TOKEN)
        if code != 200:
            fail("PUT weights while polling: %s %s" % (code, body))
        until(d, 2, "the new split while polling", lambda d: text(d, "split-text") == "blue 70% · green 30%")
        print("polling: %d streams open, page polls; PUT 70/30 shown after %.2f s" % (
            len(socks), time.time() - t0))
    finally:
        for s in socks:
            s.close()
    took = until(d, 10, "back on the stream", lambda d: "live" in text(d, "conn"))
    print("polling: back on the stream %.2f s after the places were freed" % took)
    call("PUT", base + "/api/v1/weights", {"blue": 100, "green": 0}, TOKEN)


def phone_dark_keyboard_part(d):
    """A phone's width (one column, no sideways scroll), a dark room
    (prefers-color-scheme) and the keyboard alone reaching an action."""
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        until(d, 3, "one column on a phone", lambda d: d.execute_script(
            "const xs = [...document.querySelectorAll('main > .card, .pool')]"
            ".filter((e) => e.offsetParent).map((e) => Math.round(e.getBoundingClientRect().left));"
            "return new Set(xs).size === 1 && document.documentElement.scrollWidth <= 390;"))
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    bg = lambda: d.execute_script("return getComputedStyle(document.body).backgroundColor")
    light = bg()
    d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                      {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        dark = bg()
        lum = [int(x) for x in re.findall(r"\d+", dark)[:3]]
        if max(lum) > 60 or dark == light:
            fail("dark mode: the background is %s (light: %s)" % (dark, light))
    finally:
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    # Tab from the top of the page to "Roll back now"; Enter opens its
    # confirmation, Escape closes it without acting.
    d.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    key = lambda k: ActionChains(d).send_keys(k).perform()
    before = text(d, "result")
    for tabs in range(1, 80):
        key(Keys.TAB)
        if d.execute_script("return document.activeElement.dataset.action") == "rollback":
            break
    else:
        fail("the keyboard never reached the rollback button")
    key(Keys.ENTER)
    until(d, 3, "the confirm dialog from the keyboard", lambda d: shown(d, "confirm"))
    key(Keys.ESCAPE)
    until(d, 3, "the dialog closed by Escape", lambda d: not shown(d, "confirm"))
    time.sleep(0.3)  # an answer, had Escape acted, would be on the page by now
    if text(d, "result") != before:
        fail("Escape acted: " + text(d, "result"))
    print("phone: one column at 390 px, no sideways scroll; dark: background %s (light %s); "
          "keyboard: rollback reached in %d tabs, Enter asks, Escape cancels" % (dark, light, tabs))


# A proxy whose switches hold writes and wait for a gate that says no.
HOLD_CONFIG = """listeners: [{bind: "%s"}]
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
"""


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
        f.write(HOLD_CONFIG % (proxy, admin, json.dumps(blue), json.dumps(green), gate.server_port))
        f.write("mirror: {percent: 100, compare: {learn_noise: false}}\n")
    log = os.path.join(WORK, "run.log")
    p = start(["run", "-c", cfg], log)
    wait_http("http://%s/readyz" % admin, "the run proxy did not start")
    base = "http://%s" % admin
    requested_urls(d)  # drop what the browser fetched for its own blank tab
    d.get(base + "/")
    until(d, 10, "live without a token", lambda d: "live" in text(d, "conn"))
    until(d, 10, "green healthy",
          lambda d: "2 of 2 endpoints healthy" in d.find_element(By.ID, "figures-green").text)

    # Mirrored copies of reads go to green; the demo's upstreams answer with
    # their own names, so green's answers differ and the page shows it.
    for _ in range(20):
        if call("GET", "http://%s/items" % proxy)[0] != 200:
            fail("a read through the run proxy failed")
    took = until(d, 5, "the mirror panel with mismatches",
                 lambda d: shown(d, "mirror") and "20 mismatch" in text(d, "mirror-facts"))
    d.find_element(By.ID, "mirror-diffs-button").click()
    until(d, 5, "the latest mismatches listed",
          lambda d: d.find_elements(By.CSS_SELECTOR, "#mirror-diffs li.diff")
          and "GET /items" in text(d, "mirror-diffs"))
    print("mirror: 20 mismatches shown %.2f s after the last read; diffs listed: %s" % (
        took, text(d, "mirror-facts").split("\n")[1]))

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


def fleet_part(d, blue, green):
    """Two replicas sharing one state through a local etcd: the page shows
    the members, and a switch's fleet-wide hold names each member."""
    gate = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    client, peer = free_port(), free_port()
    start_etcd(client, peer)
    admins = []
    for i in (1, 2):
        admin = "127.0.0.1:%d" % free_port()
        admins.append(admin)
        cfg = os.path.join(WORK, "r%d.yaml" % i)
        with open(cfg, "w") as f:
            f.write(HOLD_CONFIG % ("127.0.0.1:%d" % free_port(), admin, json.dumps(blue),
                                   json.dumps(green), gate.server_port))
            f.write("""fleet:
  etcd: {endpoints: ["http://127.0.0.1:%d"], prefix: /switchyard/dash/}
  member_id: r%d
  member_ttl: 5s
  write_fence: 3s
""" % (client, i))
        start(["run", "-c", cfg], os.path.join(WORK, "r%d.log" % i))
    for a in admins:
        wait_http("http://%s/readyz" % a, "replica %s did not start" % a)
    d.get("http://%s/" % admins[0])
    until(d, 10, "live on r1", lambda d: "live" in text(d, "conn"))
    rows = lambda d: d.find_elements(By.CSS_SELECTOR, "#fleet-members tr")
    took = until(d, 15, "both members and a leader on the page",
                 lambda d: shown(d, "fleet") and len(rows(d)) == 2 and "(leader)" in text(d, "fleet-members"))
    members = text(d, "fleet-members")
    if "r1 (this one)" not in members and "r1 (leader) (this one)" not in members:
        fail("this member is not marked: " + members)
    print("fleet: %d members shown, leader marked, after %.2f s: %s" % (
        len(rows(d)), took, text(d, "fleet-summary")))
    until(d, 10, "green healthy on r1",
          lambda d: "2 of 2 endpoints healthy" in d.find_element(By.ID, "figures-green").text)
    confirm(d, "switch-green")
    t0 = time.time()
    until(d, 3, "the hold on r1's page", lambda d: shown(d, "hold"))
    # The other member holds writes too, and its page says so.
    r1 = d.current_window_handle
    d.switch_to.new_window("tab")
    d.get("http://%s/" % admins[1])
    until(d, 4, "the hold on r2's page",
          lambda d: shown(d, "hold") and "switch blue → green" in text(d, "hold-text"))
    print("fleet hold: on r2's page %.2f s after the switch began on r1: %s" % (
        time.time() - t0, text(d, "hold-text")))
    until(d, 10, "the hold gone on r2", lambda d: not shown(d, "hold"))
    d.close()
    d.switch_to.window(r1)
    until(d, 10, "the fleet switch's 409",
          lambda d: text(d, "result").startswith("switch-green: 409 switch_aborted"))
    until(d, 5, "the hold gone", lambda d: not shown(d, "hold"))
    print("fleet hold: aborted, shown on r1 as " + text(d, "result"))
    gate.shutdown()


def start_etcd(client, peer):
    url = lambda port: "http://127.0.0.1:%d" % port
    p = subprocess.Popen(
        [os.environ.get("ETCD_BIN", "etcd"), "--name", "dash", "--data-dir", os.path.join(WORK, "etcd"),
         "--listen-client-urls", url(client), "--advertise-client-urls", url(client),
         "--listen-peer-urls", url(peer), "--initial-advertise-peer-urls", url(peer),
         "--initial-cluster", "dash=" + url(peer)],
        stdout=open(os.path.join(WORK, "etcd.log"), "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    wait_http(url(client) + "/health", "etcd did not start")


def main():
    admin, proxy, control = ("127.0.0.1:%d" % free_port() for _ in range(3))
    demo_log = os.path.join(WORK, "demo.log")
    start(["demo", "--listen", proxy, "--tls-listen", "127.0.0.1:%d" % free_port(),
           "--admin", admin, "--control", control, "--traffic", "0" if FLEET else "50"],
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
        if FLEET:
            fleet_part(d, ups["blue"], ups["green"])
        else:
            demo_part(d, admin, control)
            run_part(d, ups["blue"], ups["green"])
        print("dashboard%s: every check passed in %.1f s" % (" (fleet)" if FLEET else "", time.time() - t0))
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
