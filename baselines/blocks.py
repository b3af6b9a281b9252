"""Network blocks shared by the built-in learned methods (ROFI, MedSem-DeID).

Images are (N, 3, H, W) floats in [0, 1]; feature maps are (N, C, h, w). ``KeyTokenTransformer`` is the
key-conditioned transformer both papers describe: the feature map is flattened to tokens, a projected
512-d key (ROFI) or password (MedSem-DeID) is prepended as one more token, and the tokens go through
pre-norm transformer blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Two 3x3 convolutions with ReLU and an identity skip; no batch norm (ROFI's Dec-Net)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 conv (no checkerboard artefacts of transposed convs)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))


def transformer_stack(dim: int, heads: int, depth: int, ff_mult: int = 2) -> nn.TransformerEncoder:
    """``depth`` pre-norm transformer blocks (GELU feed-forward of ``ff_mult`` x ``dim``, no dropout)."""
    layer = nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=ff_mult * dim, dropout=0.0,
        activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class KeyTokenTransformer(nn.Module):
    """Flatten the feature map, prepend the key token (and an optional learnable mode token), transformer
    blocks, final layer norm, unflatten. The prefix tokens are dropped from the output.

    ``n_tokens`` is h * w of the maps it takes (learned positional embeddings, one per cell).
    """

    def __init__(self, dim: int, heads: int, depth: int, key_dim: int, n_tokens: int, mode_token: bool = False):
        super().__init__()
        self.key_proj = nn.Linear(key_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.mode = nn.Parameter(torch.zeros(1, 1, dim)) if mode_token else None
        if self.mode is not None:
            nn.init.trunc_normal_(self.mode, std=0.02)
        self.blocks = transformer_stack(dim, heads, depth)
        self.norm = nn.LayerNorm(dim)

    def forward(self, feat: torch.Tensor, key_vectors: torch.Tensor) -> torch.Tensor:
        n, d, h, w = feat.shape
        tokens = feat.flatten(2).transpose(1, 2) + self.pos
        prefix = [self.key_proj(key_vectors).unsqueeze(1)]
        if self.mode is not None:
            prefix.append(self.mode.expand(n, -1, -1))
        out = self.blocks(torch.cat(prefix + [tokens], dim=1))[:, len(prefix):]
        return self.norm(out).transpose(1, 2).reshape(n, d, h, w)
