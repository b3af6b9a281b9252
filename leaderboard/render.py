"""``mema-leaderboard render``: the board as Markdown tables and a static HTML page.

The page is one self-contained file (inline CSS, JavaScript and SVG; no fonts or scripts fetched),
so it works from a file:// URL with no network.

Layout: one section per corpus version *and* suite version (entries measured by different suites are
never ranked together; sections other than the newest corpus version under the installed suite are
history). Inside a section, face-preserving methods (an independent detector finds a face in at least
95% of the outputs) and obfuscation methods get their own table, plot and Pareto frontier.

Headline protection is the *worst case*: ``privacy.worst_case_protection`` (minimum over the attacker
zoo) when the entry has it, else the minimum over the attackers it does carry (the whole-face
recognisers of older suites, marked as such), and never above an adaptive attacker's figure.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from mema.evaluation.plot import Point, scatter_svg
from mema.evaluation.results import Metric

from .board import Board
from .schema import ATTACKERS, FACE_PRESERVING_MIN, Entry, Verification, known_corpora

RECOGNISERS = ("sface", "dlib-resnet")
CATEGORIES = {
    "face": "Face-preserving methods",
    "obfuscation": "Obfuscation methods",
    "unknown": "Methods without a face-presence figure",
}
CATEGORY_NOTES = {
    "face": f"a face is detected in at least {FACE_PRESERVING_MIN:.0%} of the outputs",
    "obfuscation": f"a face is found in fewer than {FACE_PRESERVING_MIN:.0%} of the outputs: privacy partly bought by destroying the face",
    "unknown": "the entry records no face-detected rate",
}
MARK_START, MARK_END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"  # the README's board block
PARTIAL_MARK = "‡"  # worst case over the whole-face recognisers only
MEDIAPIPE_MARK = "§"  # face-detected rate from MediaPipe (the landmarker), not the independent gate


@dataclass
class Fig:
    """One figure as the board shows it."""

    value: float | None
    ci: tuple[float, float] | None = None
    n: int = 0
    note: str = ""

    @classmethod
    def of(cls, m: Metric | None) -> "Fig | None":
        return None if m is None else cls(m.value, tuple(m.ci95) if m.ci95 else None, m.n, m.note)


@dataclass
class Row:
    entry: Entry
    file: str
    verification: Verification | None
    figs: dict[str, Fig | None] = field(default_factory=dict)
    attackers: dict[str, Fig] = field(default_factory=dict)
    worst_attacker: str | None = None
    partial: bool = False  # worst case over the whole-face recognisers only
    face_source: str | None = None  # "gate" or "mediapipe"
    category: str = "unknown"
    restoration: str = "no"
    learned: dict[str, Fig] = field(default_factory=dict)
    verified: dict[str, float | None] = field(default_factory=dict)
    on_frontier: bool = False

    @property
    def status(self) -> str:
        return self.verification.status if self.verification else "claimed"

    @property
    def values(self) -> dict[str, float | None]:
        return {k: (f.value if f else None) for k, f in self.figs.items()}


@dataclass
class Section:
    name: str
    version: str
    suite: str
    split: str
    n_samples: int
    manifest_sha256: str
    current: bool
    history_reason: str
    rows: list[Row]

    @property
    def corpus(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def key(self) -> str:
        return f"{self.corpus}/suite-{self.suite}"

    def categories(self) -> list[tuple[str, list[Row]]]:
        return [(c, [r for r in self.rows if r.category == c]) for c in CATEGORIES if any(r.category == c for r in self.rows)]

    def attackers(self) -> list[str]:
        found = {a for r in self.rows for a in r.attackers}
        return [a for a in ATTACKERS if a in found] + sorted(found - set(ATTACKERS))


def worst_protection(metrics: dict[str, float | None]) -> float | None:
    """The lowest identity protection rate among ``metrics`` (any recogniser or attacker)."""
    vals = [v for k, v in metrics.items() if k.startswith("identity.") and k.endswith(".protection_rate") and v is not None]
    return min(vals) if vals else None


def _attackers(entry: Entry) -> tuple[dict[str, Fig], bool]:
    """Per-attacker protection; True when the entry has no attacker zoo (only the whole-face recognisers
    of older suites, and any adaptive attacker added at submission)."""
    m = entry.metrics
    out = {k.removeprefix("privacy.protection."): Fig.of(v) for k, v in m.items() if k.startswith("privacy.protection.")}
    partial = not out and "privacy.worst_case_protection" not in m
    for r in RECOGNISERS:  # older suites: the recognisers' own figures
        if r not in out and f"identity.{r}.protection_rate" in m:
            out[r] = Fig.of(m[f"identity.{r}.protection_rate"])
    for a in entry.adaptive:
        vals = {k: v for k, v in a.metrics.items() if k.startswith("identity.") and k.endswith(".protection_rate") and v.value is not None}
        if vals:
            out[f"adaptive:{a.attacker}"] = Fig.of(min(vals.values(), key=lambda v: v.value))
    return {k: v for k, v in out.items() if v is not None and v.value is not None}, partial


def _row(item, entry: Entry, verification: Verification | None) -> Row:
    m = entry.metrics
    row = Row(entry, item.file, verification)
    row.attackers, row.partial = _attackers(entry)
    weakest = min(row.attackers, key=lambda a: row.attackers[a].value) if row.attackers else None
    worst = Fig.of(m.get("privacy.worst_case_protection"))
    if worst is None or worst.value is None:
        worst = row.attackers.get(weakest) if weakest else None
    elif weakest and row.attackers[weakest].value < worst.value:  # an adaptive attacker did better
        worst = row.attackers[weakest]
    # the attacker the worst case comes from, when the per-attacker figures show it (else its note says)
    row.worst_attacker = weakest if weakest and worst is not None and row.attackers[weakest].value == worst.value else None
    face = Fig.of(m.get("gate.face_detected_rate"))
    row.face_source = "gate" if face is not None else None
    if face is None and "geometry.face_detected_rate" in m:  # older suites: MediaPipe, the landmarker
        face, row.face_source = Fig.of(m["geometry.face_detected_rate"]), "mediapipe"
    if face is not None and face.value is not None:
        row.category = "face" if face.value >= FACE_PRESERVING_MIN else "obfuscation"
    wrong = [f for f in (Fig.of(m.get(f"reversibility.{r}.wrong_key_protection_rate")) for r in RECOGNISERS) if f and f.value is not None]
    row.figs = {
        "protection": worst,
        "protection_face": Fig.of(m.get("privacy.worst_case_protection_face")),
        "face_detected": face,
        "realism": Fig.of(m.get("gate.realism")),
        "top1": Fig.of(m.get("classification.top1")),
        "kappa": Fig.of(m.get("classification.kappa_vs_original")),
        "auroc": Fig.of(m.get("classification.auroc_macro")),
        "dice_ratio": Fig.of(m.get("segmentation.dice_ratio")),
        "psnr": Fig.of(m.get("reversibility.psnr")),
        "wrong_key": min(wrong, key=lambda f: f.value) if wrong else None,
    }
    if entry.method.reversible:  # "sealed" or "learned" (MethodInfo.params); older methods described it as "restoration"
        params = entry.method.params
        row.restoration = str(params["reversibility"]) if "reversibility" in params else (
            f"yes: {params['restoration']}" if "restoration" in params else "yes")
    row.learned = {k.removeprefix("reversibility.learned."): Fig.of(v) for k, v in m.items() if k.startswith("reversibility.learned.")}
    if verification is not None:
        meas = verification.measured
        row.verified = {"protection": meas.get("privacy.worst_case_protection", worst_protection(meas)),
                        "kappa": meas.get("classification.kappa_vs_original")}
    return row


def mark_frontier(rows: list[Row]) -> None:
    """Pareto frontier of (worst-case protection, kappa), both higher-better."""
    pts = [(r, r.values["protection"], r.values["kappa"]) for r in rows]
    pts = [(r, x, y) for r, x, y in pts if x is not None and y is not None]
    for r, x, y in pts:
        r.on_frontier = not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for _, x2, y2 in pts)


def _version_key(v: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in v.split("."))


def collect(board: Board) -> list[Section]:
    """The board's sections, current ones first; rows sorted by worst-case protection, frontier per category."""
    from mema.evaluation.results import SUITE_VERSION

    groups: dict[tuple[str, str, str], list[Row]] = {}
    for item, entry in board.active():
        row = _row(item, entry, board.latest_verification(item.sha256))
        groups.setdefault((entry.corpus.name, entry.corpus.version, entry.suite_version), []).append(row)
    # The current suite: the installed one, or a newer one entries were already measured with.
    newest_suite = max([SUITE_VERSION] + [suite for _, _, suite in groups], key=_version_key)
    sections = []
    for (name, version, suite), rows in groups.items():
        for cat in CATEGORIES:
            mark_frontier([r for r in rows if r.category == cat])
        rows.sort(key=lambda r: (-(r.values["protection"] if r.values["protection"] is not None else -1),
                                 -(r.values["kappa"] if r.values["kappa"] is not None else -2), r.entry.method.name))
        newest = max(known_corpora().get(name, {version: ""}), key=_version_key)
        reasons = ([f"{name} {newest} is the current corpus version"] if version != newest else []) + \
                  ([f"measured by suite {suite}; the current suite is {newest_suite}"] if suite != newest_suite else [])
        e = rows[0].entry
        sections.append(Section(name, version, suite, e.split, e.n_samples, e.corpus.manifest_sha256, not reasons,
                                "; ".join(reasons), rows))
    # current first, then by corpus name; newest corpus version and suite first (stable sorts, last key first)
    sections.sort(key=lambda s: _version_key(s.suite), reverse=True)
    sections.sort(key=lambda s: _version_key(s.version), reverse=True)
    sections.sort(key=lambda s: (not s.current, s.name))
    return sections


