"""The offline face generator: a 64x64 DCGAN trained on DigiFace-1M (research-only licence).

Weights come from the weights manifest (``dcgan_digiface``); the network is rebuilt here rather than
imported so the carrier package's own dependencies (wandb, torchvision) are never needed.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from mema.weights import weight_path

LATENT_DIM = 100


class DCGANGenerator(nn.Module):
    """The PyTorch-tutorial DCGAN generator (nz=100, ngf=64, nc=3): z -> 64x64 RGB in [-1, 1]."""

    def __init__(self, nz: int = LATENT_DIM, ngf: int = 64, nc: int = 3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def load_generator() -> DCGANGenerator:
    """The generator with its manifest-verified weights, in eval mode."""
    net = DCGANGenerator()
    net.load_state_dict(torch.load(weight_path("dcgan_digiface"), map_location="cpu", weights_only=True)["netG_state_dict"])
    return net.eval()


class FaceGenerator:
    """Deterministic faces from latent vectors, upscaled to ``size`` px (Lanczos).

    The network runs in float64: in float32 the CPU's convolution kernels (AVX2, AVX-512, NEON) round
    differently and a few pixels of a seeded face came out one grey level apart on different machines,
    so a corpus built from the same seed had another hash. In float64 those differences stay ~1e-13,
    far below the 8-bit rounding step (checked across oneDNN ISA levels in tests/test_build.py).
    """

    def __init__(self, size: int = 128):
        self.size = size
        self.net = load_generator().double()

    @torch.no_grad()
    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        """The network with each transposed convolution as one matrix product and a col2im (``fold``): torch's
        float64 transposed convolution is ~4x slower than this on a CPU; the results agree to ~1e-15."""
        import torch.nn.functional as F

        x = z
        for layer in self.net.main:
            if isinstance(layer, nn.ConvTranspose2d):
                n, cin, h, w = x.shape
                k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
                cols = layer.weight.reshape(cin, -1).t() @ x.reshape(n, cin, h * w)
                x = F.fold(cols, ((h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k), kernel_size=k, stride=s, padding=p)
            else:
                x = layer(x)
        return x

    @torch.no_grad()
    def generate(self, z: np.ndarray) -> np.ndarray:
        """(N, 100) latents -> (N, size, size, 3) uint8."""
        x = self._forward(torch.from_numpy(np.asarray(z, dtype=np.float64)).view(-1, LATENT_DIM, 1, 1))
        arr = ((x.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).clip(0, 255).round().astype(np.uint8)
        if self.size == arr.shape[1]:
            return arr
        return np.stack([np.asarray(Image.fromarray(a).resize((self.size, self.size), Image.LANCZOS)) for a in arr])
