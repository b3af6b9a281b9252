"""The real patient set: a folder a hospital keeps, read and checked, never copied.

Layout (diffusers/Hugging Face imagefolder convention)::

    <train_data_dir>/metadata.jsonl   or  metadata.csv
        file_name (relative path), disease (one of MeMa's eight classes, or its full name),
        optional: identity (patient id; default: one identity per image), age, gender (female/male)
    <train_data_dir>/<file_name>      the photos

Problems are handled so that nothing is silently lost:
- a row without a disease, or with an unknown one, is an error (the whole set is refused and every bad
  row is listed): a guess would mislabel a patient; so is metadata that does not match the photos (a row
  naming a file that is not there, a photo no row names, one photo labelled twice differently, one patient
  given two genders), checked before any image is read;
- an unreadable image, an image in which no face is found, a byte-identical duplicate of an earlier
  row, or a near-duplicate of one (a re-saved, resized or re-exposed copy: perceptual hash within
  ``NEAR_DUPLICATE_BITS``, see :mod:`mema.generation.phash`) is *skipped and recorded* (row number,
  reason and, when readable, sha256).

Outputs (reports, plans, stats) refer to real images only by sha256 and row number, never by path or
file name, because file names of patient photos often carry names or record numbers.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mema.corpus.schema import DISEASE_NAMES, DISEASES, GENDERS
from mema.generation.age_gender import age_gender_estimator
from mema.generation.phash import NEAR_DUPLICATE_BITS, nearest, phash
from mema.imageio import ImageFileError, read_rgb

_BY_NAME = {name.lower(): d for d, name in DISEASE_NAMES.items()} | {d.lower(): d for d in DISEASES}
AGE_BINS = (0, 20, 30, 40, 50, 60, 70, 121)


class RealSetError(ValueError):
    """The real set cannot be used as is; the message lists every offending row."""


@dataclass
class RealImage:
    row: int
    sha256: str
    disease: str
    identity: str
    age: int | None
    gender: str | None
    path: Path = field(repr=False)  # in memory only; never written to an output


@dataclass
class RealSet:
    images: list[RealImage]
    skipped: list[dict]  # {"row", "reason", "sha256"?}
    n_rows: int
    age_gender: str | None = None  # the estimator that filled missing labels, when one was needed

    def report(self) -> dict:
        """What may be written next to outputs: counts, reasons, hashes; no paths, no file names."""
        return {
            "n_rows": self.n_rows,
            "n_used": len(self.images),
            "n_skipped": len(self.skipped),
            "skipped_by_reason": dict(Counter(s["reason"].split(":")[0] for s in self.skipped)),
            "skipped": self.skipped,
            "n_identities": len({i.identity for i in self.images}),
            "age_gender_estimator": self.age_gender,
        }


def _rows(root: Path) -> list[dict]:
    jsonl, csv_path = root / "metadata.jsonl", root / "metadata.csv"
    if jsonl.exists():
        rows = []
        for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise RealSetError(f"metadata.jsonl line {n}: not valid JSON ({exc.msg})") from None
        return rows
    if csv_path.exists():
        with open(csv_path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    raise RealSetError(f"{root} has no metadata.jsonl or metadata.csv (columns: file_name, disease, optional identity, age, gender)")


def parse_disease(value) -> str | None:
    if value is None:
        return None
    return _BY_NAME.get(str(value).strip().lower())


def load_real_set(root: str | Path, *, detect_faces: bool = True, estimate_attributes: bool = True) -> RealSet:
    """Read and check the real set (see module docstring). Raises :class:`RealSetError` on label errors."""
    root = Path(root)
    if not root.is_dir():
        raise RealSetError(f"--train_data_dir {root} is not a folder")
    rows = _rows(root)
    if not rows:
        raise RealSetError(f"{root}: the metadata lists no images")
    label_errors = []
    for n, row in enumerate(rows, 1):
        if not row.get("file_name"):
            label_errors.append(f"row {n}: no file_name")
        raw = row.get("disease")
        if raw in (None, ""):
            label_errors.append(f"row {n}: no disease label")
        elif parse_disease(raw) is None:
            label_errors.append(f"row {n}: unknown disease {raw!r} (known: {', '.join(DISEASES)})")
        g = row.get("gender")
        if g not in (None, "") and str(g).lower() not in GENDERS:
            label_errors.append(f"row {n}: unknown gender {g!r} (known: {', '.join(GENDERS)})")
        a = row.get("age")
        if a not in (None, ""):
            try:
                if not 0 <= int(float(a)) <= 120:
                    raise ValueError
            except ValueError:
                label_errors.append(f"row {n}: age {a!r} is not a number of years in 0-120")
    if not label_errors:
        label_errors = _mismatches(root, rows)
    if label_errors:
        more = f"\n  ... and {len(label_errors) - 30} more" if len(label_errors) > 30 else ""
        raise RealSetError(f"{root}: {len(label_errors)} label problem(s); fix the metadata first:\n  " + "\n  ".join(label_errors[:30]) + more)

    detector = estimator = None
    if detect_faces:
        from mema.faces.landmarks import LandmarkDetector

        detector = LandmarkDetector()
    images, skipped, seen, hashes = [], [], {}, []
    try:
        for n, row in enumerate(rows, 1):
            path = root / str(row["file_name"])
            try:
                data = path.read_bytes()
            except OSError:
                skipped.append({"row": n, "reason": "unreadable: file not readable"})
                continue
            sha = hashlib.sha256(data).hexdigest()
            if sha in seen:
                skipped.append({"row": n, "reason": f"duplicate: same bytes as row {seen[sha]}", "sha256": sha})
                continue
            try:
                rgb, _ = read_rgb(path)
            except ImageFileError as exc:
                skipped.append({"row": n, "reason": f"unreadable: {exc.reason}", "sha256": sha})
                continue
            if detector is not None and detector.detect(rgb) is None:
                skipped.append({"row": n, "reason": "no face: the landmark detector found no face", "sha256": sha})
                continue
            bits = phash(rgb)
            near = nearest(bits, hashes)
            if near is not None and near[1] <= NEAR_DUPLICATE_BITS:
                skipped.append({"row": n, "reason": f"near-duplicate: looks like row {images[near[0]].row} "
                                f"(perceptual hash: {near[1]} of 64 bits differ)", "sha256": sha})
                continue
            seen[sha] = n
            hashes.append(bits)
            age = int(float(row["age"])) if row.get("age") not in (None, "") else None
            gender = str(row["gender"]).lower() if row.get("gender") not in (None, "") else None
            if (age is None or gender is None) and estimate_attributes:
                estimator = estimator or age_gender_estimator()
                est_age, est_gender = estimator.predict(rgb)
                age = age if age is not None else est_age
                gender = gender or est_gender
            identity = str(row.get("identity") or f"real-{sha[:12]}")
            images.append(RealImage(n, sha, parse_disease(row["disease"]), identity, age, gender, path))
    finally:
        if detector is not None:
            detector.close()
    if not images:
        raise RealSetError(f"{root}: none of the {len(rows)} images is usable (" + ", ".join(f"{k} {v}" for k, v in Counter(s['reason'].split(':')[0] for s in skipped).items()) + ")")
    return RealSet(images, skipped, len(rows), estimator.name if estimator else None)


PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _mismatches(root: Path, rows: list[dict]) -> list[str]:
    """Metadata that does not match the photos (checked before any image is read): a row naming a file that
    is not in the folder, a photo no row names, one photo labelled twice differently, or one patient given
    two genders. Each would put a wrong label on a patient's photo, so the set is refused rather than guessed."""
    problems, first, gender_of = [], {}, {}
    resolved = root.resolve()
    for n, row in enumerate(rows, 1):
        name = str(row["file_name"])
        path = root / name
        if not path.resolve().is_relative_to(resolved):
            problems.append(f"row {n}: file_name {name!r} points outside the folder")
            continue
        if not path.is_file():
            problems.append(f"row {n}: file_name {name!r} is not in the folder")
            continue
        key = path.resolve()
        labels = (parse_disease(row["disease"]), str(row.get("identity") or ""))
        if key in first:
            (m, (d, ident)) = first[key]
            if d != labels[0] or (ident and labels[1] and ident != labels[1]):
                problems.append(f"row {n}: {name!r} is labelled {labels[0]}/{labels[1] or '-'} here and {d}/{ident or '-'} in row {m}")
        first.setdefault(key, (n, labels))
        ident, g = row.get("identity"), str(row.get("gender") or "").lower()
        if ident not in (None, "") and g:
            was = gender_of.setdefault(str(ident), (n, g))
            if was[1] != g:
                problems.append(f"row {n}: patient {ident!r} is {g} here and {was[1]} in row {was[0]}")
    listed = set(first)
    unlisted = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file() and p.resolve() not in listed)
    if unlisted:
        problems.append(f"{len(unlisted)} photo(s) in the folder have no metadata row (label them or move them out): "
                        + ", ".join(unlisted[:10]) + (" ..." if len(unlisted) > 10 else ""))
    return problems


