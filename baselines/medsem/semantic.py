"""The medical semantics encoder Enc_med: the first blocks of a diffusion UNet trained on the corpus.

The paper trains a latent diffusion model (Stable Diffusion 1.5 fine-tuned on MeMa) and keeps its first
blocks as Enc_med. No diffusion weights exist offline, so a small pixel-space UNet is trained here from
scratch as a DDPM noise predictor (cosine schedule, epsilon objective) on the train split; its down path
(stem and two levels) is then frozen and read at a small diffusion step on the clean image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mema.baselines.medsem.config import SemanticConfig


def alpha_bar(t: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Cosine schedule (Nichol and Dhariwal 2021): the signal fraction at integer steps ``t``."""
    s = 0.008
    f = torch.cos(((t.float() / timesteps) + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (f / f0).clamp(1e-5, 1.0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimeResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with the step embedding added in between (the SD/DDPM residual block)."""

    def __init__(self, cin: int, cout: int, time_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(groups, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(time_dim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time(temb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class SemanticEncoder(nn.Module):
    """The UNet's down path: a 4 x 4 pixel-unshuffle stem (H/4, the way a latent UNet starts below pixel
    resolution), one block at H/4, one at H/8. Returns both level outputs; the last,
    (N, widths[-1], H/8, W/8), is f_med before normalisation.
    """

    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        self.cfg = cfg
        w0, w1 = cfg.widths
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, cfg.time_dim), nn.SiLU(), nn.Linear(cfg.time_dim, cfg.time_dim))
        self.stem = nn.Conv2d(48, w0, 3, padding=1)  # 3 channels x 4 x 4 after the unshuffle
        self.level0 = TimeResBlock(w0, w0, cfg.time_dim, cfg.groups)
        self.down1 = nn.Conv2d(w0, w0, 3, stride=2, padding=1)
        self.level1 = TimeResBlock(w0, w1, cfg.time_dim, cfg.groups)

    def temb(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_mlp(timestep_embedding(t, self.cfg.time_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        """``x_t`` in the diffusion space ([-1, 1] images, noised); ``t`` (N,) integer steps."""
        e = self.temb(t)
        h0 = self.level0(self.stem(F.pixel_unshuffle(x_t, 4)), e)
        return [h0, self.level1(self.down1(h0), e)]


class SemanticUNet(nn.Module):
    """The whole denoiser: encoder, a bottom block at H/16, and an up path with additive skips to the
    noise estimate (the up path only serves the training objective and is discarded)."""

    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        self.cfg = cfg
        w0, w1 = cfg.widths
        td, g = cfg.time_dim, cfg.groups
        self.encoder = SemanticEncoder(cfg)
        self.down2 = nn.Conv2d(w1, w1, 3, stride=2, padding=1)
        self.bottom = TimeResBlock(w1, cfg.bottom, td, g)
        self.proj1 = nn.Conv2d(cfg.bottom, w1, 1)
        self.up1 = TimeResBlock(w1, w1, td, g)
        self.proj0 = nn.Conv2d(w1, w0, 1)
        self.up0 = TimeResBlock(w0, w0, td, g)
        self.out_norm = nn.GroupNorm(g, w0)
        self.out = nn.Conv2d(w0, 48, 3, padding=1)  # pixel-shuffled back to 3 x H x W
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.encoder.temb(t)
        h0, h1 = self.encoder(x_t, t)
        up = lambda h: F.interpolate(h, scale_factor=2.0, mode="nearest")  # noqa: E731
        b = self.bottom(self.down2(h1), e)
        u = self.up1(up(self.proj1(b)) + h1, e)
        u = self.up0(up(self.proj0(u)) + h0, e)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(u))), 4)

    def loss(self, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """DDPM epsilon objective on [0, 1] images ``x0``; steps and noise drawn from ``gen``."""
        n = x0.shape[0]
        t = torch.randint(0, self.cfg.timesteps, (n,), generator=gen).to(x0.device)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)
        ab = alpha_bar(t, self.cfg.timesteps)[:, None, None, None]
        x_t = ab.sqrt() * (x0 * 2.0 - 1.0) + (1.0 - ab).sqrt() * eps
        return F.mse_loss(self(x_t, t), eps)


class MedicalSemantics(nn.Module):
    """Enc_med: the frozen encoder read at ``feature_timestep`` on the clean image, normalised per channel.

    The per-channel mean and std come from the train split after the denoiser is trained, so f_med has
    unit scale and the paper's weight of L_med (5) means the same whatever the encoder's raw scale.
    Gradients flow to the input (L_med pulls the de-identified image); the parameters never train.
    """

    def __init__(self, cfg: SemanticConfig, encoder: SemanticEncoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else SemanticEncoder(cfg)
        c = cfg.widths[-1]
        self.register_buffer("mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("std", torch.ones(1, c, 1, 1))
        self.encoder.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "MedicalSemantics":
        return super().train(False)  # frozen: GroupNorm has no running stats, but keep it explicit

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.full((x.shape[0],), self.cfg.feature_timestep, device=x.device, dtype=torch.long)
        scale = alpha_bar(t[:1], self.cfg.timesteps).sqrt().item()
        return self.encoder((x * 2.0 - 1.0) * scale, t)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> f_med (N, C, H/8, W/8), unit scale per channel."""
        return (self.raw(x) - self.mean) / self.std

    @torch.no_grad()
    def calibrate(self, batches) -> None:
        """Set mean and std from an iterable of [0, 1] image batches."""
        s = s2 = None
        count = 0
        for x in batches:
            f = self.raw(x).double()
            n = f.shape[0] * f.shape[2] * f.shape[3]
            s = f.sum((0, 2, 3)) if s is None else s + f.sum((0, 2, 3))
            s2 = (f * f).sum((0, 2, 3)) if s2 is None else s2 + (f * f).sum((0, 2, 3))
            count += n
        mean = s / count
        std = (s2 / count - mean * mean).clamp_min(1e-8).sqrt()
        self.mean.copy_(mean.float().view(1, -1, 1, 1))
        self.std.copy_(std.float().clamp_min(1e-3).view(1, -1, 1, 1))
