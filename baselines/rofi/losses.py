"""ROFI's training objectives (MeMa's MedSem-DeID terms plus ROFI's local and global GAN terms).

All images are in [0, 1]. ``mask_px`` is the sign mask at image resolution (1 = sign region).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict


class LossWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    restore: float = 10.0  # L1 of the right-key restoration
    sign: float = 10.0  # L1 inside the sign regions: the clinical content must not move
    deid: float = 2.0  # identity of the protected face pushed away from the original
    virtual: float = 2.0  # coarse appearance outside the signs follows the key's virtual face
    wrong_key: float = 2.0  # a wrong key must not give the original back
    global_gan: float = 0.1
    local_gan: float = 0.1
    deid_margin: float = 0.2  # cosine similarity allowed between protected and original embeddings


def quantize(y: torch.Tensor) -> torch.Tensor:
    """8-bit rounding with a straight-through gradient: outputs are stored as PNG before restoring."""
    return y + (torch.round(y * 255.0) / 255.0 - y).detach()


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask_px: torch.Tensor) -> torch.Tensor:
    w = mask_px.expand_as(a)
    return ((a - b).abs() * w).sum() / w.sum().clamp_min(1.0)


def identity_hinge(emb_a: torch.Tensor, emb_b: torch.Tensor, margin: float) -> torch.Tensor:
    """Penalty when two unit embeddings are more similar than ``margin`` (cosine)."""
    return F.relu((emb_a * emb_b).sum(1) - margin).mean()


def coarse_l1_outside(y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cells: int = 32) -> torch.Tensor:
    """L1 of ``cells`` x ``cells`` block averages outside the sign mask (mask on the region grid)."""
    keep = 1.0 - F.interpolate(mask, size=(cells, cells), mode="nearest")
    diff = (F.adaptive_avg_pool2d(y, cells) - F.adaptive_avg_pool2d(target, cells)).abs() * keep
    return diff.sum() / (keep.sum() * y.shape[1]).clamp_min(1.0)
