"""Per-disease agreement of the reference classifier on a method's outputs with its calls on the originals.

    python scripts/per_disease_kappa.py RUN_DIR [RUN_DIR ...]

The papers' clinical tables (MeMa Table 4, ROFI Fig. 3c) give Cohen's kappa per disease between the
diagnosis made on the protected photo and the one made on the original. This is that measure with the
reference classifier in the physician's place: for each disease D, kappa of "output called D" against
"original called D" over all test samples (one-vs-rest, ``sklearn.metrics.cohen_kappa_score``), with a 95%
bootstrap CI over identities. RUN_DIR is a ``mema-eval --out`` folder (samples.jsonl). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score


def kappa_by_disease(rows: list[dict]) -> dict:
    from mema.metrics.stats import bootstrap_ci

    rows = [r for r in rows if r.get("pred_original") is not None and r.get("pred_output") is not None]
    orig = np.array([r["pred_original"] for r in rows])
    out = np.array([r["pred_output"] for r in rows])
    groups = np.array([r["identity"] for r in rows])
    result = {}
    for d in sorted(set(r["disease"] for r in rows)):
        a, b = orig == d, out == d

        def k(idx, a=a, b=b):
            # undefined (not 1, not 0) when both raters call every sample one way
            if len(set(a[idx])) < 2 and len(set(b[idx])) < 2:
                return float("nan")
            return float(cohen_kappa_score(a[idx], b[idx]))

        idx = np.arange(len(rows))
        ci = bootstrap_ci(k, len(rows), groups=groups)
        point = k(idx)
        result[d] = {"kappa": None if np.isnan(point) else round(point, 4), "n_called_on_original": int(a.sum()), "n": len(rows),
                     "ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)]}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", type=Path, nargs="+", help="mema-eval output folders (samples.jsonl)")
    args = p.parse_args(argv)
    out = {}
    for run_dir in args.run_dirs:
        f = run_dir / "samples.jsonl"
        if not f.is_file():
            print(f"per_disease_kappa: no samples.jsonl in {run_dir}", file=sys.stderr)
            return 2
        run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
        name = f"{run.get('method', '?')} on {run.get('corpus', '?')}"  # never the folder path
        out[name] = kappa_by_disease([json.loads(x) for x in f.read_text().splitlines() if x.strip()])
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