# --- formatting ---------------------------------------------------------------------------------
KINDS = {"pct": (100, 1), "num3": (1, 3), "num2": (1, 2), "num1": (1, 1)}


def _num(v: float | None, kind: str) -> str:
    if v is None:
        return "–"
    scale, digits = KINDS[kind]
    return f"{scale * v:.{digits}f}"


def _ci_text(f: Fig | None, kind: str) -> str:
    if f is None or f.value is None:
        return ""
    if f.ci is None:
        return f"n = {f.n}, no CI" if 0 < f.n < 2 else "no CI recorded"
    return f"[{_num(f.ci[0], kind)}, {_num(f.ci[1], kind)}]"


def _md_fig(f: Fig | None, kind: str, mark: str = "") -> str:
    if f is None or f.value is None:
        return "–"
    ci = _ci_text(f, kind)
    if f.ci:
        return f"{_num(f.value, kind)}{mark} {ci}"
    return f"{_num(f.value, kind)}{mark} (n = {f.n})" if 0 < f.n < 2 else f"{_num(f.value, kind)}{mark} (no CI)"


def _attacker_label(a: str) -> str:
    return {"sface": "SFace", "dlib-resnet": "dlib", "periocular": "periocular", "adaptive": "adaptive",
            "periocular-sface": "periocular-SFace", "deanon": "de-anon.", "linkability": "linkability",
            "same-key": "same-key"}.get(a, a.removeprefix("adaptive:") + " (adaptive)")


