"""What the dashboard's browser checks share (dashboard.py, dashboard_gate.py):
HTTP calls, processes, a headless Chromium and waiting on what it shows.
The caller sets WORK (a scratch folder) and, to start proxies, BIN."""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BIN, WORK = None, None
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
        # The page re-renders every second: an element read just as it is
        # replaced is stale, which is "not yet", not a failure.
        WebDriverWait(d, secs, poll_frequency=0.05,
                      ignored_exceptions=[StaleElementReferenceException]).until(lambda d: cond(d))
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
