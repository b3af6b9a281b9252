"""Check rendered pages in a real headless browser (Chromium from Debian: ``apt-get install chromium``).

Chromium loads a page from a file:// URL with networking disabled, runs its script, and dumps the
resulting DOM. :func:`check_page` asks the board for a ``#sort=`` order and confirms the script ran,
the table rows came out in that order, and every entry is drawn in the privacy-utility plot.
:func:`layout_problems` measures where the browser put the text of any page (the board, a run's
``report.html``): every line of text must lie inside its box, every SVG text inside its SVG, no two
SVG texts may overlap, and nothing may need sideways scrolling. :func:`screenshot` takes a PNG of a page.
"""

from __future__ import annotations

import json
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


WINDOW = (1280, 1600)


def _run(browser: str | None, args: list[str], url: str, timeout: float, window: tuple[int, int]) -> subprocess.CompletedProcess:
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install it: apt-get install chromium; or set MEMA_CHROMIUM)")
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state from earlier runs
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}", "--hide-scrollbars",
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # any fetch would fail loudly
               "--virtual-time-budget=3000", *args, url]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=profile)
    if r.returncode != 0:
        raise RuntimeError(f"{Path(browser).name} failed ({r.returncode}): {r.stderr[-800:]}")
    return r


def dump_dom(page: Path, fragment: str = "", browser: str | None = None, timeout: float = 60,
             window: tuple[int, int] = WINDOW) -> str:
    r = _run(browser, ["--dump-dom"], page.resolve().as_uri() + fragment, timeout, window)
    if "<html" not in r.stdout:
        raise RuntimeError(f"the browser returned no page for {page.name}: {r.stderr[-800:]}")
    return r.stdout


def screenshot(page: Path, out: Path, browser: str | None = None, timeout: float = 60, window: tuple[int, int] = WINDOW) -> Path:
    """A PNG of the top ``window`` of ``page`` as headless Chromium draws it."""
    out = Path(out).resolve()
    _run(browser, [f"--screenshot={out}"], page.resolve().as_uri(), timeout, window)
    if not out.exists() or out.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise RuntimeError(f"no screenshot written for {page.name}")
    return out


# Runs in the page after its own script: measures every rendered text and writes the findings into
# the DOM (data-layout on <html>), which --dump-dom then carries out of the browser.
LAYOUT_JS = r"""
(() => {
  const tol = 1.5, problems = [];
  const R = r => [Math.round(r.left), Math.round(r.top), Math.round(r.right), Math.round(r.bottom)];
  const inside = (r, b) => r.left >= b.left - tol && r.right <= b.right + tol && r.top >= b.top - tol && r.bottom <= b.bottom + tol;
  const isInline = e => getComputedStyle(e).display.startsWith('inline') && getComputedStyle(e).display !== 'inline-block';
  const boxOf = e => { while (e.parentElement && isInline(e)) e = e.parentElement; return e; };
  const clipped = e => { for (let a = e; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if ((s.overflowX === 'hidden' || s.overflowX === 'clip') && a.scrollWidth > a.clientWidth + 1) return a; }
    return null; };
  if (OPEN_DETAILS) document.querySelectorAll('details').forEach(d => { d.open = true; });  // measure what a reader can unfold
  let texts = 0, svgTexts = 0;
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walk.nextNode(); t; t = walk.nextNode()) {
    const s = t.textContent.trim();
    const el = t.parentElement;
    if (!s || el.closest('script,style,title,svg')) continue;
    const d = el.closest('details');  // the body of a closed <details> is laid out but not shown
    if (d && !d.open && !el.closest('summary')) continue;
    if (el.checkVisibility && !el.checkVisibility({visibilityProperty: true})) continue;
    const range = document.createRange(); range.selectNodeContents(t);
    const rects = Array.from(range.getClientRects()).filter(r => r.width > 0.5 && r.height > 0.5);
    if (!rects.length) continue;  // not drawn (e.g. inside a closed <details>)
    texts++;
    const box = boxOf(el), b = box.getBoundingClientRect();
    const out = rects.find(r => !inside(r, b));
    if (out) problems.push({kind: 'text outside its box', text: s.slice(0, 60), rect: R(out), box: R(b), tag: box.tagName.toLowerCase()});
    const c = clipped(box);
    if (c) problems.push({kind: 'text clipped by its overflow-hidden box', text: s.slice(0, 60), tag: c.tagName.toLowerCase()});
  }
  document.querySelectorAll('svg').forEach((svg, k) => {
    const sb = svg.getBoundingClientRect();
    const items = Array.from(svg.querySelectorAll('text')).filter(t => t.textContent.trim())
      .map(t => ({t: t.textContent.trim(), r: t.getBoundingClientRect()})).filter(o => o.r.width > 0);
    svgTexts += items.length;
    items.forEach(o => { if (!inside(o.r, sb)) problems.push({kind: 'SVG text outside its SVG', svg: k, text: o.t, rect: R(o.r), box: R(sb)}); });
    for (let i = 0; i < items.length; i++) for (let j = i + 1; j < items.length; j++) {
      const a = items[i].r, b = items[j].r;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > tol && h > tol) problems.push({kind: 'SVG texts overlap', svg: k, text: items[i].t + ' / ' + items[j].t, rect: R(a), box: R(b)});
    }
  });
  document.querySelectorAll('img').forEach(img => {
    const b = boxOf(img.parentElement).getBoundingClientRect(), r = img.getBoundingClientRect();
    if (!img.complete || img.naturalWidth === 0) problems.push({kind: 'image not loaded', text: img.alt});
    else if (!inside(r, b)) problems.push({kind: 'image outside its box', text: img.alt, rect: R(r), box: R(b)});
  });
  document.querySelectorAll('*').forEach(e => {  // a table that needs sideways scrolling is not read at a glance
    const s = getComputedStyle(e);
    if ((s.overflowX === 'auto' || s.overflowX === 'scroll') && e.scrollWidth > e.clientWidth + 1)
      problems.push({kind: 'box scrolls sideways', text: (e.textContent || '').trim().slice(0, 40), rect: [0, 0, e.scrollWidth, 0], box: [0, 0, e.clientWidth, 0]});
  });
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 1)
    problems.push({kind: 'page wider than the window', text: '', rect: [0, 0, page.scrollWidth, 0], box: [0, 0, window.innerWidth, 0]});
  document.documentElement.dataset.layout = JSON.stringify({texts, svgTexts, svgs: document.querySelectorAll('svg').length, problems});
})();
"""