def _columns(section: Section) -> list[tuple[str, str, str]]:
    """(key, header, kind) of the figure columns this section needs."""
    rows = section.rows
    has = lambda k: any(r.figs.get(k) and r.figs[k].value is not None for r in rows)
    cols = [("protection", "Worst-case protection (%)", "pct")]
    if has("protection_face"):
        cols.append(("protection_face", "Worst case, outputs with a face (%)", "pct"))
    cols += [(f"att:{a}", f"{_attacker_label(a)} (%)", "pct") for a in section.attackers()]
    cols.append(("face_detected", "Face detected (%)", "pct"))
    if has("realism"):
        cols.append(("realism", "Realism", "num2"))
    cols += [("top1", "Top-1 (%)", "pct"), ("kappa", "κ vs original", "num3")]
    if has("dice_ratio"):
        cols.append(("dice_ratio", "Dice ratio", "num2"))
    if any(r.entry.method.reversible for r in rows):
        cols += [("psnr", "Restored PSNR (dB)", "num1"), ("wrong_key", "Wrong-key protection (%)", "pct")]
    return cols


def _fig(r: Row, key: str) -> Fig | None:
    return r.attackers.get(key[4:]) if key.startswith("att:") else r.figs.get(key)


def _mark(r: Row, key: str) -> str:
    if key == "protection" and r.partial:
        return PARTIAL_MARK
    if key == "face_detected" and r.face_source == "mediapipe":
        return MEDIAPIPE_MARK
    return ""


