"""The identity network ROFI trains against: a small face embedder trained on the corpus identities.

It must not be one of the harness's evaluation recognisers (SFace, dlib ResNet): a method trained
against the very network that scores it would be graded on its own exam. This one is trained here,
from scratch, with a normalised-softmax (CosFace) head over the training split's identities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class IdentityNet(nn.Module):
    """Five conv stages on the 64 px face, global average pool, 128-d unit embedding."""

    def __init__(self, dim: int = 128, width: int = 32):
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        w = width
        self.features = nn.Sequential(stage(3, w), stage(w, 2 * w), stage(2 * w, 4 * w), stage(4 * w, 4 * w))
        self.embed = nn.Linear(4 * w * 16, dim)  # 64 px / 2^4 = 4x4 cells, flattened (keeps face layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, dim) unit vectors."""
        x = F.interpolate(x, size=(64, 64), mode="area") * 2.0 - 1.0
        return F.normalize(self.embed(self.features(x).flatten(1)), dim=1)


class CosFaceHead(nn.Module):
    """Logits s * (cos(theta) - m) for the true class (Wang et al. 2018)."""

    def __init__(self, dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.35):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = emb @ F.normalize(self.weight, dim=1).t()
        return self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]))
