"""ROFI's networks (paper Section 4, Fig. 6): sign detector, identity translator, DA-Former, Dec-Net.

Images are (N, 3, H, W) floats in [0, 1]. Every map that meets another lives on the H/8 x W/8 grid
of the sign detector's regions, so sign-region features can replace translated ones cell by cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# ResBlock, Upsample and the key-token transformer live in mema.baselines.blocks (shared with MedSem-DeID);
# re-exported here so existing imports and ROFI's weights (same parameter names) keep working.
from mema.baselines.blocks import KeyTokenTransformer, ResBlock, Upsample, transformer_stack  # noqa: F401
from mema.baselines.rofi.config import ROFIConfig

# ImageNet statistics: the detector's ResNet50 stages expect inputs normalised this way.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class SignDetector(nn.Module):
    """ResNet50 stages conv1, res1, res2 and a linear scorer: one sign score per 8x8-pixel region.

    Trained weakly (image-level healthy/diseased labels) with region-score max: p = max S. It scores
    the eye ``window`` of the aligned face; regions outside the window score 0.
    """

    def __init__(self, window: tuple[int, int, int, int], image_size: int = 128):
        super().__init__()
        from torchvision.models import resnet50

        self.window, self.image_size = tuple(window), image_size
        trunk = resnet50(weights=None)  # no pretrained ResNet50 exists offline; trained on the corpus
        self.features = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool, trunk.layer1, trunk.layer2)
        self.scorer = nn.Conv2d(512, 1, kernel_size=1)  # a linear scorer applied to every region
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def region_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, h/8, w/8) logits of the window's regions."""
        t, b, l, r = self.window
        return self.scorer(self.features((x[:, :, t:b, l:r] - self.mean) / self.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Region scores in [0, 1] on the whole image's H/8 x W/8 grid (0 outside the window)."""
        t, b, l, r = self.window
        g = x.shape[-1] // 8
        scores = x.new_zeros(x.shape[0], 1, g, g)
        scores[:, :, t // 8:b // 8, l // 8:r // 8] = torch.sigmoid(self.region_logits(x))
        return scores


def sign_mask(scores: torch.Tensor, threshold: float, dilation: int) -> torch.Tensor:
    """Binary (N, 1, g, g) mask of regions scoring above ``threshold``, grown by ``dilation`` cells."""
    mask = (scores > threshold).float()
    if dilation > 0:
        mask = F.max_pool2d(mask, 2 * dilation + 1, stride=1, padding=dilation)
    return mask


class DecNet(nn.Module):
    """4 residual blocks, upsample, 2 residual blocks, upsample, 1 residual block, upsample, to RGB.

    Returns a residual image: the caller adds it to the image it started from, so details the
    translation leaves alone pass through exactly (which is what makes restoration sharp).
    """

    def __init__(self, cfg: ROFIConfig):
        super().__init__()
        w0, w1, w2, w3 = cfg.decoder_widths
        self.body = nn.Sequential(
            nn.Conv2d(cfg.token_dim, w0, 1),
            *[ResBlock(w0) for _ in range(4)], Upsample(w0, w1),
            *[ResBlock(w1) for _ in range(2)], Upsample(w1, w2),
            ResBlock(w2), Upsample(w2, w3),
        )
        self.to_rgb = nn.Conv2d(w3, 3, 3, padding=1)
        # Start near the identity map, but not at it: an all-zero last layer passes no gradient back.
        nn.init.normal_(self.to_rgb.weight, std=1e-3)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.to_rgb(self.body(feat))


def _blocks(cfg: ROFIConfig, depth: int) -> nn.TransformerEncoder:
    return transformer_stack(cfg.token_dim, cfg.heads, depth)


class FeatureExtractor(nn.Module):
    """Three stride-2 convolutions: image -> (N, D, H/8, W/8)."""

    def __init__(self, cfg: ROFIConfig):
        super().__init__()
        d = cfg.token_dim
        self.net = nn.Sequential(
            nn.Conv2d(3, d // 4, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d // 4, d // 2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d // 2, d, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d, d, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


class IdentityTranslator(KeyTokenTransformer):
    """Flatten the feature map, prepend the key token (and the restore-mode token), transformer blocks, unflatten."""

    def __init__(self, cfg: ROFIConfig, restore_mode: bool = False):
        super().__init__(cfg.token_dim, cfg.heads, cfg.translator_depth, cfg.key_dim, cfg.grid * cfg.grid, mode_token=restore_mode)


class DAFormer(nn.Module):
    """Two transformer blocks over the stitched map, amending seams left by the feature substitution."""

    def __init__(self, cfg: ROFIConfig):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid, cfg.token_dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = _blocks(cfg, cfg.daformer_depth)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        n, d, h, w = feat.shape
        tokens = self.blocks(feat.flatten(2).transpose(1, 2) + self.pos)
        return tokens.transpose(1, 2).reshape(n, d, h, w)


class VirtualFace(nn.Module):
    """The key's virtual identity: the offline DCGAN face at z = truncation x the key vector's first 100 entries.

    The translator starts from this face instead of having to invent one: with a CPU training budget,
    a translator trained only to push its identity network's embedding away from the original learned
    small adversarial marks that fooled that network and no other (measured: protection 5.7% SFace,
    33.5% dlib on 158 MeMa-mini test faces after 600 steps). The key vector is N(0, 1), as the
    generator's latent expects. Frozen; differentiable in the key (the universal-key attack needs that).
    """

    def __init__(self, image_size: int, generator: nn.Module | None = None, truncation: float = 1.0):
        super().__init__()
        from mema.generation.dcgan import LATENT_DIM, DCGANGenerator

        self.image_size, self.latent_dim, self.truncation = image_size, LATENT_DIM, truncation
        self.net = (generator or DCGANGenerator()).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "VirtualFace":
        return super().train(False)  # batch norm stays in eval mode: the generator is frozen

    def forward(self, key_vectors: torch.Tensor) -> torch.Tensor:
        face = (self.net(self.truncation * key_vectors[:, : self.latent_dim, None, None]) + 1.0) / 2.0
        return F.interpolate(face, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False).clamp(0, 1)


class Protector(nn.Module):
    """Neural Identity Protector: translator, sign-feature substitution, DA-Former, Dec-Net.

    The translator works on the virtual face with the original's sign regions pasted in; the sign
    cells' features then come from the original itself, and DA-Former and Dec-Net amend the seams.
    """

    def __init__(self, cfg: ROFIConfig):
        super().__init__()
        self.extract = FeatureExtractor(cfg)
        self.translate = IdentityTranslator(cfg)
        self.daformer = DAFormer(cfg)
        self.decode = DecNet(cfg)

    def forward(self, x: torch.Tensor, key_vectors: torch.Tensor, mask: torch.Tensor, virtual: torch.Tensor) -> torch.Tensor:
        mask_px = F.interpolate(mask, size=x.shape[-2:], mode="nearest")
        base = mask_px * x + (1.0 - mask_px) * virtual
        translated = self.translate(self.extract(base), key_vectors)
        stitched = mask * self.extract(x) + (1.0 - mask) * translated  # sign regions keep the original's features
        return (base + self.decode(self.daformer(stitched))).clamp(0.0, 1.0)


class Restorer(nn.Module):
    """Neural Identity Restorer: the same architecture with a learnable restore-mode token."""

    def __init__(self, cfg: ROFIConfig):
        super().__init__()
        self.extract = FeatureExtractor(cfg)
        self.translate = IdentityTranslator(cfg, restore_mode=True)
        self.daformer = DAFormer(cfg)
        self.decode = DecNet(cfg)

    def forward(self, y: torch.Tensor, key_vectors: torch.Tensor) -> torch.Tensor:
        feat = self.translate(self.extract(y), key_vectors)
        return (y + self.decode(self.daformer(feat))).clamp(0.0, 1.0)


class ROFI(nn.Module):
    """The whole model. ``anonymize`` needs the detector; ``restore`` does not."""

    def __init__(self, cfg: ROFIConfig, generator: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.virtual = VirtualFace(cfg.image_size, generator, cfg.virtual_truncation)
        self.detector = SignDetector(cfg.detector_window, cfg.image_size)
        self.protector = Protector(cfg)
        self.restorer = Restorer(cfg)

    def signs(self, x: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        t = self.cfg.sign_threshold if threshold is None else threshold
        return sign_mask(self.detector(x), t, self.cfg.sign_dilation)

    def anonymize(self, x: torch.Tensor, key_vectors: torch.Tensor, threshold: float | None = None,
                  keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: optional (N, 1, H, W) soft mask of pixels taken from the original as they are
        (the eye openings, see ROFIConfig.keep_eye_openings)."""
        y = self.protector(x, key_vectors, self.signs(x, threshold), self.virtual(key_vectors))
        return y if keep is None else keep * x + (1.0 - keep) * y

    def restore(self, y: torch.Tensor, key_vectors: torch.Tensor) -> torch.Tensor:
        return self.restorer(y, key_vectors)
