"""Step 5: write the generated corpus in the project's format with its data card.

Takes the samples that passed the leakage filter and (when given) were accepted by physicians, with their
reviewed labels and masks, assigns identity-disjoint splits (every sample is its own synthetic identity),
and writes: the corpus (``mema.corpus`` format, loadable by ``datasets``), ``README.md`` (Hugging Face
dataset card), ``croissant.json`` (Croissant 1.0 JSON-LD with the RAI fields), ``card/distribution.json``
(Wasserstein distances of disease, age and gender against the real set, MeMa Table 2), the leakage
figures, licences and sample grids.

Wasserstein distances are W1 between the two empirical distributions on a [0, 1] scale: disease = class
index / 7, age = age-bin index / (bins - 1) (the real set travels only as binned counts), gender = 0/1.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from mema.corpus.schema import DISEASE_NAMES, DISEASES, GENDERS, ImageRecord, Provenance
from mema.corpus.store import write_index
from mema.generation.stage import StageError, read_stage, write_stage
from mema.imageio import atomic_write_bytes, read_rgb, write_png


def add_arguments(p) -> None:
    p.add_argument("--samples", required=True)
    p.add_argument("--filter", required=True)
    p.add_argument("--review", default=None, help="an imported review folder; without it the card says the corpus is unreviewed")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--name", default="mema-generated")
    p.add_argument("--version", default="1.0")
    p.add_argument("--splits", default="train=0.8,val=0.1,test=0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--licence", default=None, help="licence of the released corpus (default: derived from the inputs)")


def wasserstein_report(records: list[ImageRecord], stats: dict) -> dict:
    from scipy.stats import wasserstein_distance

    from mema.generation.real_set import age_bin

    bins = stats["age_bins"]
    nb = len(bins) - 1
    gen_d = Counter(r.disease for r in records)
    gen_g = Counter(r.gender for r in records if r.gender)
    gen_a = Counter(age_bin(r.age) for r in records if r.age is not None)

    def w(values, real_w, gen_w):
        if sum(real_w) == 0 or sum(gen_w) == 0:
            return None
        return round(float(wasserstein_distance(values, values, real_w, gen_w)), 4)

    dv = [i / (len(DISEASES) - 1) for i in range(len(DISEASES))]
    return {
        "n_generated": len(records), "n_real": stats["n_images"],
        "disease": w(dv, [stats["disease"][d] for d in DISEASES], [gen_d[d] for d in DISEASES]),
        "age": w([b / (nb - 1) for b in range(nb)], stats["age_hist"], [gen_a[b] for b in range(nb)]),
        "gender": w([0.0, 1.0], [stats["gender"][g] for g in GENDERS], [gen_g[g] for g in GENDERS]),
        "real": {"disease": stats["disease"], "gender": stats["gender"], "age_hist": stats["age_hist"], "age_bins": bins},
        "generated": {"disease": {d: gen_d[d] for d in DISEASES}, "gender": {g: gen_g[g] for g in GENDERS},
                      "age_hist": [gen_a[b] for b in range(nb)]},
    }


def _assign_splits(ids: list[str], spec: str, seed: int) -> dict[str, str]:
    parts = {}
    for item in spec.split(","):
        k, v = item.split("=")
        if k not in ("train", "val", "test"):
            raise StageError(f"--splits: unknown split {k!r}")
        parts[k] = float(v)
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(sorted(ids)))
    total = sum(parts.values())
    out, start = {}, 0
    names = list(parts)
    for j, k in enumerate(names):
        end = len(order) if j == len(names) - 1 else start + int(round(len(order) * parts[k] / total))
        for sid in order[start:end]:
            out[str(sid)] = k
        start = end
    return out


def run(args) -> Path:
    from mema.generation.card import _grid, croissant_jsonld, sample_for_grid
    from mema.generation.diffusion.sample import load_samples
    from mema.generation.leakage import load_filter
    from mema.generation.review import load_decisions

    t0 = time.time()
    samples_dir, out = Path(args.samples), Path(args.output_dir)
    if out.exists() and any(out.iterdir()):
        raise StageError(f"{out} is not empty; choose a new --output_dir")
    samples = {s["id"]: s for s in load_samples(samples_dir)}
    leak_report, per = load_filter(args.filter)
    kept = [p["id"] for p in per if p["decision"] == "keep"]
    decisions = load_decisions(args.review) if args.review else None
    stats = json.loads((samples_dir / "plan.json").read_text())["real_stats"]  # what the plan was drawn from
    sample_stage = read_stage(samples_dir, "sample")

    chosen, n_rejected = [], 0
    for sid in kept:
        if decisions is not None:
            d = decisions.get(sid)
            if d is None:
                raise StageError(f"sample {sid} passed the filter but has no review decision; re-export and review, or drop --review")
            if d["decision"] != "accept":
                n_rejected += 1
                continue
        chosen.append(sid)
    if not chosen:
        raise StageError("no sample is left after filtering and review; nothing to write")
    split_of = _assign_splits(chosen, args.splits, args.seed)
    records = []
    for sid in chosen:
        s = samples[sid]
        d = decisions[sid] if decisions else None
        split = split_of[sid]
        dest = out / split / f"{sid}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples_dir / s["file_name"], dest)
        mask_file = mask_sha = None
        if d and d["mask"]:  # a physician's mask wins over the backend's own
            m = read_rgb(Path(args.review) / "masks" / f"{sid}.png")[0][..., 0]
            mask_file = f"masks/{split}/{sid}.png"
            mask_sha = write_png(out / mask_file, (m > 127).astype(np.uint8))
        elif s.get("mask_file") and (d is None or d["disease"] == s["disease"]):  # drawn lesion mask (procedural backend)
            mask_file = f"masks/{split}/{sid}.png"
            dest_mask = out / mask_file
            dest_mask.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(samples_dir / s["mask_file"], dest_mask)
            mask_sha = s["mask_sha256"]
        records.append(ImageRecord(
            file_name=f"{sid}.png", id=sid, sha256=s["sha256"], split=split, identity=f"syn-{sid}",
            disease=d["disease"] if d else s["disease"], severity=d["severity"] if d else s["severity"],
            age=s["age"], gender=s["gender"], width=s["width"], height=s["height"], mask_file=mask_file, mask_sha256=mask_sha,
            provenance=Provenance(**s["provenance"]),
        ))
    dist = wasserstein_report(records, stats)
    disjoint = _split_disjointness(out, records)
    card_dir = out / "card"
    atomic_write_bytes(card_dir / "stats.json", json.dumps({"embedding_disjointness": disjoint}, indent=2).encode())
    atomic_write_bytes(card_dir / "distribution.json", json.dumps(dist, indent=2).encode())
    atomic_write_bytes(card_dir / "leakage.json", json.dumps(leak_report, indent=2).encode())
    grids = []
    for disease in DISEASES:
        recs = sample_for_grid(records, disease, 12)
        if recs:
            write_png(card_dir / f"grid_{disease}.png", _grid(out, recs, 6))
            grids.append(disease)
    overview = [r for d in DISEASES for r in sample_for_grid(records, d, 6)]
    if overview:
        write_png(card_dir / "grid_all.png", _grid(out, overview, 6))

    ref_licence = _reference_licence(sample_stage)
    licence = args.licence or ("Research only: generated with Stable Diffusion 1.5 (CreativeML Open RAIL-M use restrictions apply)"
                               f"; reference faces: {ref_licence}")
    face_injection = sample_stage["args"].get("no_face_injection") is not True
    faceid = face_injection and sample_stage["args"].get("face_injection") == "faceid"
    info = write_index(
        out, records, name=args.name, version=args.version,
        description=("Synthetic patient faces generated from a real patient set by MeMa's method (LoRA-finetuned SD 1.5, "
                     "IP-Adapter public-face injection, leakage filter, physician review)."
                     if sample_stage["args"].get("backend", "diffusion") == "diffusion" else
                     "Synthetic faces from the offline DCGAN under a real-guided sampling plan (pipeline check; no disease signs)."),
        licence=licence, research_only=True,
        builder={"backend": "diffusion", "seed": args.seed, "sample_seed": sample_stage["args"].get("seed"),
                 "face_injection": face_injection, "reviewed": decisions is not None,
                 "mema_version": __import__("mema").__version__},
        card_body="",
    )
    body = _markdown(args, info, records, dist, leak_report, grids, licence, decisions is not None, n_rejected, len(kept), len(samples),
                     face_injection, faceid)
    body += (f"\n## Split disjointness\nSFace, one embedding per sample ({disjoint['n_without_face']} without a detectable face): minimum "
             f"cross-split L2 {disjoint['min_l2']}; near-duplicates (L2 < {disjoint['near_duplicate_threshold']}): "
             f"{len(disjoint['near_duplicates'])}.\n")
    from mema.corpus.store import CARD, hf_card_header
    from mema.corpus.schema import SPLITS

    atomic_write_bytes(out / CARD, (hf_card_header([s for s in SPLITS if s in {r.split for r in records}]) + body).encode())
    reviewed = decisions is not None
    atomic_write_bytes(out / "croissant.json", json.dumps(croissant_jsonld(
        info, records, licence=licence,
        collection="Synthetic images sampled from a generative model conditioned on a private set of real patient photos "
                   "(for the diffusion backend: SD 1.5 LoRA-finetuned on them, with public reference faces injected by IP-Adapter).",
        sensitive="No real person is depicted by design; samples within the same-person threshold of any real patient "
                  "(two face recognisers) were removed. Health conditions are synthetic labels.",
        biases="Disease, age and gender follow the private real set's distribution (see card/distribution.json); ethnicity and "
               "skin tone follow the reference faces and the base model, and were not controlled.",
        limitations="Not for clinical validation. " + ("Labels reviewed by physicians." if reviewed else "Labels not reviewed by physicians."),
        annotation="mema-generate review: accept/reject, relabel, lesion masks from a proposal." if reviewed else "Labels are the sampling conditions.",
    ), indent=2).encode())
    write_stage(card_dir, "card", {k: str(v) for k, v in vars(args).items() if k not in ("func",)}, seconds=time.time() - t0,
                extra={"n_images": len(records), "manifest_sha256": info.manifest_sha256})
    print(f"{args.name} {args.version}: {len(records)} images in {out}; manifest sha256 {info.manifest_sha256}")
    return out


def _split_disjointness(root: Path, records: list[ImageRecord]) -> dict:
    """Every sample is its own identity; near-identical samples in different splits (mode collapse) would
    still leak between splits, so check cross-split SFace distances as MeMa-mini's card does."""
    from mema.corpus.verify import embedding_disjointness
    from mema.faces.recognisers import SFace, embed_images

    emb, found = embed_images((read_rgb(root / r.split / r.file_name)[0] for r in records), {"sface": SFace()})
    out = embedding_disjointness({r.identity: (r.split, e) for r, e in zip(records, emb["sface"])}, SFace.info.reference_threshold)
    out["n_without_face"] = len(records) - sum(found)
    return out


