"""Export a corpus's lesion-masked images to nnU-Net v2 raw format (2D natural images, lossless PNG).

    Dataset{ID}_{Name}/dataset.json
    Dataset{ID}_{Name}/imagesTr/{case}_0000.png   RGB (channel_names R, G, B, as nnU-Net's natural-image IO reads it)
    Dataset{ID}_{Name}/labelsTr/{case}.png        0 background, 1 lesion
    Dataset{ID}_{Name}/imagesTs, labelsTs         val/test lesion images, for evaluation
    Dataset{ID}_{Name}/cases.json                 case -> corpus record id, split and disease
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from mema.corpus.store import Corpus
from mema.imageio import atomic_write_bytes, write_png


def export_nnunet(corpus: Corpus, out_root: Path, dataset_id: int = 501, name: str = "MeMaSeg", *,
                  max_train: int | None = None, include_test: bool = True, crop: tuple[int, int, int, int] | None = None) -> Path:
    """Write the raw dataset. ``max_train`` keeps an evenly spaced subset of the training cases
    (by record id, so the choice is deterministic); ``include_test`` adds val/test as imagesTs;
    ``crop`` = (top, bottom, left, right) writes only that window of every image and mask, and
    ``cases.json`` records the share of lesion pixels the window keeps."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    window = (slice(crop[0], crop[1]), slice(crop[2], crop[3])) if crop else (slice(None), slice(None))
    kept = total = 0
    folder = Path(out_root) / f"Dataset{dataset_id:03d}_{name}"
    if folder.exists():
        shutil.rmtree(folder)
    cases: dict[str, dict] = {}
    n_train = 0
    masked = [r for r in sorted(corpus.records, key=lambda r: (r.split, r.id)) if r.mask_file is not None and r.split != "gallery"]
    train_recs = [r for r in masked if r.split == "train"]
    if max_train is not None and len(train_recs) > max_train:
        keep = {train_recs[i].id for i in np.linspace(0, len(train_recs) - 1, max_train).round().astype(int)}
        train_recs = [r for r in train_recs if r.id in keep]
    selected = train_recs + ([r for r in masked if r.split != "train"] if include_test else [])
    for rec in selected:
        train = rec.split == "train"
        case = f"{'tr' if train else 'ts'}_{len(cases):05d}"
        img_dir, lab_dir = ("imagesTr", "labelsTr") if train else ("imagesTs", "labelsTs")
        mask = corpus.load_mask(rec)
        total += int(mask.sum())
        kept += int(mask[window].sum())
        write_png(folder / img_dir / f"{case}_0000.png", np.ascontiguousarray(corpus.load_image(rec)[window]))
        write_png(folder / lab_dir / f"{case}.png", np.ascontiguousarray(mask[window]))
        cases[case] = {"id": rec.id, "split": rec.split, "disease": rec.disease}
        n_train += train
    if n_train == 0:
        raise ValueError(f"corpus {corpus.info.name} has no training images with lesion masks to export")
    info = {
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_train,
        "file_ending": ".png",
        "name": name,
        "description": f"Lesion masks of {corpus.info.name} {corpus.info.version} (manifest {corpus.info.manifest_sha256[:12]})",
        "licence": corpus.info.licence,
    }
    atomic_write_bytes(folder / "dataset.json", json.dumps(info, indent=2).encode())
    meta = {"crop": list(crop) if crop else None, "lesion_pixels_in_crop": kept / total if total else None, "cases": cases}
    atomic_write_bytes(folder / "cases.json", json.dumps(meta, indent=1).encode())
    return folder
