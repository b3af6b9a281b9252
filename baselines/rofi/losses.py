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
    away: float = 4.0  # coarse appearance outside the signs must change (identity lives there)
    wrong_key: float = 2.0  # a wrong key must not give the original back
    global_gan: float = 0.1
    local_gan: float = 0.1
    deid_margin: float = 0.2  # cosine similarity allowed between protected and original embeddings
    away_margin: float = 0.1  # mean absolute change of 8x8-cell averages outside the signs


def quantize(y: torch.Tensor) -> torch.Tensor:
    """8-bit rounding with a straight-through gradient: outputs are stored as PNG before restoring."""
    return y + (torch.round(y * 255.0) / 255.0 - y).detach()


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask_px: torch.Tensor) -> torch.Tensor:
    w = mask_px.expand_as(a)
    return ((a - b).abs() * w).sum() / w.sum().clamp_min(1.0)


def identity_hinge(emb_a: torch.Tensor, emb_b: torch.Tensor, margin: float) -> torch.Tensor:
    """Penalty when two unit embeddings are more similar than ``margin`` (cosine)."""
    return F.relu((emb_a * emb_b).sum(1) - margin).mean()


def coarse_change_hinge(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge on the mean change of region averages outside the sign cells (mask on the region grid)."""
    g = mask.shape[-1]
    diff = (F.adaptive_avg_pool2d(y, g) - F.adaptive_avg_pool2d(x, g)).abs().mean(1, keepdim=True)
    keep = 1.0 - mask
    change = (diff * keep).flatten(1).sum(1) / keep.flatten(1).sum(1).clamp_min(1.0)
    return F.relu(margin - change).mean()