def age_bin(age: int) -> int:
    return int(np.searchsorted(AGE_BINS, age, side="right") - 1)


def distribution_stats(images) -> dict:
    """Aggregate disease, age and gender distributions (the only facts about the real set that travel)."""
    ages = [i.age for i in images if i.age is not None]
    return {
        "n_images": len(images),
        "disease": {d: sum(i.disease == d for i in images) for d in DISEASES},
        "gender": {g: sum(i.gender == g for i in images) for g in GENDERS},
        "age_bins": list(AGE_BINS),
        "age_hist": [sum(age_bin(a) == b for a in ages) for b in range(len(AGE_BINS) - 1)],
        # per (disease, gender, age bin) counts so a joint draw keeps the real set's correlations
        "joint": dict(sorted(Counter(f"{i.disease}|{i.gender}|{age_bin(i.age)}" for i in images if i.age is not None and i.gender).items())),
    }


def add_stats_arguments(p) -> None:
    p.add_argument("--train_data_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--no_face_check", action="store_true")


def run_stats(args) -> Path:
    """``mema-generate stats``: check the real set and write its aggregate distributions (no images, no paths)."""
    import time

    from mema.generation.stage import write_stage
    from mema.imageio import atomic_write_bytes

    t0 = time.time()
    real = load_real_set(args.train_data_dir, detect_faces=not args.no_face_check)
    out = Path(args.output_dir)
    atomic_write_bytes(out / "real_stats.json", json.dumps(distribution_stats(real.images), indent=2).encode())
    atomic_write_bytes(out / "real_set_report.json", json.dumps(real.report(), indent=2).encode())
    write_stage(out, "stats", {"no_face_check": args.no_face_check}, seconds=time.time() - t0, extra={"n_used": len(real.images)})
    print(f"real set: {len(real.images)} of {real.n_rows} images used, {len(real.skipped)} skipped; stats in {out}")
    return out
