"""Step 4: physician review. Export a static sheet (HTML + CSV), import the decisions back.

``review export`` copies the samples that passed the leakage filter (synthetic images only) into
``<review>/images/``, writes ``review.csv`` (one row per sample: decision, new disease, new severity, notes)
and ``index.html`` (images with their labels and the instructions), and, for lesion classes (BCC, SCC), an
automatic mask proposal in ``mask_proposals/`` for physicians to correct. MeMa used SAM for proposals;
SAM has no offline weights here, so the proposal is a colour heuristic (reddened/pale skin against the
face's median colour), labelled as such.

``review import`` reads the filled CSV (and any corrected masks in ``<review>/masks/<id>.png``), refuses
unknown ids, decisions or labels (listing every bad row), and writes ``decisions.json``. Rows left
undecided are an error unless ``--undecided reject`` says what to do with them, so the corpus never
shrinks silently.
"""

from __future__ import annotations

import csv
import html
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np

from mema.corpus.schema import DISEASES, LESION_DISEASES, SEVERITIES
from mema.generation.stage import StageError, read_stage, write_stage
from mema.imageio import ImageFileError, atomic_write_bytes, read_rgb, write_png

COLUMNS = ["id", "sha256", "disease", "severity", "age", "gender", "decision", "new_disease", "new_severity", "notes"]
DECISIONS = ("accept", "reject")


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    e = sub.add_parser("export", help="write the review sheet")
    e.add_argument("--samples", required=True)
    e.add_argument("--filter", required=True, help="a finished `mema-generate filter` folder")
    e.add_argument("--output_dir", required=True)
    e.set_defaults(func=export)
    i = sub.add_parser("import", help="read the physicians' decisions back")
    i.add_argument("--review", required=True, help="the exported review folder")
    i.add_argument("--decisions", default=None, help="filled CSV (default: <review>/review.csv)")
    i.add_argument("--undecided", choices=["error", "reject"], default="error")
    i.set_defaults(func=import_decisions)


