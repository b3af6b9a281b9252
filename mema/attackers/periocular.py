"""The periocular recogniser: who is this, from the eyes, lids and brows alone.

A small CNN over the periocular window (:func:`mema.faces.eyecrop.periocular_crop`, 96x64, placed by the
original face's landmarks) maps it to a 128-d unit embedding. It is trained with a CosFace (large-margin
cosine) loss on the training identities of a corpus, with augmentation for pose, scale, colour, blur and
noise, so that it still matches after the mild changes a de-identification method makes. It is the
attacker that sees what whole-face recognisers miss when a method keeps the patient's eye region; it joins
the default recogniser zoo as ``periocular``, with weights per registered corpus (shipped, in the weights
manifest) or trained once for any other corpus (``mema-train evaluators``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mema.faces.eyecrop import PERIOCULAR_H, PERIOCULAR_W, periocular_crop
from mema.faces.landmarks import FaceLandmarks
from mema.faces.recognisers import RecogniserInfo

EMBED_DIM = 128


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class PeriocularNet(nn.Module):
    """64x96 RGB -> 128-d unit embedding. The head keeps the spatial layout (where a mole or brow sits).

    Small on purpose (about 26 M multiply-adds per window): it trains on 8,000 windows in minutes on two CPU
    cores, and is fine-tuned per method by the adaptive attacker.
    """

    def __init__(self, width: int = 24):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_Block(w, 32, 2), _Block(32, 64, 2), _Block(64, 96, 1))
        self.reduce = nn.Sequential(nn.Conv2d(96, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * (PERIOCULAR_H // 8) * (PERIOCULAR_W // 8), EMBED_DIM),
                                  nn.BatchNorm1d(EMBED_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.reduce(self.stages(self.stem(x)))), dim=1)


class CosFace(nn.Module):
    """Large-margin cosine loss (Wang et al. 2018): logits s * (cos - m) for the true class."""

    def __init__(self, n_classes: int, dim: int = EMBED_DIM, s: float = 30.0, m: float = 0.35):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.s, self.m = s, m

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = emb @ F.normalize(self.weight, dim=1).t()
        logits = self.s * (cos - self.m * F.one_hot(labels, cos.shape[1]))
        return F.cross_entropy(logits, labels)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, 64, 96, 3) uint8 -> (N, 3, 64, 96) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Pose (+-5 deg, +-6% scale, +-4% shift), colour, blur and noise, per sample."""
    n = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    ang = (u(n) - 0.5) * math.radians(10)
    scale = 1 + (u(n) - 0.5) * 0.12
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(ang) / scale
    theta[:, 0, 1] = -torch.sin(ang) / scale * (PERIOCULAR_H / PERIOCULAR_W)
    theta[:, 1, 0] = torch.sin(ang) / scale * (PERIOCULAR_W / PERIOCULAR_H)
    theta[:, 1, 1] = torch.cos(ang) / scale
    theta[:, :, 2] = (u(n, 2) - 0.5) * 0.08
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)
    x = x * (1 + (u(n, 1, 1, 1) - 0.5) * 0.3) + (u(n, 1, 1, 1) - 0.5) * 0.3  # contrast, brightness
    x = x * (1 + (u(n, 3, 1, 1) - 0.5) * 0.12)  # colour balance
    blur = u(n) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = (k[:, None] * k[None, :]) / 256.0
        xb = F.conv2d(F.pad(x[blur], (2, 2, 2, 2), mode="reflect"), k.expand(3, 1, 5, 5).contiguous(), groups=3)
        x = x.clone()
        x[blur] = xb
    x = x + torch.randn(x.shape, generator=gen) * (u(n, 1, 1, 1) * 0.04)
    return x.clamp(-1, 1)


@dataclass
class TrainReport:
    steps: int
    epochs: int
    n_images: int
    n_identities: int
    final_loss: float
    seconds: float
    seed: int


