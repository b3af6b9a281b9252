"""Step 5: write the generated corpus in the project's format with a data card that says what the run did.

Takes the samples that passed the leakage filter and (when given) were accepted by physicians, with their
reviewed labels and masks, assigns identity-disjoint splits (every sample is its own synthetic identity),
and writes the corpus (``mema.corpus`` format, loadable by ``datasets``) with::

    README.md               Hugging Face dataset card, rendered only from the files below (``render_card``)
    croissant.json          Croissant 1.0 JSON-LD with the RAI fields (validated by mlcroissant in the tests)
    card/run.json           what the run did (``card_facts.RunFacts``): backend, weights and licences, steps,
                            seeds, filter recognisers and thresholds, review outcome, derived licence
    card/attributes.json    age, gender and sign measured on the images, vs the real set (W1 with bootstrap CIs)
    card/plan_vs_real.json  the sampling plan's labels vs the real set's (near 0 by construction; not a measurement)
    card/leakage.json       the filter's report (recognisers that filtered, and held-out ones that only measured)
    card/stats.json         cross-split SFace distances and near-duplicates
    card/grid_*.png         sample grids

A backend that draws no disease signs (``dcgan``) is refused unless ``--labels intended`` marks its labels as
the plan's intended conditions. Every input is checked before anything is written.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from mema.corpus.schema import DISEASE_NAMES, DISEASES, GENDERS, ImageRecord, Provenance
from mema.corpus.store import write_index
from mema.generation.stage import StageError, read_stage, write_stage
from mema.imageio import atomic_write_bytes, read_rgb, write_png

CARD_FILES = ("run.json", "leakage.json", "plan_vs_real.json", "attributes.json", "stats.json")


def add_arguments(p) -> None:
    p.add_argument("--samples", required=True)
    p.add_argument("--filter", required=True)
    p.add_argument("--review", default=None, help="an imported review folder; without it the card says the corpus is unreviewed")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--name", default="mema-generated")
    p.add_argument("--version", default="1.0")
    p.add_argument("--splits", default="train=0.8,val=0.1,test=0.1")
    p.add_argument("--seed", type=int, default=0, help="seed of the split assignment and of the bootstrap")
    p.add_argument("--licence", default=None, help="the corpus's own licence; the terms that follow from its inputs are added")
    p.add_argument("--labels", choices=["auto", "intended"], default="auto",
                   help="auto: drawn (procedural) or prompted (diffusion) labels; intended: mark the labels as the plan's"
                        " conditions, not shown by the images (required for --backend dcgan, which draws no signs)")
    p.add_argument("--train_data_dir", default=None,
                   help="the real set: measure age, gender (and the sign, with --classifier) on its photos and on the samples")
    p.add_argument("--classifier", default=None, help="eye-crop reference classifier folder (classifier.pt, classifier.json)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the W1 confidence intervals")


def plan_vs_real(plan: list[dict], stats: dict) -> dict:
    """W1 of the *plan's* labels of the released samples against the real set's labels (MeMa Table 2 scale).

    Both sides are labels, and the plan is drawn from the real distribution, so this is near 0 by
    construction; what the images show is measured in ``attributes.json``."""
    from mema.generation.attributes import w1
    from mema.generation.real_set import age_bin

    bins = stats["age_bins"]
    nb = len(bins) - 1

    def dist(values, real_w, gen_w):
        if sum(real_w) == 0 or sum(gen_w) == 0:
            return None
        return round(_weighted_w1(values, real_w, gen_w, w1), 4)

    gen_d, gen_g = Counter(p["disease"] for p in plan), Counter(p["gender"] for p in plan)
    gen_a = Counter(age_bin(p["age"]) for p in plan)
    dv = [i / (len(DISEASES) - 1) for i in range(len(DISEASES))]
    return {
        "what": "the sampling plan's labels of the released samples vs the real set's labels; near 0 by construction, not a measurement",
        "scale": "disease = class index / 7, age = age-bin index / (bins - 1), gender = 0/1 (MeMa Table 2)",
        "n_planned": len(plan), "n_real": stats["n_images"],
        "disease": dist(dv, [stats["disease"][d] for d in DISEASES], [gen_d[d] for d in DISEASES]),
        "age": dist([b / (nb - 1) for b in range(nb)], stats["age_hist"], [gen_a[b] for b in range(nb)]),
        "gender": dist([0.0, 1.0], [stats["gender"][g] for g in GENDERS], [gen_g[g] for g in GENDERS]),
        "real": {"disease": stats["disease"], "gender": stats["gender"], "age_hist": stats["age_hist"], "age_bins": bins},
        "planned": {"disease": {d: gen_d[d] for d in DISEASES}, "gender": {g: gen_g[g] for g in GENDERS},
                    "age_hist": [gen_a[b] for b in range(nb)]},
    }


def _weighted_w1(values, wu, wv, w1) -> float:
    """W1 of two weighted distributions on the same support (counts expanded to samples)."""
    u = np.repeat(np.asarray(values, float), np.asarray(wu, int))
    v = np.repeat(np.asarray(values, float), np.asarray(wv, int))
    return w1(v, u)


def parse_splits(spec: str) -> dict[str, float]:
    parts = {}
    for item in spec.split(","):
        k, _, v = item.partition("=")
        if k not in ("train", "val", "test"):
            raise StageError(f"--splits: unknown split {k!r} (train, val, test)")
        try:
            parts[k] = float(v)
        except ValueError:
            raise StageError(f"--splits: {item!r} is not split=fraction") from None
        if parts[k] <= 0:
            raise StageError(f"--splits: {k} needs a fraction above 0")
    return parts


def _assign_splits(ids: list[str], parts: dict[str, float], seed: int) -> dict[str, str]:
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


def _check_inputs(args, samples: dict, per: list[dict], decisions: dict | None) -> None:
    """Everything that can be refused is refused here, before anything is written."""
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()):
        raise StageError(f"{out} is not empty; choose a new --output_dir")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", args.name):
        raise StageError(f"--name {args.name!r}: use lower-case letters, digits, '.', '_' and '-'")
    unknown = [p["id"] for p in per if p["id"] not in samples or samples[p["id"]]["sha256"] != p["sha256"]]
    if unknown:
        raise StageError(f"{args.filter} was made from other samples than {args.samples} ({len(unknown)} unknown, e.g. {unknown[0]})")
    if decisions is not None:
        kept = {p["id"] for p in per if p["decision"] == "keep"}
        extra = sorted(set(decisions) - kept)
        if extra:
            raise StageError(f"{args.review} decides on {len(extra)} sample(s) the filter did not keep (e.g. {extra[0]}); "
                             "export the review from this filter")
    if args.classifier and not args.train_data_dir:
        raise StageError("--classifier checks the signs against the real set: pass --train_data_dir as well")
    if args.bootstrap < 100:
        raise StageError("--bootstrap: use at least 100 resamples")


def run(args) -> Path:
    from mema.generation.card import _grid, croissant_jsonld, sample_for_grid
    from mema.generation.card_facts import gather, label_kind
    from mema.generation.diffusion.sample import load_samples
    from mema.generation.leakage import load_filter
    from mema.generation.review import load_decisions

    t0 = time.time()
    samples_dir, out = Path(args.samples), Path(args.output_dir)
    samples = {s["id"]: s for s in load_samples(samples_dir)}
    sample_stage = read_stage(samples_dir, "sample")
    label_kind(sample_stage["args"].get("backend", "diffusion"), args.labels)  # refuses dcgan without --labels intended
    leak_report, per = load_filter(args.filter)
    decisions = load_decisions(args.review) if args.review else None
    review_stage = read_stage(Path(args.review), "review") if args.review else None
    _check_inputs(args, samples, per, decisions)
    parts = parse_splits(args.splits)
    plan_doc = json.loads((samples_dir / "plan.json").read_text())
    stats, plan_settings = plan_doc["real_stats"], plan_doc["settings"]
    plan_of = {p["id"]: p for p in plan_doc["plan"]}

    kept = [p["id"] for p in per if p["decision"] == "keep"]
    chosen = []
    for sid in kept:
        if decisions is not None:
            d = decisions.get(sid)
            if d is None:
                raise StageError(f"sample {sid} passed the filter but has no review decision; re-export and review, or drop --review")
            if d["decision"] != "accept":
                continue
        chosen.append(sid)
    if not chosen:
        raise StageError("no sample is left after filtering and review; nothing to write")

    measurer = None
    if args.train_data_dir:  # loaded (and refused) before anything is written
        measurer = _Measurer(args.train_data_dir, args.classifier)

    split_of = _assign_splits(chosen, parts, args.seed)
    records, n_masks = _write_images(out, samples_dir, samples, chosen, split_of, decisions, args.review)
    card_dir = out / "card"
    _write_json(card_dir / "plan_vs_real.json", plan_vs_real([plan_of[sid] for sid in chosen], stats))
    _write_json(card_dir / "attributes.json", measurer.report(out, records, args.bootstrap, args.seed) if measurer else
                {"measured": False, "reason": "no --train_data_dir: age, gender and signs were not measured on the images"})
    _write_json(card_dir / "leakage.json", leak_report)
    _write_json(card_dir / "stats.json", {"embedding_disjointness": _split_disjointness(out, records)})
    for disease in DISEASES:
        recs = sample_for_grid(records, disease, 12)
        if recs:
            write_png(card_dir / f"grid_{disease}.png", _grid(out, recs, 6))
    overview = [r for d in DISEASES for r in sample_for_grid(records, d, 6)]
    if overview:
        write_png(card_dir / "grid_all.png", _grid(out, overview, 6))

    n_split = Counter(r.split for r in records)
    splits = {s: n_split[s] for s in ("train", "val", "test") if n_split[s]}
    facts = gather(sample_stage, plan_settings, samples, chosen, leak_report, decisions, review_stage,
                   labels_flag=args.labels, user_licence=args.licence, split_seed=args.seed, splits=splits, n_physician_masks=n_masks)
    _write_json(card_dir / "run.json", facts.model_dump(mode="json"))
    info = write_index(
        out, records, name=args.name, version=args.version, description=describe(facts), licence=facts.licence,
        research_only=facts.research_only,
        builder={"backend": facts.backend, "generator": ",".join(facts.generators), "labels": facts.labels,
                 "seed": args.seed, "sample_seed": facts.sample_seed, "face_injection": facts.face_injection,
                 "reviewed": facts.review.reviewed, "mema_version": __import__("mema").__version__},
        card_body="",
    )
    from mema.corpus.schema import SPLITS
    from mema.corpus.store import CARD, hf_card_header

    atomic_write_bytes(out / CARD, (hf_card_header([s for s in SPLITS if s in splits]) + render_card(out)).encode())
    atomic_write_bytes(out / "croissant.json", (json.dumps(generated_croissant(out, info, facts), indent=2) + "\n").encode())
    write_stage(card_dir, "card", {k: str(v) for k, v in vars(args).items() if k not in ("func", "train_data_dir", "classifier")},
                seconds=time.time() - t0, extra={"n_images": len(records), "manifest_sha256": info.manifest_sha256})
    print(f"{args.name} {args.version}: {len(records)} images in {out}; manifest sha256 {info.manifest_sha256}")
    return out


class _Measurer:
    """The real set, the age/gender estimator and the optional reference classifier, loaded up front."""

    def __init__(self, train_data_dir: str, classifier: str | None):
        from mema.generation.age_gender import age_gender_estimator
        from mema.generation.attributes import ReferenceClassifier
        from mema.generation.real_set import load_real_set

        self.classifier = ReferenceClassifier(classifier) if classifier else None
        self.real = load_real_set(train_data_dir, estimate_attributes=False)
        self.estimator = age_gender_estimator()

    def report(self, root: Path, records: list[ImageRecord], n_boot: int, seed: int) -> dict:
        from mema.generation.attributes import attribute_report, measure_images

        gen = measure_images((read_rgb(root / r.split / r.file_name)[0] for r in records), self.estimator, self.classifier,
                             total=len(records), desc="measure released images")
        real = measure_images((read_rgb(r.path)[0] for r in self.real.images), self.estimator, self.classifier,
                              total=len(self.real.images), desc="measure real images")
        return {"measured": True, **attribute_report(gen, [r.disease for r in records], real, [r.disease for r in self.real.images],
                                                     estimator=self.estimator.name, classifier=self.classifier, n_boot=n_boot, seed=seed)}


def _write_json(path: Path, doc: dict) -> None:
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())


def _write_images(out: Path, samples_dir: Path, samples: dict, chosen: list[str], split_of: dict, decisions: dict | None,
                  review: str | None) -> tuple[list[ImageRecord], int]:
    records, n_masks = [], 0
    for sid in chosen:
        s = samples[sid]
        d = decisions[sid] if decisions else None
        split = split_of[sid]
        dest = out / split / f"{sid}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples_dir / s["file_name"], dest)
        mask_file = mask_sha = None
        if d and d["mask"]:  # a physician's mask wins over the backend's own
            m = read_rgb(Path(review) / "masks" / f"{sid}.png")[0][..., 0]
            mask_file = f"masks/{split}/{sid}.png"
            mask_sha = write_png(out / mask_file, (m > 127).astype(np.uint8))
            n_masks += 1
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
    return records, n_masks


def _split_disjointness(root: Path, records: list[ImageRecord]) -> dict:
    """Every sample is its own identity; near-identical samples in different splits (mode collapse) would
    still leak between splits, so check cross-split SFace distances as MeMa-mini's card does."""
    from mema.corpus.verify import embedding_disjointness
    from mema.faces.recognisers import SFace, embed_images

    emb, found = embed_images((read_rgb(root / r.split / r.file_name)[0] for r in records), {"sface": SFace()})
    out = embedding_disjointness({r.identity: (r.split, e) for r, e in zip(records, emb["sface"])}, SFace.info.reference_threshold)
    out["n_without_face"] = len(records) - sum(found)
    return out