def measure_layout(page: Path, browser: str | None = None, window: tuple[int, int] = WINDOW, open_details: bool = True) -> dict:
    """Load a copy of ``page`` with :data:`LAYOUT_JS` appended; returns {texts, svgTexts, svgs, problems}.
    With ``open_details``, every ``<details>`` is opened first, so its content is measured too."""
    text = Path(page).read_text()
    probe = f"<script>const OPEN_DETAILS = {'true' if open_details else 'false'};{LAYOUT_JS}</script>"
    text = text.replace("</body>", probe + "</body>") if "</body>" in text else text + probe
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(page).name  # beside nothing: the pages are self-contained
        copy.write_text(text)
        dom = dump_dom(copy, browser=browser, window=window)

    class _Html(HTMLParser):
        layout = None

        def handle_starttag(self, tag, attrs):
            if tag == "html" and self.layout is None:
                self.layout = dict(attrs).get("data-layout")

    parser = _Html()
    parser.feed(dom)
    if not parser.layout:
        raise RuntimeError(f"the layout probe did not run in {Path(page).name}")
    return json.loads(parser.layout)


def layout_problems(page: Path, browser: str | None = None, window: tuple[int, int] = WINDOW, open_details: bool = True) -> list[str]:
    """One line per text outside its box, SVG text outside its plot, or pair of overlapping SVG texts."""
    info = measure_layout(page, browser, window, open_details)
    out = []
    for p in info["problems"]:
        where = f" at {p['rect']} (box {p['box']})" if "rect" in p else ""
        out.append(f"{p['kind']}: {p['text']!r}{where}")
    return out


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


def check_page(page: Path, sort_key: str = "kappa", browser: str | None = None, layout: bool = True) -> dict:
    """Load ``page`` sorted by ``sort_key`` and return what the browser rendered; raises on a problem
    (with ``layout``, also on any :func:`layout_problems`)."""
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
    if layout:
        problems += layout_problems(page, browser)
    if problems:
        raise AssertionError("; ".join(problems))
    return {"tables": len(parsed.tables), "rows": n_rows, "points": len(parsed.points),
            "order": [[r["method"] for r in t["rows"]] for t in parsed.tables]}
