"""Check the rendered page in a real headless browser (Chromium from Debian: ``apt-get install chromium``).

Chromium loads the page from a file:// URL with networking disabled, runs its script, and dumps the
resulting DOM. The check asks for a ``#sort=`` order and confirms the script ran, the table rows
came out in that order, and every entry is drawn in the privacy-utility plot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    env = os.environ.get("MEMA_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def dump_dom(page: Path, fragment: str = "", browser: str | None = None, timeout: float = 60) -> str:
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install it: apt-get install chromium; or set MEMA_CHROMIUM)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # any fetch would fail loudly
               "--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri() + fragment]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or "<html" not in r.stdout:
        raise RuntimeError(f"{Path(browser).name} failed ({r.returncode}): {r.stderr[-800:]}")
    return r.stdout


class _Board(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ready = False
        self.tables: list[dict] = []
        self.points: list[str] = []
        self._row: list | None = None
        self._cell: tuple[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html" and a.get("data-ready") == "1":
            self.ready = True
        elif tag == "table" and "board" in (a.get("class") or "").split():
            self.tables.append({"sort_key": a.get("data-sort-key"), "desc": a.get("data-sort-desc") == "1", "rows": []})
        elif tag == "tr" and a.get("data-method") and self.tables:
            self._row = {"method": a["data-method"]}
            self.tables[-1]["rows"].append(self._row)
        elif tag == "td" and self._row is not None and a.get("data-key"):
            self._row[a["data-key"]] = a.get("data-v", "")
        elif tag == "g" and "point" in (a.get("class") or "").split():
            self.points.append(a.get("data-method", ""))


def check_page(page: Path, sort_key: str = "kappa", browser: str | None = None) -> dict:
    """Load ``page`` sorted by ``sort_key`` and return what the browser rendered; raises on a problem."""
    dom = dump_dom(page, f"#sort={sort_key}", browser)
    parsed = _Board()
    parsed.feed(dom)
    problems = []
    if not parsed.ready:
        problems.append("the page script did not run (no data-ready)")
    if not parsed.tables:
        problems.append("no board table")
    n_rows = 0
    for t in parsed.tables:
        n_rows += len(t["rows"])
        if t["sort_key"] != sort_key:
            problems.append(f"table sorted by {t['sort_key']!r}, expected {sort_key!r}")
        vals = [float(r[sort_key]) for r in t["rows"] if re.fullmatch(r"-?[0-9.e+-]+", r.get(sort_key, ""))]
        if vals != sorted(vals, reverse=True):
            problems.append(f"rows are not in descending {sort_key} order: {vals}")
    if sorted(parsed.points) != sorted(r["method"] for t in parsed.tables for r in t["rows"] if r.get("protection") and r.get("kappa")):
        problems.append(f"plot points {sorted(parsed.points)} do not match the table rows")
    if problems:
        raise AssertionError("; ".join(problems))
    return {"tables": len(parsed.tables), "rows": n_rows, "points": len(parsed.points),
            "order": [[r["method"] for r in t["rows"]] for t in parsed.tables]}