def train_periocular(crops: np.ndarray, labels: np.ndarray, *, epochs: int = 14, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, device: str = "cpu", progress: bool = True, init: dict | None = None) -> tuple[PeriocularNet, TrainReport]:
    """Train (or fine-tune from ``init``) on (N, 64, 96, 3) crops with integer identity ``labels``."""
    import time

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    classes, y = np.unique(labels, return_inverse=True)
    net = PeriocularNet()
    if init is not None:
        net.load_state_dict(init)
    head = CosFace(len(classes))
    net.to(device).train()
    head.to(device).train()
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4)
    steps_per_epoch = max(1, math.ceil(len(crops) / batch_size))
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    x_all = to_tensor(crops)
    y_all = torch.from_numpy(y.astype(np.int64))
    t0, step, loss_ema = time.time(), 0, float("nan")
    bar = tqdm(total=total, desc="train periocular", unit="step", disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(len(crops), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:
                continue
            xb = augment(x_all[idx], gen).to(device)
            loss = head(net(xb), y_all[idx].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"periocular training diverged at step {step} (loss {loss.item()})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_ema = loss.item() if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * loss.item()
            bar.set_postfix(loss=f"{loss_ema:.3f}")
            bar.update(1)
    bar.close()
    net.eval()
    return net, TrainReport(step, epochs, len(crops), len(classes), round(loss_ema, 4), round(time.time() - t0, 1), seed)


@torch.no_grad()
def embed_crops(net: PeriocularNet, crops: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    net.eval()
    out = [net(to_tensor(crops[i : i + batch_size]).to(device)).cpu().numpy() for i in range(0, len(crops), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, EMBED_DIM), np.float32)


def state_bytes(net: PeriocularNet) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, buf)
    return buf.getvalue()


def load_net(path) -> PeriocularNet:
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = PeriocularNet()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.eval()


class PeriocularRecogniser:
    """The zoo interface (``embed(rgb, landmarks)``, ``info``, ``record``) over a trained PeriocularNet."""

    info = RecogniserInfo("periocular", "periocular (per corpus)", EMBED_DIM, "periocular window 96x64 from the eye centres", float("nan"))

    def __init__(self, net: PeriocularNet, record: dict):
        self.net = net
        self._record = record

    @property
    def record(self) -> dict:
        return {**self._record, "recogniser": self.info.name, "crop": self.info.crop}

    def embed(self, rgb: np.ndarray, landmarks: FaceLandmarks) -> np.ndarray:
        return embed_crops(self.net, periocular_crop(rgb, landmarks)[None])[0]

    def embed_many(self, images: list[np.ndarray], landmarks: list[FaceLandmarks | None]) -> np.ndarray:
        """(N, 128) embeddings; NaN rows where a landmark set is None."""
        out = np.full((len(images), EMBED_DIM), np.nan, np.float32)
        ok = [i for i, lm in enumerate(landmarks) if lm is not None]
        if ok:
            crops = np.stack([periocular_crop(images[i], landmarks[i]) for i in ok])
            out[ok] = embed_crops(self.net, crops)
        return out


# --- a training-free periocular matcher from a pretrained whole-face recogniser ------------------------------

# Rows of the 112 px ArcFace-aligned crop that a periocular matcher keeps: from 0.67 inter-ocular distances
# above the eye line to 0.67 below it (the same extent as the learned recogniser's window).
BAND_112 = (28, 75)


def mean_face(crops: np.ndarray) -> np.ndarray:
    """The average of (N, 112, 112, 3) aligned crops: what replaces everything outside the band."""
    return np.clip(np.round(np.asarray(crops, np.float64).mean(0)), 0, 255).astype(np.uint8)


class PeriocularSFace:
    """SFace on the periocular band alone: the aligned face with everything outside ``BAND_112`` replaced by an
    average face of the attacker's own photos. It needs no training, and on real faces it is the stronger
    periocular attacker (a pretrained recogniser's features transfer; a CNN trained on a dozen people does not).
    """

    info = RecogniserInfo("periocular-sface", "sface_int8", 128, "ArcFace-112 crop, rows 28-75 kept, the rest an average face", float("nan"))

    def __init__(self, average: np.ndarray, average_sha256: str):
        from mema.faces.recognisers import SFace

        self.sface = SFace()
        self.average = average
        self.average_sha256 = average_sha256

    @property
    def record(self) -> dict:
        return {**self.sface.record, "recogniser": self.info.name, "crop": self.info.crop, "average_face_sha256": self.average_sha256}

    def masked(self, rgb: np.ndarray, landmarks: FaceLandmarks) -> np.ndarray:
        from mema.faces.align import align_crop, five_points

        crop = align_crop(rgb, five_points(landmarks))
        out = self.average.copy()
        out[BAND_112[0]:BAND_112[1]] = crop[BAND_112[0]:BAND_112[1]]
        return out

    def embed(self, rgb: np.ndarray, landmarks: FaceLandmarks) -> np.ndarray:
        return self.sface.embed_aligned(self.masked(rgb, landmarks)[None])[0]
