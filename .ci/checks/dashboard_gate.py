"""The PostgreSQL gate on the dashboard (issue 24): run by postgres.sh,
through scripts/pg-demo.sh --check's PG_DEMO_THEN, right after the demo's
cutover (the replica promoted), while its proxy still runs. The page must
show the last switch's gate: both LSNs, the lag, the lag curve and the
promotion.

Usage: dashboard_gate.py WORKDIR ADMIN
"""
import re
import sys

from selenium.webdriver.common.by import By

import dashlib
from dashlib import browser, fail, requested_urls, shown, text, until

dashlib.WORK, admin = sys.argv[1], sys.argv[2]
d = browser()
try:
    base = "http://%s" % admin
    requested_urls(d)
    d.get(base + "/")
    until(d, 10, "the stream goes live", lambda d: "live" in text(d, "conn"))
    lsn = r"[0-9A-F]+/[0-9A-F]+"
    until(d, 5, "the database gate on the page", lambda d: shown(d, "gate") and re.match(
        r"promoted · primary %s · replica %s · lag 0 B \(max 0 B\) · promoted in \d+ ms" % (lsn, lsn),
        text(d, "gate-text")))
    points = d.find_element(By.CSS_SELECTOR, "#gate-lag polyline").get_attribute("points")
    if not points or not points.strip():
        fail("the lag curve is empty")
    others = [u for u in requested_urls(d) if not u.startswith((base + "/", "data:", "chrome:"))]
    if others:
        fail("the page asked another host: %s" % others)
    print("dashboard: the gate shown as: " + text(d, "gate-text"))
finally:
    d.quit()
