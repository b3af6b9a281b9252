"""``mema-data verify``: check a corpus folder and report every problem found, never a traceback.

Checks: dataset.json schema; each metadata line (file and line named); files present, decodable,
8-bit RGB and matching their sha256 and recorded size; masks; unique ids; identity-disjoint splits by
id; gallery identities drawn from val/test; counts and manifest hash; and, on a sample of identities,
split disjointness by face embedding (SFace): no identity of one split may be a near-duplicate of
an identity in another.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mema.corpus.schema import EVAL_SPLITS, ImageRecord
from mema.corpus.store import DATASET_JSON, METADATA, CorpusError, load_info, manifest_sha256, parse_metadata, split_counts
from mema.imageio import ImageFileError, open_image
from mema.metrics.identity import pairwise_l2
from mema.weights import sha256_file

# SFace L2 (unit vectors) below which two photos are treated as the same face source. In MeMa-mini,
# 95% of same-identity photo pairs are above 0.46 and different identities start near 1.0.
NEAR_DUPLICATE_L2 = 0.5


@dataclass
class VerifyReport:
    root: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def embedding_disjointness(embeddings: dict[str, tuple[str, np.ndarray]], reference_threshold: float) -> dict:
    """Nearest cross-split identity distances from one embedding per identity.

    ``embeddings`` maps identity -> (split, unit embedding). Pairs compared: train vs val/test and
    val vs test. Returns the minimum distance, the near-duplicate pairs and how many cross-split
    pairs fall under the recogniser's published same-person threshold (informative only).
    """
    groups: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for identity, (split, emb) in embeddings.items():
        if np.all(np.isfinite(emb)):
            groups[split].append((identity, emb))
    pairs = [(a, b) for i, a in enumerate(("train", *EVAL_SPLITS)) for b in EVAL_SPLITS[i:]]
    out = {"n_identities": {s: len(v) for s, v in groups.items()}, "pairs": {}, "near_duplicates": []}
    overall_min = np.inf
    for a, b in pairs:
        if not groups.get(a) or not groups.get(b):
            continue
        ea = np.stack([e for _, e in groups[a]])
        eb = np.stack([e for _, e in groups[b]])
        d = pairwise_l2(ea, eb, dtype=ea.dtype)  # in the embeddings' precision, as the published cards were computed
        overall_min = min(overall_min, float(d.min()))
        for i, j in zip(*np.nonzero(d < NEAR_DUPLICATE_L2)):
            out["near_duplicates"].append((groups[a][i][0], groups[b][j][0], round(float(d[i, j]), 4)))
        out["pairs"][f"{a}-{b}"] = {
            "min_l2": round(float(d.min()), 4),
            "n_pairs": int(d.size),
            "below_reference_threshold": int((d < reference_threshold).sum()),
        }
    out["min_l2"] = None if not np.isfinite(overall_min) else round(overall_min, 4)
    out["near_duplicate_threshold"] = NEAR_DUPLICATE_L2
    return out


def _check_file(root: Path, rec: ImageRecord, report: VerifyReport) -> None:
    path = root / rec.split / rec.file_name
    try:
        img = open_image(path)
    except ImageFileError as exc:
        report.error(str(exc))
        return
    if img.mode != "RGB":
        report.error(f"{path}: mode {img.mode}; corpus images must be 8-bit RGB")
    if img.size != (rec.width, rec.height):
        report.error(f"{path}: {img.size[0]}x{img.size[1]}, record {rec.id} says {rec.width}x{rec.height}")
    digest = sha256_file(path)
    if digest != rec.sha256:
        report.error(f"{path}: sha256 {digest[:12]}... does not match record {rec.id} ({rec.sha256[:12]}...)")
    if rec.mask_file is not None:
        mpath = root / rec.mask_file
        if not mpath.is_file():
            report.error(f"{mpath}: mask of {rec.id} is missing")
        elif sha256_file(mpath) != rec.mask_sha256:
            report.error(f"{mpath}: sha256 does not match record {rec.id}")
        else:
            try:
                mask = open_image(mpath)
                if mask.size != img.size:
                    report.error(f"{mpath}: mask is {mask.size}, image is {img.size}")
            except ImageFileError as exc:
                report.error(str(exc))


def verify_corpus(root: str | Path, *, embedding_sample: int = 100, seed: int = 0, progress: bool = True) -> VerifyReport:
    """Check everything about a corpus folder; ``embedding_sample`` identities per split (0: skip, -1: all)."""
    root = Path(root)
    report = VerifyReport(root=str(root))
    if not root.is_dir():
        report.error(f"{root}: not a folder")
        return report
    try:
        info = load_info(root)
    except CorpusError as exc:
        report.error(str(exc))
        return report

    records: list[ImageRecord] = []
    for split in info.splits:
        path = root / split / METADATA
        if not path.is_file():
            report.error(f"{path}: missing (dataset.json lists split {split!r})")
            continue
        recs, problems = parse_metadata(path)
        report.errors.extend(problems)
        for rec in recs:
            if rec.split != split:
                report.error(f"{path}: record {rec.id} says split {rec.split!r}")
        records.extend(recs)

    seen: dict[str, str] = {}
    for rec in records:
        if rec.id in seen:
            report.error(f"duplicate id {rec.id!r} (splits {seen[rec.id]} and {rec.split})")
        seen[rec.id] = rec.split

    identity_splits: dict[str, set[str]] = defaultdict(set)
    identity_disease: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        identity_splits[rec.identity].add(rec.split)
        identity_disease[rec.identity].add(rec.disease)
    for identity, splits in sorted(identity_splits.items()):
        main = splits - {"gallery"}
        if len(main) > 1:
            report.error(f"identity {identity} appears in several splits: {sorted(main)}")
        if "gallery" in splits and not (main & set(EVAL_SPLITS)):
            report.error(f"identity {identity} has a gallery photo but no dev/val/test photo")

    for rec in tqdm(records, desc="verify files", unit="img", disable=not progress):
        _check_file(root, rec, report)

    counts = split_counts(records)
    if not report.errors:
        if {k: v.model_dump() for k, v in counts.items()} != {k: v.model_dump() for k, v in info.splits.items()}:
            report.error(f"{root / DATASET_JSON}: split counts do not match the metadata files")
        if len(records) != info.n_images:
            report.error(f"{root / DATASET_JSON}: n_images {info.n_images}, metadata has {len(records)}")
        digest = manifest_sha256(records)
        if digest != info.manifest_sha256:
            report.error(f"{root / DATASET_JSON}: manifest hash {info.manifest_sha256[:12]}... but records hash to {digest[:12]}...")

    if embedding_sample and not report.errors:
        report.summary["embedding_check"] = _embedding_check(root, records, embedding_sample, seed, progress)
        for a, b, d in report.summary["embedding_check"]["near_duplicates"]:
            report.error(f"identities {a} and {b} are in different splits but their faces are near-duplicates (SFace L2 {d})")

    report.summary.update(
        name=info.name,
        version=info.version,
        n_images=len(records),
        manifest_sha256=info.manifest_sha256,
        splits={k: v.model_dump() for k, v in counts.items()},
    )
    return report


def _embedding_check(root: Path, records: list[ImageRecord], sample: int, seed: int, progress: bool) -> dict:
    from mema.faces.recognisers import SFace, embed_images
    from mema.imageio import read_rgb

    first: dict[str, ImageRecord] = {}
    for rec in sorted(records, key=lambda r: r.id):
        if rec.split != "gallery":
            first.setdefault(rec.identity, rec)
    by_split: dict[str, list[ImageRecord]] = defaultdict(list)
    for rec in first.values():
        by_split[rec.split].append(rec)
    rng = np.random.default_rng(seed)
    chosen = []
    for split, recs in sorted(by_split.items()):
        if 0 < sample < len(recs):
            recs = [recs[i] for i in sorted(rng.choice(len(recs), sample, replace=False))]
        chosen += recs
    images = (read_rgb(root / rec.split / rec.file_name)[0] for rec in chosen)
    emb, found = embed_images(tqdm(images, total=len(chosen), desc="verify embeddings", unit="id", disable=not progress), {"sface": SFace()})
    embeddings = {rec.identity: (rec.split, e) for rec, e, f in zip(chosen, emb["sface"], found) if f}
    no_face = len(chosen) - sum(found)
    result = embedding_disjointness(embeddings, SFace.info.reference_threshold)
    result.update(recogniser="sface", sampled_identities=len(chosen), no_face=no_face)
    return result


def format_report(report: VerifyReport, max_errors: int = 50) -> str:
    lines = [f"corpus: {report.root}"]
    s = report.summary
    if s:
        lines.append(f"name {s['name']} {s['version']}: {s['n_images']} images, manifest {s['manifest_sha256'][:16]}...")
        for split, c in s["splits"].items():
            per = " ".join(f"{k}={v}" for k, v in c["per_disease"].items())
            lines.append(f"  {split:8s} {c['images']:6d} images {c['identities']:5d} identities {c['masks']:5d} masks | {per}")
        emb = s.get("embedding_check")
        if emb:
            lines.append(
                f"  embedding disjointness ({emb['recogniser']}, {emb['sampled_identities']} identities sampled, "
                f"{emb['no_face']} without a face): min cross-split L2 {emb['min_l2']}, "
                f"near-duplicates {len(emb['near_duplicates'])} (threshold {emb['near_duplicate_threshold']})"
            )
    for msg in report.errors[:max_errors]:
        lines.append(f"ERROR {msg}")
    if len(report.errors) > max_errors:
        lines.append(f"... and {len(report.errors) - max_errors} more errors")
    lines += [f"warning {w}" for w in report.warnings]
    lines.append("OK" if report.ok else f"FAILED: {len(report.errors)} problem(s)")
    return "\n".join(lines)


def report_json(report: VerifyReport) -> str:
    return json.dumps({"ok": report.ok, "errors": report.errors, "warnings": report.warnings, "summary": report.summary}, indent=2, default=str)
