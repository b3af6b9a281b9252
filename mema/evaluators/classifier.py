"""Frozen reference disease classifier: a small CNN on the periocular crop, trained from scratch.

No ImageNet/DINOv2 weights can be had offline, so the classifier is trained once on the original
training split and cached by corpus fingerprint. At evaluation the crop frame comes from the
*original* image's landmarks and is applied to the de-identified image: methods under test are
pixel-aligned (they return an image in the same frame), and the question asked is whether the
clinical signs are still where the clinician would look.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mema.corpus.schema import DISEASES
from mema.faces.eyecrop import CROP_H, CROP_W

ARCH = "eyecrop-cnn-v1"


class EyeCropCNN(nn.Module):
    """Four conv stages (BN, ReLU, max-pool) and a linear head over global-average features."""

    def __init__(self, n_classes: int = len(DISEASES), width: int = 24):
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            )

        w = self.width = width
        self.features = nn.Sequential(
            stage(3, w), nn.MaxPool2d(2), stage(w, 2 * w), nn.MaxPool2d(2), stage(2 * w, 4 * w), nn.MaxPool2d(2), stage(4 * w, 4 * w)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    # Small translations by rolling; photometric gain and bias.
    dx, dy = (torch.randint(-3, 4, (2,), generator=gen)).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    gain = 1 + 0.15 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 2
    bias = 0.1 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5) * 2
    return x * gain + bias


@dataclass
class TrainResult:
    model: EyeCropCNN
    val_top1: float
    epochs: int
    seconds: float
    history: list[dict]


def train_classifier(
    train_crops: np.ndarray,
    train_labels: np.ndarray,
    val_crops: np.ndarray,
    val_labels: np.ndarray,
    *,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 3e-3,
    width: int = 24,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> TrainResult:
    """Train from scratch; keeps the epoch with the best val top-1 (no test data is touched)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = EyeCropCNN(width=width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(train_crops) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    xtr, ytr = to_tensor(train_crops), torch.from_numpy(train_labels).long()
    best, best_state, history = -1.0, None, []
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        losses = []
        bar = tqdm(range(0, len(order), batch_size), desc=f"classifier epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for i in bar:
            idx = order[i : i + batch_size]
            xb = _augment(xtr[idx], gen).to(device)
            loss = nn.functional.cross_entropy(model(xb), ytr[idx].to(device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        val_top1 = float((predict_proba(model, val_crops, device=device).argmax(1) == val_labels).mean()) if len(val_crops) else 0.0
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_top1": val_top1})
        if progress:
            print(f"classifier epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f} val top-1 {val_top1:.3f}")
        if val_top1 >= best:
            best, best_state = val_top1, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return TrainResult(model.eval(), best, epochs, time.time() - t0, history)


@torch.no_grad()
def predict_proba(model: EyeCropCNN, crops: np.ndarray, *, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Class probabilities (N, 8); eval mode, no dropout, every sample (no drop_last)."""
    model.eval()
    out = []
    for i in range(0, len(crops), batch_size):
        out.append(torch.softmax(model(to_tensor(crops[i : i + batch_size]).to(device)), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(DISEASES)), np.float32)


def save_classifier(result: TrainResult, folder: Path, meta: dict) -> str:
    """Write weights + meta; returns the weights' sha256."""
    import hashlib
    import io

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(result.model.state_dict(), buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    from mema.imageio import atomic_write_bytes

    atomic_write_bytes(folder / "classifier.pt", data)
    meta = {**meta, "arch": ARCH, "width": result.model.width, "sha256": digest, "val_top1": result.val_top1, "epochs": result.epochs,
            "train_seconds": round(result.seconds, 1), "history": result.history, "classes": list(DISEASES),
            "crop": [CROP_W, CROP_H]}
    atomic_write_bytes(folder / "classifier.json", json.dumps(meta, indent=2).encode())
    return digest


def load_classifier(folder: Path, device: str = "cpu") -> tuple[EyeCropCNN, dict]:
    meta = json.loads((folder / "classifier.json").read_text())
    model = EyeCropCNN(width=meta["width"])
    model.load_state_dict(torch.load(folder / "classifier.pt", map_location=device, weights_only=True))
    return model.to(device).eval(), meta