def _restoration_text(r: Row) -> str:
    if not r.entry.method.reversible:
        return "no"
    text = {"yes": "yes (source not stated)"}.get(r.restoration, r.restoration)
    if r.learned:
        parts = [f"PSNR {_num(f.value, 'num1')} dB" if k == "psnr" else f"{k} {_num(f.value, 'num3')}" for k, f in sorted(r.learned.items())
                 if f and f.value is not None]
        text += f"; learned restorer: {', '.join(parts)}"
    return text


def _footnotes(section: Section) -> list[str]:
    notes = []
    if any(r.partial for r in section.rows):
        notes.append(f"{PARTIAL_MARK} worst case over the 2 whole-face recognisers only (SFace, dlib ResNet; and any adaptive "
                     "attacker named in the details): this suite had no periocular, de-anonymization or linkability attacker, "
                     "so the figure overstates protection.")
    if any(r.face_source == "mediapipe" for r in section.rows):
        notes.append(f"{MEDIAPIPE_MARK} face detected by MediaPipe (the landmarker several methods use), not the independent "
                     "detector of the face-presence gate.")
    if any(f and f.value is not None and f.ci is None and not 0 < f.n < 2 for r in section.rows for k, f in r.figs.items()):
        notes.append("no CI recorded: this suite did not record an interval for that figure.")
    return notes


# --- Markdown -----------------------------------------------------------------------------------
def render_markdown(board: Board) -> str:
    out = ["<!-- generated by `mema-leaderboard render`; do not edit -->", ""]
    sections = collect(board)
    for s in sections:
        title = f"### {s.corpus}, suite {s.suite} ({s.split} split, n = {s.n_samples})" + ("" if s.current else " — history")
        out += [title, ""]
        if not s.current:
            out += [f"History: {s.history_reason}. Not ranked with other sections.", ""]
        cols = _columns(s)
        for cat, rows in s.categories():
            out += [f"**{CATEGORIES[cat]}** ({CATEGORY_NOTES[cat]})", "",
                    "| Method | Reversible | " + " | ".join(h for _, h, _ in cols) + " | Status |",
                    "|---|---|" + "---|" * len(cols) + "---|"]
            for r in rows:
                name = f"**{r.entry.method.name}**" if r.on_frontier else r.entry.method.name
                cells = [_md_fig(_fig(r, k), kind, _mark(r, k)) for k, _, kind in cols]
                out.append(f"| {name} | {_restoration_text(r)} | " + " | ".join(cells) + f" | {r.status} |")
            out.append("")
        out += ["Bold: on the privacy–utility Pareto frontier of its category (worst-case protection vs κ). "
                "Figures with their 95% CI in brackets. Protection = 1 − rank-1 gallery match; κ = Cohen's kappa between "
                "the frozen classifier's predictions on original and de-identified images. Definitions: docs/metrics.md.", ""]
        out += [n + "\n" for n in _footnotes(s)]
    if not sections:
        out.append("No entries yet.")
    return "\n".join(out).rstrip("\n") + "\n"


