"""Rank-1 identification of a method's outputs by head pose of the original photo.

    python scripts/rank1_by_pose.py RUN_DIR [--dataset real-faces] [--bins 0,10,20,30,90]

RUN_DIR is a ``mema-eval --out`` folder (it reads samples.jsonl: one rank-1 hit per sample and fixed
recogniser). Each original test photo's yaw comes from MediaPipe's 478 landmarks through Digital Mask's
face frame (``mema.baselines.digital_mask_model.head_angles``). FaceDefender's paper reports rank-1 per
CASIA-FaceV5 pose; this gives the same breakdown on our tracks (docs/methods/compare-with-papers.md).
Prints one JSON object: per recogniser and |yaw| bin, rank-1 with its n and a 95% bootstrap CI over identities.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a mema-eval output folder (samples.jsonl)")
    p.add_argument("--dataset", default="real-faces", help="the corpus the run scored (name or folder)")
    p.add_argument("--bins", default="0,10,20,30,90", help="|yaw| bin edges in degrees")
    args = p.parse_args(argv)
    samples_file = args.run_dir / "samples.jsonl"
    if not samples_file.is_file():
        print(f"rank1_by_pose: no samples.jsonl in {args.run_dir}", file=sys.stderr)
        return 2
    edges = [float(b) for b in args.bins.split(",")]

    from mema.baselines.digital_mask_model import Landmarker3D, face_frame, head_angles
    from mema.cli.data import resolve_dataset
    from mema.corpus.store import load_corpus
    from mema.metrics.stats import bootstrap_ci

    corpus = load_corpus(resolve_dataset(args.dataset))
    records = {r.id: r for r in corpus.records}
    rows = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
    recognisers = sorted(k[len("rank1_hit_"):] for k in rows[0] if k.startswith("rank1_hit_"))
    yaw = {}
    with Landmarker3D() as det:
        for r in rows:
            pts = det.detect_xyz(corpus.load_image(records[r["id"]]))
            yaw[r["id"]] = abs(head_angles(face_frame(pts))[0]) if pts is not None else None
    out = {"run": run_name(args.run_dir), "corpus": f"{corpus.info.name} {corpus.info.version}",
           "no_landmarks": sum(v is None for v in yaw.values()), "bins": {}}
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [r for r in rows if yaw[r["id"]] is not None and lo <= yaw[r["id"]] < hi]
        cell = {"n": len(sel)}
        for rec in recognisers:
            hits = np.array([r[f"rank1_hit_{rec}"] for r in sel if r.get(f"rank1_hit_{rec}") is not None], dtype=float)
            if not len(hits):
                continue
            g = np.array([r["identity"] for r in sel if r.get(f"rank1_hit_{rec}") is not None])
            ci = bootstrap_ci(lambda idx, h=hits: float(h[idx].mean()), len(hits), groups=g)
            cell[rec] = {"rank1": round(float(hits.mean()), 4), "n": len(hits),
                         "ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)]}
        out["bins"][f"{lo:g}-{hi:g}"] = cell
    print(json.dumps(out, indent=1))
    return 0


def run_name(run_dir: Path) -> str:
    """The method and corpus of a run, never its folder path (which may name a patient folder)."""
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    return f"{run.get('method', '?')} on {run.get('corpus', '?')}"


if __name__ == "__main__":
    sys.exit(main())
