"""Step 3: identity-leakage filter (MeMa, Table 1).

Every sample is compared with every real patient image and with each real identity's centroid (mean of
its unit embeddings, renormalised), by at least two recognisers from the recogniser zoo. A sample within a
recogniser's same-person threshold of any of them is a leak and is dropped; a sample in which no face is
found cannot be measured and follows ``--on_no_face`` (default: drop, recorded).

Recognisers given with ``--holdout`` measure leakage the same way but never decide: the rate left after
filtering is 0 by construction for the recognisers that filtered, so only a held-out one measures it.

Thresholds: ``--thresholds`` (JSON ``{recogniser: L2}``, or the reference evaluator's ``thresholds.json``
with ``--far``); else calibrated on the real set's impostor pairs at ``--calibrate_far`` (default 0.1%) when
it has at least 1/FAR pairs; else each recogniser's published same-person threshold. The source is recorded.

Outputs (no real path, file name or embedding is written; real images appear only as sha256, identities
only as a salted-free short hash of their id)::

    filter.json        leakage rate per recogniser before and after filtering, thresholds, distance histograms
    distances_<recogniser>.npz   the full sample x real-image distance matrix (rows: sample ids, columns: real sha256)
    per_sample.jsonl   per sample: decision, reason, per recogniser min distances and top-k nearest real images
    kept.txt           ids of the samples that passed
    stage.json
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from mema.generation.stage import StageError, read_stage, write_stage
from mema.imageio import atomic_write_bytes, read_rgb
from mema.metrics.identity import pairwise_l2

HIST_BINS = np.round(np.arange(0.0, 2.0001, 0.05), 2)


def add_arguments(p) -> None:
    p.add_argument("--samples", required=True, help="a finished `mema-generate sample` folder")
    p.add_argument("--train_data_dir", required=True, help="the real set the model was trained on")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--recognisers", default="sface,dlib-resnet", help="comma-separated; at least two")
    p.add_argument("--thresholds", default=None, help="JSON {recogniser: L2 threshold} or a reference thresholds.json")
    p.add_argument("--far", default="0.001", help="with a reference thresholds.json: which calibrated FAR to use")
    p.add_argument("--calibrate_far", type=float, default=0.001,
                   help="without --thresholds: calibrate each threshold on the real set's impostor pairs (different patients) at this"
                        " false accept rate, when there are at least 1/FAR pairs; else the published threshold is used (recorded)")
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--on_no_face", choices=["drop", "keep"], default="drop")
    p.add_argument("--allow_single_recogniser", action="store_true", help="allow one recogniser (not recommended)")
    p.add_argument("--holdout", default=None,
                   help="comma-separated recognisers that measure but do not filter (NAME or NAME=PATH, e.g. arcface=w600k_r50.onnx):"
                        " the leakage left after filtering is only informative when measured by a recogniser the filter did not use")


def parse_holdout(spec: str | None, filtering: list[str]) -> dict[str, str | None]:
    """``--holdout`` -> {name: local path or None}; a recogniser that also filters is refused."""
    out: dict[str, str | None] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, _, path = item.strip().partition("=")
        if name in filtering:
            raise StageError(f"--holdout {name}: {name} is one of the filtering --recognisers; a held-out recogniser must not filter")
        if name in out:
            raise StageError(f"--holdout {name} is given twice")
        out[name] = path or None
    return out



def _thresholds(names: list[str], recognisers: dict, path: str | None, far: str) -> dict[str, dict]:
    out = {n: {"l2": float(recognisers[n].info.reference_threshold), "source": "published same-person threshold"} for n in names}
    if path:
        raw = json.loads(Path(path).read_text())
        for n in names:
            v = raw.get(n)
            if isinstance(v, (int, float)):
                out[n] = {"l2": float(v), "source": f"{Path(path).name}"}
            elif isinstance(v, dict) and f"far_{far}" in v:
                out[n] = {"l2": float(v[f"far_{far}"]["threshold"]), "source": f"calibrated at FAR {far} ({Path(path).name})"}
    return out


def identity_centroids(emb: np.ndarray, ids: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted identity names and each one's centroid: the mean of its unit embeddings, renormalised."""
    ids = np.asarray(ids)
    names = sorted(set(ids.tolist()))
    cents = np.stack([emb[ids == n].mean(0) for n in names])
    return names, cents / np.linalg.norm(cents, axis=1, keepdims=True)