def propose_mask(rgb: np.ndarray) -> np.ndarray:
    """Heuristic lesion proposal: pixels far in colour from the image's median skin tone, central region."""
    x = rgb.astype(np.float32)
    h, w = x.shape[:2]
    centre = x[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3)
    dist = np.linalg.norm(x - np.median(centre, 0), axis=-1)
    mask = (dist > np.percentile(dist, 97)).astype(np.uint8)
    mask[: h // 8], mask[-h // 8 :], mask[:, : w // 8], mask[:, -w // 8 :] = 0, 0, 0, 0
    return mask


def export(args) -> Path:
    from mema.generation.diffusion.sample import load_samples
    from mema.generation.leakage import load_filter

    t0 = time.time()
    samples_dir, out = Path(args.samples), Path(args.output_dir)
    if (out / "review.csv").is_file():
        with open(out / "review.csv", newline="", encoding="utf-8") as fh:
            if any((r.get("decision") or "").strip() for r in csv.DictReader(fh)):
                raise StageError(f"{out / 'review.csv'} already holds physicians' decisions; export to another --output_dir")
    samples = {s["id"]: s for s in load_samples(samples_dir)}
    _, per = load_filter(args.filter)
    kept = [p["id"] for p in per if p["decision"] == "keep"]
    if not kept:
        raise StageError(f"no sample passed the filter in {args.filter}; nothing to review")
    rows, cards = [], []
    (out / "images").mkdir(parents=True, exist_ok=True)
    for sid in kept:
        s = samples[sid]
        shutil.copyfile(samples_dir / s["file_name"], out / "images" / f"{sid}.png")
        proposal = ""
        if s["disease"] in LESION_DISEASES:
            if s.get("mask_file"):  # the backend drew the lesion: its mask is exact
                m, how = read_rgb(samples_dir / s["mask_file"])[0][..., 0] > 0, "the backend's drawn lesion mask"
            else:
                m, how = propose_mask(read_rgb(samples_dir / s["file_name"])[0]), "automatic proposal (colour heuristic)"
            write_png(out / "mask_proposals" / f"{sid}.png", m.astype(np.uint8) * 255)
            proposal = f'<img src="mask_proposals/{sid}.png" width="128" title="{how}">'
        rows.append({"id": sid, "sha256": s["sha256"], "disease": s["disease"], "severity": s["severity"], "age": s["age"],
                     "gender": s["gender"], "decision": "", "new_disease": "", "new_severity": "", "notes": ""})
        cards.append(f'<tr><td>{html.escape(sid)}</td><td><img src="images/{sid}.png" width="256"></td><td>{proposal}</td>'
                     f'<td>{html.escape(s["disease"])} / {html.escape(s["severity"])}<br>age {s["age"]}, {s["gender"]}<br>'
                     f'<small>{html.escape(s["provenance"]["prompt"])}</small></td></tr>')
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / "review.csv", buf.getvalue().encode())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>MeMa review sheet</title>
<style>body{{font-family:sans-serif}}td{{border-bottom:1px solid #ccc;padding:4px;vertical-align:top}}img{{image-rendering:pixelated}}</style></head>
<body><h1>MeMa review sheet ({len(rows)} samples)</h1>
<p>For each sample fill <code>review.csv</code>: <b>decision</b> = accept or reject (reject images of low medical quality);
optionally <b>new_disease</b> ({", ".join(DISEASES)}) and <b>new_severity</b> ({", ".join(SEVERITIES)}) to relabel, and notes.
For BCC/SCC, correct the proposed lesion mask and save it as <code>masks/&lt;id&gt;.png</code> (white = lesion), same size as the image.
Then run <code>mema-generate review import --review THIS_FOLDER</code>.</p>
<table><tr><th>id</th><th>image</th><th>mask proposal</th><th>labels</th></tr>
{"".join(cards)}
</table></body></html>
"""
    atomic_write_bytes(out / "index.html", page.encode())
    (out / "masks").mkdir(exist_ok=True)
    write_stage(out, "review", {"samples": str(samples_dir), "filter": str(args.filter)}, seconds=time.time() - t0,
                extra={"n_rows": len(rows), "imported": False})
    print(f"review sheet for {len(rows)} samples: {out / 'index.html'}")
    return out


def import_decisions(args) -> Path:
    t0 = time.time()
    folder = Path(args.review)
    stage = read_stage(folder, "review")
    src = Path(args.decisions) if args.decisions else folder / "review.csv"
    with open(src, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    known = {p.stem for p in (folder / "images").glob("*.png")}
    problems, decisions, undecided = [], {}, []
    seen = set()
    for n, r in enumerate(rows, 2):
        sid = (r.get("id") or "").strip()
        if sid not in known:
            problems.append(f"line {n}: unknown sample id {sid!r}")
            continue
        if sid in seen:
            problems.append(f"line {n}: sample {sid} appears twice")
            continue
        seen.add(sid)
        dec = (r.get("decision") or "").strip().lower()
        if dec == "":
            undecided.append(sid)
            continue
        if dec not in DECISIONS:
            problems.append(f"line {n}: decision {dec!r} (use accept or reject)")
            continue
        disease = (r.get("new_disease") or "").strip() or r["disease"]
        severity = (r.get("new_severity") or "").strip() or r["severity"]
        if disease not in DISEASES:
            problems.append(f"line {n}: unknown disease {disease!r} (known: {', '.join(DISEASES)})")
            continue
        if severity not in SEVERITIES or (disease == "Normal") != (severity == "none"):
            problems.append(f"line {n}: severity {severity!r} does not fit {disease} (Normal takes none; others slight/mid/heavy)")
            continue
        mask_sha = None
        mask_path = folder / "masks" / f"{sid}.png"
        if mask_path.is_file():
            try:
                m, _ = read_rgb(mask_path)
                img, _ = read_rgb(folder / "images" / f"{sid}.png")
            except ImageFileError as exc:
                problems.append(f"line {n}: mask {mask_path.name}: {exc.reason}")
                continue
            if m.shape[:2] != img.shape[:2]:
                problems.append(f"line {n}: mask {mask_path.name} is {m.shape[1]}x{m.shape[0]}, the image {img.shape[1]}x{img.shape[0]}")
                continue
            mask_sha = "present"
        decisions[sid] = {"decision": dec, "disease": disease, "severity": severity, "mask": mask_sha is not None,
                          "relabelled": disease != r["disease"] or severity != r["severity"], "notes": (r.get("notes") or "").strip()}
    missing = sorted(known - seen)
    if missing:
        problems.append(f"{len(missing)} exported sample(s) have no row: {', '.join(missing[:10])}")
    if undecided and args.undecided == "error":
        problems.append(f"{len(undecided)} row(s) have no decision ({', '.join(undecided[:10])}); fill them or pass --undecided reject")
    if problems:
        raise StageError(f"{src}: {len(problems)} problem(s):\n  " + "\n  ".join(problems[:40]))
    for sid in undecided:
        decisions[sid] = {"decision": "reject", "disease": None, "severity": None, "mask": False, "relabelled": False, "notes": "undecided (rejected by --undecided reject)"}
    atomic_write_bytes(folder / "decisions.json", json.dumps(decisions, indent=1, sort_keys=True).encode())
    n_acc = sum(d["decision"] == "accept" for d in decisions.values())
    write_stage(folder, "review", stage["args"], seconds=time.time() - t0,
                extra={"n_rows": len(decisions), "imported": True, "n_accepted": n_acc, "n_rejected": len(decisions) - n_acc,
                       "n_undecided_rejected": len(undecided), "n_relabelled": sum(d["relabelled"] for d in decisions.values())})
    print(f"review: {n_acc} accepted, {len(decisions) - n_acc} rejected")
    return folder


def load_decisions(folder: str | Path) -> dict:
    folder = Path(folder)
    stage = read_stage(folder, "review")
    if not stage.get("imported"):
        raise StageError(f"{folder}: the review sheet was exported but no decisions were imported (`mema-generate review import`)")
    return json.loads((folder / "decisions.json").read_text())