# --- HTML ---------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1500px;color:#222;padding:0 1em}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:11.5px;margin:.5em 0 1em;
  font-family:'Segoe UI',Roboto,'Helvetica Neue','Liberation Sans',Arial,sans-serif}
th,td{padding:3px 2px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
th{cursor:pointer;background:#f4f4f4;user-select:none;font-weight:600;min-width:3.2em}
th.sorted-desc::after{content:" ▼"}th.sorted-asc::after{content:" ▲"}
td:first-child,th:first-child,td.restoration{text-align:left}.frontier td:first-child{font-weight:bold}
td small.ci{display:block;color:#666;font-size:9.5px;white-space:nowrap}td.method small{display:block;font-weight:normal}
td.restoration{max-width:11em}.verified{color:#1a7f37}.mismatch{color:#b42318}.claimed{color:#777}details{margin:.3em 0}small{color:#666}
.history{color:#555}h4{margin:1.2em 0 .2em}.plot{max-width:100%;overflow-x:auto}
"""

JS = """
function sortTable(table, key, desc){
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const val = r => { const c = r.querySelector('td[data-key="'+key+'"]'); const v = c ? c.dataset.v : '';
                     const x = parseFloat(v); return isNaN(x) ? (v === '' ? null : v) : x; };
  rows.sort((a, b) => { const x = val(a), y = val(b);
    if (x === null && y === null) return 0; if (x === null) return 1; if (y === null) return -1;
    const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
    return desc ? -c : c; });
  rows.forEach(r => body.appendChild(r));
  table.querySelectorAll('th').forEach(th => th.classList.remove('sorted-asc', 'sorted-desc'));
  const th = table.querySelector('th[data-key="'+key+'"]');
  if (th) th.classList.add(desc ? 'sorted-desc' : 'sorted-asc');
  table.dataset.sortKey = key; table.dataset.sortDesc = desc ? '1' : '0';
}
document.querySelectorAll('table.board').forEach(table => {
  table.querySelectorAll('th').forEach(th => th.addEventListener('click', () => {
    const same = table.dataset.sortKey === th.dataset.key;
    sortTable(table, th.dataset.key, same ? table.dataset.sortDesc !== '1' : th.dataset.kind !== 'text');
  }));
  const m = /sort=([a-z0-9_:-]+)(:asc)?/.exec(location.hash);
  sortTable(table, m ? m[1] : 'protection', !(m && m[2]));
});
document.documentElement.dataset.ready = '1';
"""


def _e(x) -> str:
    return html.escape(str(x))


def _cell(key: str, kind: str, f: Fig | None, mark: str = "") -> str:
    data = "" if f is None or f.value is None else f"{f.value:.6g}"
    shown = _num(None if f is None else f.value, kind) + mark
    ci = _ci_text(f, kind)
    ci_html = f'<small class="ci">{_e(ci)}</small>' if ci else ""
    title = f' title="{_e(f.note)}"' if f is not None and f.note else ""
    return f'<td data-key="{_e(key)}" data-v="{data}"{title}>{_e(shown)}{ci_html}</td>'


def _method_cell(r: Row) -> str:
    m = r.entry.method
    if m.code_url and m.code_url.startswith(("https://", "http://")):
        link = f' <a href="{_e(m.code_url)}">code</a>'
    else:  # a path inside a repository, shown as text: a relative link would not resolve from the page
        link = f'<small>code: {_e(m.code_url)}</small>' if m.code_url else ""
    paper = f"<small>{_e(m.paper)}</small>" if m.paper else ""
    return f'<td class="method" data-key="method" data-v="{_e(m.name)}">{_e(m.name)} <small>v{_e(m.version)}</small>{link}{paper}</td>'


def _status_cell(r: Row) -> str:
    extra = ""
    if r.verified:
        extra = (f'<small class="ci">re-run: {_e(_num(r.verified.get("protection"), "pct"))}% / κ '
                 f'{_e(_num(r.verified.get("kappa"), "num3"))}</small>')
    return f'<td data-key="status" data-v="{_e(r.status)}" class="{_e(r.status)}">{_e(r.status)}{extra}</td>'


def _table(cols, rows: list[Row]) -> str:
    head = ('<th data-key="method" data-kind="text">Method</th><th data-key="restoration" data-kind="text">Reversible</th>'
            + "".join(f'<th data-key="{_e(k)}" data-kind="{kind}">{_e(h)}</th>' for k, h, kind in cols)
            + '<th data-key="status" data-kind="text">Status</th>')
    body = []
    for r in rows:
        cells = [_method_cell(r), f'<td class="restoration" data-key="restoration" data-v="{_e(r.restoration)}">{_e(_restoration_text(r))}</td>']
        cells += [_cell(k, kind, _fig(r, k), _mark(r, k)) for k, _, kind in cols]
        cells.append(_status_cell(r))
        body.append(f'<tr class="{"frontier" if r.on_frontier else ""}" data-method="{_e(r.entry.method.name)}">{"".join(cells)}</tr>')
    return f'<div class="scroll"><table class="board"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _details(rows: list[Row]) -> str:
    parts = []
    for r in rows:
        blocks = []
        if r.attackers:
            items = "".join(f"<li>{_e(_attacker_label(a))}: {_e(_num(f.value, 'pct'))} % {_e(_ci_text(f, 'pct'))}"
                            f"{' — ' + _e(f.note) if f.note else ''}</li>" for a, f in r.attackers.items())
            worst = r.figs.get("protection")
            note = ""
            if worst is not None and worst.value is not None:
                named = worst.note or (f"weakest: {_attacker_label(r.worst_attacker)}" if r.worst_attacker else "")
                note = f" (worst case {_num(worst.value, 'pct')} %{'; ' + named if named else ''})"
            blocks.append(f"<p><b>Attackers</b>{_e(note)}</p><ul>{items}</ul>")
        auroc = r.figs.get("auroc")
        if auroc and auroc.value is not None:
            blocks.append(f"<p>Macro AUROC {_num(auroc.value, 'num3')} {_e(_ci_text(auroc, 'num3'))}</p>")
        if r.learned:
            blocks.append(f"<p><b>Restoration</b>: {_e(_restoration_text(r))}</p>")
        for name, table in sorted(r.entry.breakdowns.items()):
            cells = "".join(f"<th>{_e(k)}</th>" for k in table)
            vals = "".join(f"<td>{_num(m.value, 'pct')}<small class=\"ci\">n={m.n}</small></td>" for m in table.values())
            blocks.append(f"<p><b>{_e(name.replace('_', ' '))}</b> (%)</p><div class=\"scroll\"><table><tr>{cells}</tr><tr>{vals}</tr></table></div>")
        if r.verification is not None and r.verification.differences:
            diffs = "".join(f"<li>{_e(d)}</li>" for d in r.verification.differences)
            blocks.append(f'<p class="mismatch"><b>Re-run differences</b> ({_e(r.verification.date)})</p><ul>{diffs}</ul>')
        parts.append(f'<details data-method="{_e(r.entry.method.name)}"><summary>{_e(r.entry.method.name)}: '
                     f'{_e(r.entry.method.description or "")}</summary>{"".join(blocks)}</details>')
    return "".join(parts)


def frontier_svg(rows: list[Row]) -> str:
    """Worst-case protection (x) against kappa (y) with 95% CIs; frontier joined; reversible methods as diamonds."""
    pts = []
    for r in rows:
        p, k = r.figs.get("protection"), r.figs.get("kappa")
        if p is None or k is None or p.value is None or k.value is None:
            continue
        name = r.entry.method.name
        label = name + (f" (PSNR {r.values['psnr']:.1f} dB)" if r.entry.method.reversible and r.values.get("psnr") is not None else "")
        pts.append(Point(name, p.value, k.value, label, f"{name}: protection {_num(p.value, 'pct')} %, κ {_num(k.value, 'num3')}",
                         diamond=r.entry.method.reversible, highlight=r.on_frontier, x_ci=p.ci, y_ci=k.ci))
    if not pts:
        return "<p><small>No entry here has both worst-case protection and κ.</small></p>"
    front = [p for p in pts if p.highlight]
    return f'<div class="plot">{scatter_svg(pts, x_label="worst-case protection (%) →", y_label="κ vs original →", staircase=front)}</div>'


def render_html(board: Board) -> str:
    sections = collect(board)
    parts = []
    for i, s in enumerate(sections):
        if i and s.current is False and sections[i - 1].current:
            parts.append("<h2 class=\"history\">History</h2><p><small>Earlier corpus or suite versions, kept as measured. "
                         "Not ranked with the sections above.</small></p>")
        cols = _columns(s)
        body = [f'<section data-corpus="{_e(s.corpus)}" data-suite="{_e(s.suite)}" class="{"current" if s.current else "history"}">'
                f"<h2>{_e(s.corpus)}, suite {_e(s.suite)}{'' if s.current else ' (history)'}</h2>"
                f"<p><small>{_e(s.split)} split, n = {s.n_samples}; corpus sha256 {s.manifest_sha256[:16]}…"
                + (f"; history: {_e(s.history_reason)}" if not s.current else "") + "</small></p>"]
        for cat, rows in s.categories():
            body.append(f'<h3>{_e(CATEGORIES[cat])}</h3><p><small>{_e(CATEGORY_NOTES[cat])}.</small></p>'
                        f'<div data-category="{cat}">{_table(cols, rows)}<h4>Privacy–utility, {_e(CATEGORIES[cat].lower())}</h4>'
                        f"{frontier_svg(rows)}</div>")
        notes = "".join(f"<li>{_e(n)}</li>" for n in _footnotes(s))
        body.append("<p><small>Circles: irreversible methods; diamonds: reversible (label: PSNR of the key-restored image); "
                    "bars: 95% CIs. Orange: on the Pareto frontier of its category (no other method of the category is at "
                    "least as good on both axes).</small></p>" + (f"<ul><small>{notes}</small></ul>" if notes else ""))
        body.append(f"<h3>Details</h3>{_details(s.rows)}</section>")
        parts.append("".join(body))
    content = "".join(parts) or "<p>No entries yet.</p>"
    data = json.dumps({s.key: [r.entry.method.name for r in s.rows] for s in sections})
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>MeMa leaderboard</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body>'
            "<h1>MeMa leaderboard</h1><p>How much identity each de-identification method hides, and how much clinical "
            "signal it keeps. <b>Worst-case protection</b>: 1 − rank-1 gallery match of the strongest attacker the entry "
            "was measured against; <b>face detected</b>: outputs in which an independent detector finds a face "
            "(methods below 95% are obfuscation and ranked apart); <b>κ</b>: agreement of the frozen eye-disease classifier "
            "on original vs de-identified images. Every figure with its 95% CI. <b>Status</b>: "
            "<span class='verified'>verified</span> = re-run by <code>mema-leaderboard verify</code> within tolerance; "
            "<span class='claimed'>claimed</span> = as submitted. Click a column header to sort.</p>"
            f'{content}<script type="application/json" id="board-data">{html.escape(data, quote=False)}</script>'
            f"<script>{JS}</script></body></html>\n")


def render(board: Board, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "LEADERBOARD.md", out_dir / "index.html"
    md.write_text(render_markdown(board))
    page.write_text(render_html(board))
    return md, page


def splice_readme(readme: Path, markdown: str) -> None:
    """Replace the README's board block with ``markdown``."""
    text = readme.read_text()
    if MARK_START not in text or MARK_END not in text:
        raise ValueError(f"{readme} has no {MARK_START} ... {MARK_END} block to replace")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    readme.write_text(f"{head}{MARK_START}\n{markdown}{MARK_END}{tail}")