def calibrate_on_real(emb: np.ndarray, ids: list[str], far: float) -> dict | None:
    """Same-person L2 threshold at ``far`` from impostor pairs of the real set; None when too few pairs."""
    from mema.metrics.identity import accept_rate, calibrate_threshold

    ok = np.isfinite(emb).all(1)
    e, idn = emb[ok], np.asarray(ids)[ok]
    iu = np.triu_indices(len(e), 1)
    d = pairwise_l2(e, e)[iu]
    same = (idn[:, None] == idn[None])[iu]
    impostor, genuine = d[~same], d[same]
    if len(impostor) < int(np.ceil(1 / far)):
        return None
    t = calibrate_threshold(impostor, far)
    # Centroids (renormalised means) sit closer to every face than single photos do, so image-to-centroid
    # distances get their own threshold at the same FAR: each real image vs the centroids of other patients.
    names, cents = identity_centroids(e, idn)
    dc = pairwise_l2(e, cents)
    other = idn[:, None] != np.asarray(names)[None]
    tc = calibrate_threshold(dc[other], far) if other.sum() >= int(np.ceil(1 / far)) else t
    return {"l2": t, "centroid_l2": tc, "source": f"calibrated on the real set at FAR {far:g} ({len(impostor)} impostor pairs"
            + (f", TAR {accept_rate(genuine, t):.3f} on {len(genuine)} genuine pairs" if len(genuine) else "")
            + f"; centroid threshold from {int(other.sum())} image-vs-other-patient-centroid pairs)"}


