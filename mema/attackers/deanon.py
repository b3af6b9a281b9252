"""De-anonymization attacker (Fantomas-style): learn outputs -> originals, then identify the reconstructions.

A small U-Net on 64x64 faces predicts the original from the output (as a residual on the output), trained
with an L1 loss on the attacker's own (output, original) pairs; reconstructions are upsampled back to the
corpus size and identified by the recogniser zoo like any output. 64 px keeps training within minutes on
two CPU cores; the corpus's faces carry little identity above that scale (MeMa-mini's faces come from a
64 px generator).
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

SIZE = 64


class _Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(8, cout), nn.SiLU(),
                               nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU())

    def forward(self, x):
        return self.f(x)


class _Up(nn.Module):
    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(cin + cskip, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU(),
                               nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU())

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.f(torch.cat([x, skip], 1))


class DeanonUNet(nn.Module):
    def __init__(self, w: int = 16):
        super().__init__()
        self.inc = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1), nn.GroupNorm(8, w), nn.SiLU())
        self.d1, self.d2, self.d3 = _Down(w, 2 * w), _Down(2 * w, 4 * w), _Down(4 * w, 4 * w)
        self.u3, self.u2, self.u1 = _Up(4 * w, 4 * w, 4 * w), _Up(4 * w, 2 * w, 2 * w), _Up(2 * w, w, w)
        self.out = nn.Conv2d(w, 3, 1)

    def forward(self, x):
        x0 = self.inc(x)
        x1 = self.d1(x0)
        x2 = self.d2(x1)
        x3 = self.d3(x2)
        y = self.u1(self.u2(self.u3(x3, x2), x1), x0)
        return (x + self.out(y)).clamp(-1, 1)


def _small(images: np.ndarray) -> torch.Tensor:
    arr = np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def train_deanon(outputs: np.ndarray, originals: np.ndarray, *, epochs: int = 12, batch_size: int = 32, lr: float = 2e-3,
                 seed: int = 0, device: str = "cpu", progress: bool = True) -> tuple[DeanonUNet, dict]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = _small(outputs), _small(originals)
    net = DeanonUNet().to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = max(1, math.ceil(len(x) / batch_size)) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0, step, ema = time.time(), 0, float("nan")
    bar = tqdm(total=steps, desc="train de-anonymizer", unit="step", disable=not progress)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # mirror pairs together: both sides of the face
            xb = torch.where(flip[:, None, None, None], x[idx].flip(-1), x[idx]).to(device)
            yb = torch.where(flip[:, None, None, None], y[idx].flip(-1), y[idx]).to(device)
            loss = F.l1_loss(net(xb), yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"de-anonymizer training diverged at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            ema = loss.item() if math.isnan(ema) else 0.9 * ema + 0.1 * loss.item()
            bar.set_postfix(l1=f"{ema:.4f}")
            bar.update(1)
    bar.close()
    return net.eval(), {"steps": step, "epochs": epochs, "n_pairs": int(len(x)), "final_l1": round(ema, 5),
                        "seconds": round(time.time() - t0, 1), "seed": seed, "size": SIZE}


@torch.no_grad()
def reconstruct(net: DeanonUNet, outputs: np.ndarray, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """(N, H, W, 3) uint8 reconstructions at the outputs' size."""
    h, w = outputs.shape[1:3]
    rec = []
    for i in range(0, len(outputs), batch_size):
        y = net(_small(outputs[i : i + batch_size]).to(device)).cpu()
        arr = ((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)
        rec += [cv2.resize(a, (w, h), interpolation=cv2.INTER_CUBIC) for a in arr]
    return np.stack(rec) if rec else np.zeros((0, h, w, 3), np.uint8)
