"""MedSem-DeID's learning objective (MeMa, AAAI 2025):

    L = L_deid + L_rev-id + L_wrong + lambda_med L_med + lambda_rev L_rev + L_GAN,  lambda_med = 5, lambda_rev = 0.1

    L_deid   = cos(phi(X), phi(X_enc))        the protected face is another identity
    L_rev-id = -cos(phi(X), phi(X^))          the right password gives the identity back
    L_wrong  = cos(phi(X), phi(X_wrong))      a wrong password does not

Deviation (``LossWeights.id_margin``): L_deid and L_wrong are hinges, relu(cos - 0.2) per image, as ROFI
implements the same two terms. With the raw cosines the CPU-length run collapsed in 20 steps: both
pushes are easiest to satisfy with grey images, and with a decryptor that does not yet tell passwords
apart -cos(X^) and +cos(X_wrong) cancel, leaving nothing but 0.1 L1 to hold the restoration
(docs/methods/medsem-deid.md). ``id_margin=None`` gives the paper's raw cosines.
    L_med    = l2(f_med, Enc_med(X_enc))      the medical semantics survive (MSE)
    L_rev    = l1(X, X^)                      the restored appearance (MAE)
    L_GAN    = adversarial loss on X_enc, X^ and X_wrong (photo-realism of all images)

phi is the training-only identity network (``mema.baselines.rofi.identity.IdentityNet``), never an
evaluation recogniser. Images are in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

# One 8-bit rounding with a straight-through gradient, shared with ROFI.
from mema.baselines.rofi.losses import identity_hinge, quantize  # noqa: F401


class LossWeights(BaseModel):
    """The paper's weights (its Fig. 8 picks lambda_med = 5 and lambda_rev = 0.1; the rest are 1)."""

    model_config = ConfigDict(extra="forbid")

    deid: float = Field(default=1.0, ge=0)
    rev_id: float = Field(default=1.0, ge=0)
    wrong: float = Field(default=1.0, ge=0)
    med: float = Field(default=5.0, ge=0)
    rev: float = Field(default=0.1, ge=0)
    gan: float = Field(default=1.0, ge=0)
    # Cosine above which L_deid and L_wrong penalise (None: the paper's raw cosines, pushed to -1).
    id_margin: float | None = Field(default=0.2, ge=-1, le=1)


def cosine(emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of paired unit embeddings."""
    return (F.normalize(emb_a, dim=1) * F.normalize(emb_b, dim=1)).sum(1).mean()


def jitter(x: torch.Tensor, gen: torch.Generator, shift: float = 0.04, scale: float = 0.05, degrees: float = 5.0) -> torch.Tensor:
    """A random small similarity transform per image (border pixels repeated), drawn from ``gen``.

    Applied to every image before the identity network: an identity change that survives these small
    re-alignments is one other recognisers can see, not a pixel pattern tuned to one network.
    """
    n = x.shape[0]
    r = lambda: (torch.rand(n, generator=gen) * 2.0 - 1.0)  # noqa: E731
    ang, s = r() * math.radians(degrees), 1.0 + r() * scale
    tx, ty = r() * shift * 2.0, r() * shift * 2.0  # affine_grid coordinates span [-1, 1]
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def objective(w: LossWeights, *, e_x: torch.Tensor, e_enc: torch.Tensor, e_rev: torch.Tensor, e_wrong: torch.Tensor,
              f_med: torch.Tensor, f_med_enc: torch.Tensor, x: torch.Tensor, x_rev: torch.Tensor,
              gan: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted sum and its terms. ``e_*`` are identity embeddings of X, X_enc, X^, X_wrong; ``gan`` is
    the generator's adversarial term (already averaged over the three kinds of output)."""
    apart = (lambda a, b: cosine(a, b)) if w.id_margin is None else (lambda a, b: identity_hinge(a, b, w.id_margin))  # noqa: E731
    terms = {
        "deid": apart(e_x, e_enc),
        "rev_id": -cosine(e_x, e_rev),
        "wrong": apart(e_x, e_wrong),
        "med": F.mse_loss(f_med_enc, f_med),
        "rev": F.l1_loss(x_rev, x),
        "gan": gan,
    }
    return sum(getattr(w, k) * v for k, v in terms.items()), terms


def identity_cosines(e_x: torch.Tensor, e_enc: torch.Tensor, e_wrong: torch.Tensor) -> dict[str, float]:
    """The raw cosines behind the hinged terms, for the training log."""
    return {"cos_enc": cosine(e_x, e_enc).item(), "cos_wrong": cosine(e_x, e_wrong).item()}