def _id_hash(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def leakage_distances(sample_emb: np.ndarray, real_emb: np.ndarray, real_ids: list[str], top_k: int):
    """Per sample: min L2 to any real image, min L2 to any identity centroid, and top-k (index, L2) images."""
    d_img = pairwise_l2(sample_emb, real_emb)
    ids, cents = identity_centroids(real_emb, real_ids)
    d_cent = pairwise_l2(sample_emb, cents)
    order = np.argsort(d_img, axis=1)[:, :top_k]
    return d_img.min(1), d_cent.min(1), ids, d_cent.argmin(1), order, d_img


def run(args) -> Path:
    from mema.faces.recognisers import embed_images, get_recogniser
    from mema.generation.diffusion.sample import load_samples
    from mema.generation.real_set import load_real_set

    from mema.faces.adapters import optional_recogniser

    t0 = time.time()
    filtering = [n.strip() for n in args.recognisers.split(",") if n.strip()]
    if len(set(filtering)) < 2 and not args.allow_single_recogniser:
        raise StageError("the leakage filter needs at least two independent recognisers (--recognisers sface,dlib-resnet)")
    holdout = parse_holdout(getattr(args, "holdout", None), filtering)
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()):
        raise StageError(f"{out} is not empty; choose a new --output_dir")
    samples_dir = Path(args.samples)
    samples = load_samples(samples_dir)
    recognisers = {n: get_recogniser(n) for n in filtering}
    for n, path in holdout.items():
        recognisers[n] = optional_recogniser(n, path) if path else get_recogniser(n)
    names = [*filtering, *holdout]
    real = load_real_set(args.train_data_dir)
    thresholds = _thresholds(names, recognisers, args.thresholds, args.far)

    real_emb, _ = embed_images([read_rgb(r.path)[0] for r in real.images], recognisers)
    real_sha = [r.sha256 for r in real.images]
    real_ids = [r.identity for r in real.images]
    if not args.thresholds and args.calibrate_far:
        for n in names:
            cal = calibrate_on_real(real_emb[n], real_ids, args.calibrate_far)
            if cal is not None:
                thresholds[n] = cal
            else:
                thresholds[n]["source"] += f" (too few real impostor pairs to calibrate at FAR {args.calibrate_far:g})"
    imgs = [read_rgb(samples_dir / s["file_name"])[0] for s in samples]
    samp_emb, found = embed_images(imgs, recognisers)

    per = [{"id": s["id"], "sha256": s["sha256"], "face_found": f, "recognisers": {}} for s, f in zip(samples, found)]
    idx = [i for i, f in enumerate(found) if f]
    summary = {}
    for name in names:
        t = thresholds[name]["l2"]
        tc = thresholds[name].get("centroid_l2", t)
        leaked = np.zeros(len(samples), bool)
        mins = np.full(len(samples), np.nan)
        if idx:
            m_img, m_cent, ids, cent_arg, order, d_img = leakage_distances(samp_emb[name][idx], real_emb[name], real_ids, args.top_k)
            for row, i in enumerate(idx):
                mins[i] = m_img[row]
                leaked[i] = m_img[row] < t or m_cent[row] < tc
                per[i]["recognisers"][name] = {
                    "min_image_l2": round(float(m_img[row]), 4), "min_centroid_l2": round(float(m_cent[row]), 4),
                    "nearest_identity": _id_hash(ids[cent_arg[row]]), "leak": bool(leaked[i]),
                    "top_k": [{"real_sha256": real_sha[j], "l2": round(float(d_img[row, j]), 4)} for j in order[row]],
                }
            _save_distances(args.output_dir, name, [samples[i]["id"] for i in idx], real_sha, d_img)
        summary[name] = {"threshold": thresholds[name], "mins": mins, "leaked": leaked}

    kept = []
    for i, p in enumerate(per):
        if not p["face_found"]:
            p["decision"], p["reason"] = ("keep", "no face found: leakage not measurable") if args.on_no_face == "keep" else ("drop", "no face found")
        elif any(summary[n]["leaked"][i] for n in filtering):  # held-out recognisers measure, never decide
            p["decision"], p["reason"] = "drop", "leak: within the same-person threshold of a real patient (" + ", ".join(n for n in filtering if summary[n]["leaked"][i]) + ")"
        else:
            p["decision"], p["reason"] = "keep", "passed"
        if p["decision"] == "keep":
            kept.append(i)

    report = {"n_samples": len(samples), "n_faces_found": len(idx), "n_kept": len(kept), "n_real_images": len(real.images),
              "n_real_identities": len(set(real_ids)), "on_no_face": args.on_no_face,
              "filtered_by": filtering, "held_out": list(holdout), "recognisers": {}}
    kept_measured = [i for i in kept if found[i]]
    any_leak = np.zeros(len(samples), bool)
    for name in names:
        s = summary[name]
        if name in filtering:
            any_leak |= s["leaked"]
        m = s["mins"][idx]
        report["recognisers"][name] = {
            "role": "filter" if name in filtering else "held-out",
            "record": recognisers[name].record,
            "threshold_l2": s["threshold"]["l2"], "centroid_threshold_l2": s["threshold"].get("centroid_l2", s["threshold"]["l2"]),
            "threshold_source": s["threshold"]["source"],
            "leakage_rate_before": _rate(s["leaked"][idx]), "n_measured_before": len(idx),
            "leakage_rate_after": _rate(s["leaked"][kept_measured]), "n_measured_after": len(kept_measured),
            "min_l2_quantiles": {q: (round(float(np.quantile(m, float(q))), 4) if len(m) else None) for q in ("0.0", "0.01", "0.05", "0.5")},
            "min_l2_histogram": {"bins": HIST_BINS.tolist(), "counts": np.histogram(m, HIST_BINS)[0].tolist() if len(m) else []},
        }
    report["leakage_rate_before_any"] = _rate(any_leak[idx])
    report["leakage_rate_before_mean"] = (float(np.mean([report["recognisers"][n]["leakage_rate_before"] for n in filtering]))
                                          if idx else None)
    # After filtering, the filtering recognisers find no leak by construction; only a held-out one measures.
    report["leakage_rate_after_held_out"] = {n: report["recognisers"][n]["leakage_rate_after"] for n in holdout}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "per_sample.jsonl", "".join(json.dumps(p) + "\n" for p in per).encode())
    atomic_write_bytes(out / "kept.txt", "".join(samples[i]["id"] + "\n" for i in kept).encode())
    atomic_write_bytes(out / "filter.json", json.dumps(report, indent=2).encode())
    args_rec = {"samples": str(samples_dir), "recognisers": filtering, "holdout": list(holdout), "thresholds": args.thresholds,
                "far": args.far, "calibrate_far": args.calibrate_far, "top_k": args.top_k, "on_no_face": args.on_no_face}
    sample_stage = read_stage(samples_dir, "sample")
    write_stage(out, "filter", args_rec, weights={n: recognisers[n].record["sha256"] for n in names}, seconds=time.time() - t0,
                extra={"samples_settings": sample_stage["args"].get("seed")})
    print(f"filter: {len(kept)} of {len(samples)} samples kept; leakage before: "
          + ", ".join(f"{n} {_fmt(report['recognisers'][n]['leakage_rate_before'])}" for n in filtering)
          + ("; after, held out: " + ", ".join(f"{n} {_fmt(v)}" for n, v in report["leakage_rate_after_held_out"].items())
             if holdout else "; no held-out recogniser (--holdout): the leakage left after filtering is not measured"))
    return out


def _save_distances(folder, name: str, sample_ids: list[str], real_sha: list[str], d: np.ndarray) -> None:
    """The full sample x real-image L2 matrix (float16), rows by sample id, columns by real sha256."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, sample_ids=np.array(sample_ids), real_sha256=np.array(real_sha), l2=d.astype(np.float16))
    atomic_write_bytes(Path(folder) / f"distances_{name}.npz", buf.getvalue())


def _rate(mask: np.ndarray) -> float | None:
    return None if len(mask) == 0 else round(float(np.mean(mask)), 4)


def _fmt(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def load_filter(folder: str | Path) -> tuple[dict, list[dict]]:
    folder = Path(folder)
    read_stage(folder, "filter")
    per = [json.loads(line) for line in (folder / "per_sample.jsonl").read_text().splitlines() if line.strip()]
    return json.loads((folder / "filter.json").read_text()), per
