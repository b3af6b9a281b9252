"""MedSem-DeID's networks (MeMa, AAAI 2025, Fig. 5): image encoder, medical-feature fusion, ID-Encryptor,
image decoder, ID-Decryptor.

    f_face = ImageEncoder(X)                       (N, D, H/8, W/8): 16 x 16 tokens at 128 px, as the paper's at 512
    f_med  = Enc_med(X)                            (N, C, H/8, W/8), frozen
    f      = 3 x ResBlock(proj(f_face (+) f_med))
    f_enc  = ID-Encryptor([P; tokens(f)])          transformer blocks, password token prepended
    X_enc  = ImageDecoder(f_enc)

Restoration starts from the protected *image* (what is stored and shared), not from f_enc: the same
encoder and fusion read X_enc, the ID-Decryptor (its own transformer blocks, password prepended) maps
that to f^, and the same image decoder draws X^. A wrong password draws X_wrong.
Images are (N, 3, H, W) floats in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mema.baselines.blocks import KeyTokenTransformer, ResBlock, Upsample
from mema.baselines.medsem.config import MedSemConfig
from mema.baselines.medsem.semantic import MedicalSemantics


class ImageEncoder(nn.Module):
    """Three stride-2 convolutions: image -> f_face (N, D, H/8, W/8)."""

    def __init__(self, cfg: MedSemConfig):
        super().__init__()
        w0, w1 = cfg.encoder_widths
        d = cfg.token_dim
        self.net = nn.Sequential(
            nn.Conv2d(3, w0, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w0, w1, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w1, d, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d, d, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


class Fusion(nn.Module):
    """f_med pooled to f_face's grid (a no-op when it is on it already), concatenated with f_face,
    projected (1x1) and passed through the paper's three residual blocks: f."""

    def __init__(self, cfg: MedSemConfig):
        super().__init__()
        self.proj = nn.Conv2d(cfg.token_dim + cfg.semantic.widths[-1], cfg.token_dim, 1)
        self.blocks = nn.Sequential(*[ResBlock(cfg.token_dim) for _ in range(cfg.fusion_blocks)])

    def forward(self, f_face: torch.Tensor, f_med: torch.Tensor) -> torch.Tensor:
        med = F.adaptive_avg_pool2d(f_med, f_face.shape[-2:])
        return self.blocks(self.proj(torch.cat([f_face, med], dim=1)))


class ImageDecoder(nn.Module):
    """Residual blocks and three x2 upsamplings from the H/8 grid to an image in [0, 1].

    No skip from the input: the image is drawn from f_enc alone, as in the paper.
    """

    def __init__(self, cfg: MedSemConfig):
        super().__init__()
        w0, w1, w2, w3 = cfg.decoder_widths
        self.body = nn.Sequential(
            nn.Conv2d(cfg.token_dim, w0, 1),
            ResBlock(w0), ResBlock(w0), Upsample(w0, w1),
            ResBlock(w1), Upsample(w1, w2),
            ResBlock(w2), Upsample(w2, w3),
        )
        self.to_rgb = nn.Conv2d(w3, 3, 3, padding=1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.to_rgb(self.body(feat)))


class MedSemDeID(nn.Module):
    """The whole model. ``semantics`` is the frozen Enc_med (trained first, by the semantic stage)."""

    def __init__(self, cfg: MedSemConfig, semantics: MedicalSemantics | None = None):
        super().__init__()
        self.cfg = cfg
        g = cfg.grid
        self.semantics = semantics if semantics is not None else MedicalSemantics(cfg.semantic)
        self.encode = ImageEncoder(cfg)
        self.fuse = Fusion(cfg)
        self.encryptor = KeyTokenTransformer(cfg.token_dim, cfg.heads, cfg.encryptor_depth, cfg.key_dim, g * g)
        self.decryptor = KeyTokenTransformer(cfg.token_dim, cfg.heads, cfg.decryptor_depth, cfg.key_dim, g * g)
        self.decode = ImageDecoder(cfg)

    def trainable(self) -> list[nn.Parameter]:
        """Every parameter but Enc_med's (frozen, as in the paper)."""
        return [p for name, p in self.named_parameters() if not name.startswith("semantics.")]

    def features(self, x: torch.Tensor, f_med: torch.Tensor | None = None) -> torch.Tensor:
        """f: the image encoder's f_face fused with the medical features (computed unless given)."""
        return self.fuse(self.encode(x), self.semantics(x) if f_med is None else f_med)

    def encrypt_features(self, x: torch.Tensor, key_vectors: torch.Tensor, f_med: torch.Tensor | None = None) -> torch.Tensor:
        return self.encryptor(self.features(x, f_med), key_vectors)

    def anonymize(self, x: torch.Tensor, key_vectors: torch.Tensor, f_med: torch.Tensor | None = None) -> torch.Tensor:
        """X_enc = Dec(ID-Encryptor([P; f]))."""
        return self.decode(self.encrypt_features(x, key_vectors, f_med))

    def restore(self, y: torch.Tensor, key_vectors: torch.Tensor, f_med: torch.Tensor | None = None) -> torch.Tensor:
        """X^ (right password) or X_wrong (any other): Dec(ID-Decryptor([P; f(y)]))."""
        return self.decode(self.decryptor(self.features(y, f_med), key_vectors))
