"""Training data for ROFI: a corpus split as uint8 tensors in memory (MeMa-mini's train split is ~0.3 GB)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mema.corpus.store import Corpus


@dataclass
class SplitTensors:
    images: torch.Tensor  # (N, 3, H, W) uint8
    diseased: torch.Tensor  # (N,) float 0/1: the only label ROFI's detector learns from
    identity: torch.Tensor  # (N,) int64 index into identities
    identities: list[str]

    def batch(self, idx: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        return self.images[idx].to(device).float().div_(255.0)


def load_split(corpus: Corpus, split: str, progress: bool = True, limit: int | None = None) -> SplitTensors:
    records = sorted(corpus.split(split), key=lambda r: r.id)[:limit]
    if not records:
        raise ValueError(f"corpus {corpus.info.name} has no images in split {split!r}")
    size = corpus.load_image(records[0]).shape
    images = np.empty((len(records), *size), dtype=np.uint8)
    for i, rec in enumerate(tqdm(records, desc=f"load {split}", unit="img", disable=not progress)):
        img = corpus.load_image(rec)
        if img.shape != size:
            raise ValueError(f"image {rec.id} has shape {img.shape}; ROFI trains on one size ({size})")
        images[i] = img
    identities = sorted({r.identity for r in records})
    index = {name: i for i, name in enumerate(identities)}
    return SplitTensors(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        diseased=torch.tensor([float(r.disease != "Normal") for r in records]),
        identity=torch.tensor([index[r.identity] for r in records]),
        identities=identities,
    )
