"""Human-facing outputs of a run: the printed summary and a self-contained ``report.html``.

The HTML embeds its images (base64 PNG) and draws the privacy-utility plot as inline SVG, so it
opens from a file:// URL with no network and its text can be checked in a browser. The plot places
this run beside any other runs of the same corpus found next to it (sibling folders with a
results.json), e.g. the classic baselines under ``runs/``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from mema.corpus.schema import DISEASES
from mema.evaluation.results import Results
from mema.imageio import png_bytes, read_rgb

HEADLINE = [
    ("privacy.worst_case_protection", "protection, worst case"),
    ("privacy.worst_case_protection_face", "  outputs with a face"),
    ("gate.face_detected_rate", "face detected"),
    ("identity.sface.protection_rate", "protection (SFace)"),
    ("identity.dlib-resnet.protection_rate", "protection (dlib)"),
    ("identity.sface.id_dis", "ID-Dis (SFace)"),
    ("identity.dlib-resnet.id_dis", "ID-Dis (dlib)"),
    ("classification.top1", "top-1"),
    ("classification.top1_original", "top-1 on originals"),
    ("classification.kappa_vs_original", "kappa vs original"),
    ("classification.auroc_macro", "AUROC"),
    ("geometry.landmark_error_eye", "eye landmark error"),
    ("reversibility.psnr", "restored PSNR"),
]


def _fmt(m) -> str:
    if m.value is None:
        return "n/a"
    ci = f" [{m.ci95[0]:.3f}, {m.ci95[1]:.3f}]" if m.ci95 else ""
    return f"{m.value:.3f}{ci}"


def print_summary(results: Results) -> None:
    print(f"\n{results.method['name']} on {results.corpus.name} {results.corpus.version} {results.corpus.split} (n={results.corpus.n_samples})")
    for key, label in HEADLINE:
        if key in results.metrics:
            m = results.metrics[key]
            print(f"  {label:24s} {_fmt(m):28s} n={m.n}")
    attackers = [(k.removeprefix("privacy.protection."), m) for k, m in results.metrics.items() if k.startswith("privacy.protection.")]
    if attackers:
        print("  protection per attacker:")
        for name, m in attackers:
            print(f"    {name:22s} {_fmt(m):28s} n={m.n}")
    for stage, t in results.timings.items():
        rate = f"{t.images_per_s:.1f} img/s" if t.images_per_s else ""
        print(f"  time {stage:19s} {t.seconds:8.1f} s  {rate}")


def _b64_png(arr: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(arr)).decode()


def _grid(evaluation, per_class: int = 1) -> str:
    """One sample per disease: original / output / restored / wrong key."""
    rows = []
    stages = [("original", None), ("de-identified", "outputs")]
    if (evaluation.out / "restored").exists():
        stages += [("restored", "restored"), ("wrong key", "wrongkey")]
    for d in DISEASES:
        recs = [r for r in evaluation.records if r.disease == d][:per_class]
        for r in recs:
            cells = []
            for label, folder in stages:
                img = evaluation.corpus.load_image(r) if folder is None else read_rgb(evaluation.out / folder / f"{r.id}.png")[0]
                cells.append(f'<td><img src="{_b64_png(img)}" width="128" height="128" alt="{label} {html.escape(r.id)}"></td>')
            rows.append(f"<tr><th>{d}<br><small>{html.escape(r.id)} {r.severity}</small></th>{''.join(cells)}</tr>")
    head = "".join(f"<th>{s}</th>" for s, _ in stages)
    return f'<table class="grid"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def worst_case(metrics: dict) -> tuple[float | None, tuple | None, str]:
    """(value, CI, what it is the minimum of) of the headline protection in a results ``metrics`` mapping
    (Metric objects or their JSON dicts): ``privacy.worst_case_protection`` when the run has it, else the
    lowest recogniser protection."""
    get = lambda m, k: (m.get(k) if isinstance(m, dict) else getattr(m, k))
    w = metrics.get("privacy.worst_case_protection")
    if w is not None and get(w, "value") is not None:
        return get(w, "value"), get(w, "ci95"), "all attackers"
    rates = [(k, v) for k, v in metrics.items() if k.startswith("identity.") and k.endswith(".protection_rate") and get(v, "value") is not None]
    if not rates:
        return None, None, ""
    _, v = min(rates, key=lambda kv: get(kv[1], "value"))
    return get(v, "value"), get(v, "ci95"), "the whole-face recognisers"


def _plot(out: Path, results: Results) -> str:
    from mema.evaluation.plot import Point, scatter_svg

    runs = {}
    for path in sorted(out.parent.glob("*/results.json")):
        try:
            other = json.loads(path.read_text())
            if other["corpus"]["manifest_sha256"] == results.corpus.manifest_sha256:
                runs[other["method"]["name"]] = (other["metrics"], bool(other["method"].get("reversible")))
        except (KeyError, ValueError, TypeError, OSError):
            continue
    me = results.method["name"]
    runs[me] = (results.metrics, bool(results.method.get("reversible")))  # this run, even before its file is read back
    points, basis = [], set()
    for name, (metrics, reversible) in sorted(runs.items()):
        x, x_ci, what = worst_case(metrics)
        k = metrics.get("classification.kappa_vs_original")
        y = None if k is None else (k.get("value") if isinstance(k, dict) else k.value)
        if x is None or y is None:
            continue
        y_ci = k.get("ci95") if isinstance(k, dict) else k.ci95
        basis.add(what)
        points.append(Point(name, x, y, name, f"{name}: protection {100 * x:.1f} %, kappa {y:.3f}", diamond=reversible,
                            highlight=name == me, x_ci=tuple(x_ci) if x_ci else None, y_ci=tuple(y_ci) if y_ci else None))
    if not points:
        return "<p>The privacy-utility plot needs the identity and classification tasks.</p>"
    svg = scatter_svg(points, x_label="protection, worst case (%) →", y_label="κ vs original →", width=640, height=400,
                      highlight_colour="#dc2626", css_class="privacy-utility")
    return (f'<div class="plot">{svg}</div><p><small>Red: this run; blue: other runs of this corpus in {html.escape(out.parent.name)}/. '
            f"Protection is the worst case over {html.escape(' / '.join(sorted(basis)))}; bars are 95% CIs; "
            "diamonds are reversible methods. Up and right is better.</small></p>")


def write_report(out: Path, results: Results, evaluation) -> Path:
    rows = []
    for key, m in results.metrics.items():
        ci = f"[{m.ci95[0]:.4f}, {m.ci95[1]:.4f}]" if m.ci95 else ""
        val = "n/a" if m.value is None else f"{m.value:.4f}"
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{val}</td><td>{ci}</td><td>{m.n}</td><td>{html.escape(m.unit)}</td><td>{html.escape(m.note)}</td></tr>")
    bd = []
    for group, table in results.breakdowns.items():
        cells = "".join(f"<td>{html.escape(k)}: {'n/a' if v.value is None else f'{v.value:.3f}'} (n={v.n})</td>" for k, v in table.items())
        bd.append(f"<tr><th>{html.escape(group)}</th>{cells}</tr>")
    timing = "".join(f"<tr><td>{s}</td><td>{t.seconds:.1f} s</td><td>{t.images}</td><td>{t.images_per_s or ''}</td><td>{t.peak_rss_mb or ''}</td></tr>" for s, t in results.timings.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MeMa report: {html.escape(results.method['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left;vertical-align:top}} .grid img{{image-rendering:pixelated}}
td{{overflow-wrap:anywhere}} .plot{{max-width:100%;overflow-x:auto}}</style></head>
<body>
<h1>{html.escape(results.method['name'])} {html.escape(results.method['version'])}</h1>
<p>Corpus {html.escape(results.corpus.name)} {html.escape(results.corpus.version)} (manifest {results.corpus.manifest_sha256[:12]}),
split {results.corpus.split}, n = {results.corpus.n_samples}. Suite {results.suite_version}, git {results.git_hash or 'unknown'}, {results.created}.
{'Key id ' + html.escape(results.key_id) + '.' if results.key_id else ''}</p>
<h2>Images</h2>{_grid(evaluation)}
<h2>Privacy and utility</h2>{_plot(out, results)}
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>95% CI</th><th>n</th><th>unit</th><th>note</th></tr>{''.join(rows)}</table>
<h2>Breakdowns</h2><table>{''.join(bd)}</table>
<h2>Timings</h2><table><tr><th>stage</th><th>time</th><th>images</th><th>images/s</th><th>peak RSS MB</th></tr>{timing}</table>
<p>Definitions: docs/metrics.md. Method metadata: <code>{html.escape(json.dumps(results.method))}</code></p>
</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