# --- what the card says: only from the files written above ---------------------------------------------------------


def describe(facts) -> str:
    """One sentence on what the images are, per backend (dataset.json description, Croissant, card)."""
    if facts.backend == "diffusion":
        inj = {"ip-adapter": "IP-Adapter public-face injection", "faceid": "IP-Adapter FaceID public-face injection",
               "none": "no face injection (direct sampling)"}[facts.face_injection]
        return (f"Synthetic patient faces sampled from Stable Diffusion 1.5 finetuned with a LoRA on a private real patient set, "
                f"with {inj}, prompted with the planned disease and severity (MeMa's method).")
    if facts.backend == "procedural":
        return ("Synthetic faces from MeMa-mini's procedural renderer: DCGAN faces (trained on DigiFace-1M) with eye-disease signs "
                "drawn by rules at the planned disease and severity; only the real set's label counts were used, no real image.")
    return ("Bare DCGAN faces (trained on DigiFace-1M) under a plan drawn from a private real set's label counts. No disease sign "
            "is drawn: the disease labels are the plan's intended conditions, not what the images show.")


LABEL_MEANING = {
    "drawn": "the disease and severity each sign was drawn with (by rules)",
    "prompted": "the disease and severity the model was prompted with; whether the image shows them is measured below",
    "intended": "the plan's intended conditions only: the images do not show them (intended, not shown)",
}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _ci(d: dict, key: str = "w1", fmt: str = "{:.4f}") -> str:
    if d.get(key) is None:
        return "n/a"
    return fmt.format(d[key]) + (f" (95% CI {fmt.format(d['ci95'][0])}-{fmt.format(d['ci95'][1])})" if d.get("ci95") else "")