def _reference_licence(sample_stage: dict) -> str:
    ref = sample_stage["args"].get("reference_faces")
    if not ref:
        return "none (no face injection)"
    try:
        return read_stage(Path(ref), "reference-faces").get("licence", "unknown")
    except Exception:
        return "user-supplied public faces (state their licence, e.g. FFHQ: CC BY-NC-SA 4.0)"


def _markdown(args, info, records, dist, leak, grids, licence, reviewed, n_rejected, n_kept, n_samples, face_injection, faceid=False) -> str:
    counts = Counter((r.split, r.disease) for r in records)
    splits = [s for s in ("train", "val", "test") if any(r.split == s for r in records)]
    lines = [
        f"# {info.name} {info.version}", "",
        "Synthetic patient faces generated from a private real patient set with `mema-generate` (MeMa's method:",
        "LoRA-finetuned Stable Diffusion 1.5, real-guided sampling, "
        + (f"IP-Adapter{' FaceID' if faceid else ''} public-face injection" if face_injection else "**no** face injection (direct sampling)")
        + ", identity-leakage filter" + (", physician review)." if reviewed else "). **Not physician-reviewed.**"), "",
        "## How it was made",
        f"- {n_samples} samples drawn; {n_kept} passed the identity-leakage filter; "
        + (f"{n_rejected} rejected by physicians; " if reviewed else "") + f"{len(records)} released.",
        "- Prompts: \"A face, eye with {disease name}, {slight|mid|heavy}-level\"; disease, age and gender drawn from the real set's",
        "  distribution; each sample's seed, prompt, adapter scale, reference-face hash and weight hashes are in its metadata.",
        "- Every sample is its own synthetic identity; splits are identity-disjoint by construction. No gallery split",
        "  (it would need a second photo of each synthetic identity).", "",
        "## Identity leakage (samples vs every real patient image and identity centroid)",
        "| recogniser | threshold (L2) | leakage before filter | after filter | samples measured |", "|---|---|---|---|---|",
    ]
    for name, r in leak["recognisers"].items():
        pct = lambda x: "n/a" if x is None else f"{100 * x:.2f}%"  # noqa: E731
        lines.append(f"| {name} | {r['threshold_l2']:.3f} ({r['threshold_source']}) | {pct(r['leakage_rate_before'])} | "
                     f"{pct(r['leakage_rate_after'])} | {r['n_measured_before']} |")
    lines += ["", f"Samples without a detectable face: {leak['n_samples'] - leak['n_faces_found']} (policy: {leak['on_no_face']}).", "",
              "## Distribution vs the real set (Wasserstein W1 on [0, 1], MeMa Table 2)",
              f"disease {dist['disease']}, age {dist['age']}, gender {dist['gender']} ({dist['n_generated']} generated vs {dist['n_real']} real images).", "",
              "## Class balance (images)", "| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for d in DISEASES:
        lines.append(f"| {d} ({DISEASE_NAMES[d]}) | " + " | ".join(str(counts[(s, d)]) for s in splits) + " |")
    lines += ["", "## Licences", f"- Corpus: {licence}",
              "- Stable Diffusion 1.5: CreativeML Open RAIL-M; "
              + ("IP-Adapter FaceID and the ArcFace recogniser: non-commercial research only; " if faceid else "IP-Adapter: Apache-2.0; ")
              + "LoRA trained on private patient photos (not released).", "",
              "## Limitations", "- Labels are the sampling conditions" + (" as corrected by physicians." if reviewed else "; no physician has checked them."),
              "- A leakage filter lowers, but cannot prove the absence of, re-identification risk; recognisers differ from attackers'.", "",
              "## Sample grids", "![all classes](card/grid_all.png)", ""]
    lines += [f"- {d}: ![{d}](card/grid_{d}.png)" for d in grids]
    return "\n".join(lines) + "\n"
