"""ROFI's two critics: a global one over the whole face and a local one over seam patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class PatchCritic(nn.Module):
    """Spectral-normalised PatchGAN: a map of real/fake scores, one per receptive field."""

    def __init__(self, width: int = 32, layers: int = 4):
        super().__init__()
        mods, cin = [], 3
        for i in range(layers):
            cout = width * 2 ** min(i, 3)
            mods += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        mods.append(spectral_norm(nn.Conv2d(cin, 1, 3, padding=1)))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


def seam_patches(images: torch.Tensor, mask: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """One ``size`` px patch per image, centred on a cell at the border of the sign mask.

    Images without signs (no seam) give a patch at a random cell: the critic still sees local texture.
    """
    n, _, h, w = images.shape
    g = mask.shape[-1]
    cell = h // g
    border = (F.max_pool2d(mask, 3, stride=1, padding=1) - mask).flatten(1)  # cells just outside the signs
    weights = torch.where(border.sum(1, keepdim=True) > 0, border, torch.ones_like(border))
    picks = torch.multinomial(weights.cpu(), 1, generator=gen).squeeze(1)
    cy = (picks // g) * cell + cell // 2
    cx = (picks % g) * cell + cell // 2
    half = size // 2
    y0 = (cy - half).clamp(0, h - size)
    x0 = (cx - half).clamp(0, w - size)
    return torch.stack([images[i, :, y0[i]:y0[i] + size, x0[i]:x0[i] + size] for i in range(n)])


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()