def render_card(root: str | Path) -> str:
    """The Markdown body of the card, from ``dataset.json`` and ``card/*.json`` alone (so a test can check every claim)."""
    from mema.corpus.store import load_info
    from mema.generation.card_facts import load_facts

    root = Path(root)
    info, f = load_info(root), load_facts(root)
    card = {n: json.loads((root / "card" / n).read_text()) for n in CARD_FILES if n != "run.json"}
    leak, att, pvr, st = card["leakage.json"], card["attributes.json"], card["plan_vs_real.json"], card["stats.json"]
    rv = f.review
    splits = list(f.splits)
    lines = [f"# {info.name} {info.version}", "", describe(f), "",
             f"- Backend: `{f.backend}` (generator {', '.join(f'`{g}`' for g in f.generators)}); "
             + {"drawn": "draws the disease signs by rules.", "prompted": "is prompted with the disease signs.",
                "none": "**draws no disease signs**."}[f.signs],
             f"- Disease labels: {f.labels}: {LABEL_MEANING[f.labels]}"
             + (". Reviewed by physicians." if rv.reviewed else ". **Not physician-reviewed.**"),
             "- Age and gender labels: " + ("estimated on each rendered face by the offline age/gender model (the renderer cannot steer them)."
                                           if f.age_gender_labels == "estimated" else
                                           "the plan's targets, drawn from the real set's counts; the images' own are measured below."),
             f"- Licence: {f.licence}", "",
             "## How it was made",
             f"- Sampling plan: `{f.sampling}`, {f.num_samples} samples, seed {f.sample_seed}, {f.resolution} px; each sample's seed,"
             " prompt and weight hashes are in its metadata."]
    if f.backend == "diffusion":
        lines.append(f"- Diffusion: {f.num_inference_steps} inference steps, guidance scale {f.guidance_scale}, precision {f.mixed_precision}; "
                     + (f"face injection `{f.face_injection}`, adapter scale drawn from {f.adapter_scale_range}."
                        if f.face_injection != "none" else "no face injection."))
        if f.finetune:
            ft = f.finetune
            lines.append(f"- LoRA finetune: rank {ft['rank']}, learning rate {ft['learning_rate']} ({ft['lr_scheduler']}), "
                         f"{ft['global_step']} steps, batch {ft['train_batch_size']}, {ft['resolution']} px, seed {ft['seed']}, "
                         f"on {ft['n_real_images']} real images.")
        else:
            lines.append("- LoRA finetune: its record was not found beside the sampling record.")
    if f.reference_faces:
        lines.append(f"- Reference faces: {f.reference_faces.source}; licence {f.reference_faces.licence}.")
    lines += [f"- Identity-leakage filter: {f.filter.n_kept} of {f.filter.n_samples} samples kept"
              f" (samples without a detectable face: {f.filter.n_samples - f.filter.n_faces_found}, policy {f.filter.on_no_face}).",
              "- Review: " + (f"{rv.n_accepted} accepted, {rv.n_rejected} rejected ({rv.n_undecided_rejected} of them left undecided), "
                              f"{rv.n_relabelled} relabelled, {rv.n_physician_masks} lesion masks drawn by physicians."
                              if rv.reviewed else "none."),
              f"- Released: {f.n_released} images; identity-disjoint splits (seed {f.split_seed}): "
              + ", ".join(f"{k} {v}" for k, v in f.splits.items()) + ". Every sample is its own synthetic identity; no gallery split.", "",
              "## Weights that made the images", "| role | sha256 | source | licence |", "|---|---|---|---|"]
    lines += [f"| {w.role} | `{w.sha256[:12]}` | {w.source} | {w.licence} |" for w in f.weights]
    lines += ["", "## Identity leakage (samples vs every real patient image and identity centroid)",
              f"Filtered by {', '.join(f.filter.filtered_by)}; "
              + (f"measured after filtering by the held-out {', '.join(f.filter.held_out)}, which did not filter."
                 if f.filter.held_out else
                 "no held-out recogniser measured the kept samples, so the leakage left after filtering is **not measured** "
                 "(the filtering recognisers find none by construction)."), "",
              "| recogniser | role | threshold (L2) | leakage before filter | after filter | samples measured |", "|---|---|---|---|---|---|"]
    for name, r in leak["recognisers"].items():
        t = f.filter.thresholds[name]
        after = (f"{_pct(r['leakage_rate_after'])} (by construction)" if t.role == "filter" else _pct(r["leakage_rate_after"]))
        lines.append(f"| {name} | {t.role} | {t.l2:.3f} ({t.source}) | {_pct(r['leakage_rate_before'])} | {after} | "
                     f"{r['n_measured_before']} before, {r['n_measured_after']} after |")
    lines += ["", "## What the images show (measured on the released images vs the real set)"]
    if not att.get("measured"):
        lines.append(f"Not measured: {att['reason']}.")
    else:
        lines += [f"Estimator: {att['estimator']}; {att['n_generated'] - att['n_generated_without_face']} of {att['n_generated']} released and "
                  f"{att['n_real'] - att['n_real_without_face']} of {att['n_real']} real images with a detectable face; "
                  f"W1 with 95% percentile-bootstrap CIs ({att['n_bootstrap']} resamples).", "",
                  f"- Age: W1 {_ci(att['age'], fmt='{:.2f}')} years; median {att['age']['generated_median']} generated vs "
                  f"{att['age']['real_median']} real.",
                  f"- Gender: W1 {_ci(att['gender'])}; male share {att['gender']['generated_male_share']} generated vs "
                  f"{att['gender']['real_male_share']} real."]
        sg = att.get("sign")
        if sg is None:
            lines.append("- Signs: not checked (no --classifier).")
        else:
            c = att["classifier"]
            lines += [f"- Signs, by the reference eye-crop classifier `{c['arch']}` (`{c['sha256'][:12]}`, trained on {c['trained_on']}, "
                      f"val top-1 {c['val_top1']}): its class agrees with the label on {_ci(sg['agreement_generated'], 'rate', '{:.3f}')} of the "
                      f"released images and on {_ci(sg['agreement_real'], 'rate', '{:.3f}')} of the real ones; predicted-class W1 "
                      f"{_ci(sg['predicted_class_w1'])} (class index / 7)."]
    lines += ["", "## Sampling plan vs the real set (labels asked for, not measured)",
              f"The plan's labels of the released samples against the real set's labels, W1 on [0, 1] (MeMa Table 2 scale): disease "
              f"{pvr['disease']}, age {pvr['age']}, gender {pvr['gender']} ({pvr['n_planned']} planned vs {pvr['n_real']} real). "
              "The plan is drawn from the real distribution, so these are near 0 by construction; they say nothing about the images.", "",
              "## Class balance (images)", "| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for d in DISEASES:
        lines.append(f"| {d} ({DISEASE_NAMES[d]}) | " + " | ".join(str(info.splits[s].per_disease[d]) for s in splits) + " |")
    emb = st["embedding_disjointness"]
    lines += ["", "## Split disjointness",
              f"SFace, one embedding per sample ({emb['n_without_face']} without a detectable face): minimum cross-split L2 {emb['min_l2']}; "
              f"near-duplicates (L2 < {emb['near_duplicate_threshold']}): {len(emb['near_duplicates'])}.", "",
              "## Licences",
              f"- Corpus: {f.licence}",
              "- Recognisers that filtered or measured leakage (they did not make images): "
              + "; ".join(f"{n} ({t.recogniser_licence})" for n, t in f.filter.thresholds.items()) + ".", "",
              "## Limitations",
              f"- Labels: {LABEL_MEANING[f.labels]}" + ("; corrected by physicians where they relabelled." if rv.reviewed else "; no physician checked them."),
              "- A leakage filter lowers, but cannot prove the absence of, re-identification risk; recognisers differ from attackers'.",
              "- Not for clinical validation.", ""]
    grids = [d for d in DISEASES if (root / "card" / f"grid_{d}.png").is_file()]
    if (root / "card" / "grid_all.png").is_file():
        lines += ["## Sample grids", "![all classes](card/grid_all.png)", ""]
    lines += [f"- {d}: ![{d}](card/grid_{d}.png)" for d in grids]
    return "\n".join(lines) + "\n"


def generated_croissant(root: Path, info, facts) -> dict:
    """Croissant for a generated corpus: the RAI fields say what this run did."""
    from mema.generation.card import croissant_jsonld

    reviewed = facts.review.reviewed
    return croissant_jsonld(
        root, info, licence=facts.licence,
        collection=describe(facts) + (" Samples within the same-person threshold of a real patient were removed (filtered by "
                                      + ", ".join(facts.filter.filtered_by) + ")."),
        sensitive="No real person is depicted by design; samples within a recogniser's same-person threshold of any real patient "
                  "were removed (see card/leakage.json). Health conditions are synthetic labels.",
        biases="Disease, age and gender were planned from the private real set's label counts; what the images show is measured in "
               "card/attributes.json. Ethnicity and skin tone follow the face generator and were not controlled.",
        limitations="Not for clinical validation. Labels: " + LABEL_MEANING[facts.labels] + "."
                    + (" Reviewed by physicians." if reviewed else " Not reviewed by physicians."),
        annotation=("mema-generate review: physicians accepted, rejected and relabelled samples and drew lesion masks."
                    if reviewed else "Labels are the sampling conditions (" + facts.labels + ")."),
        label_note=None if facts.labels != "intended" else "intended condition only, not shown by the image",
        date_published=time.strftime("%Y-%m-%d", time.gmtime()),
    )
