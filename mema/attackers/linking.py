"""Linkability attacks: what an attacker learns from many outputs, without any original.

- **Output linking**: two de-identified photos of the same patient are matched to each other. Probes are
  each test identity's first output, the gallery is one other output of every test identity; rank-1 is
  measured with every recogniser of the zoo. A method that gives each patient a consistent new face links.
- **Same-key median attack**: outputs of different patients made with one key share whatever the key
  decides (a virtual face, a texture); their median estimates it. Subtracting it from each output and
  adding an average real face (the attacker's public data: the median of original gallery photos of the
  attacker's own training identities) keeps only what differs per patient — the patient's own pixels.
  Those composites are then identified against the original gallery like any output.
Both are reported as protection = 1 - the strongest recogniser's rank-1, with the recogniser named.
"""

from __future__ import annotations

import numpy as np


def median_composites(outputs: np.ndarray, public_average: np.ndarray, group: int = 32, seed: int = 0) -> np.ndarray:
    """(N, H, W, 3) uint8 composites: public average face + (output - median of the other outputs of its group).

    Outputs are split into seeded groups of ``group`` (the attacker holds a batch made with one key); each
    output's median comes from the others in its group, so its own pixels never enter its estimate.
    """
    n = len(outputs)
    order = np.random.default_rng(seed).permutation(n)
    x = outputs.astype(np.float32)
    out = np.empty_like(outputs)
    for start in range(0, n, group):
        idx = order[start : start + group]
        if len(idx) < 3:  # too few to estimate a shared part: take them with the previous group
            idx = order[max(0, start - group) : start + group]
        for i in idx:
            others = [j for j in idx if j != i]
            med = np.median(x[others], axis=0)
            out[i] = np.clip(np.round(public_average + (x[i] - med)), 0, 255).astype(np.uint8)
    return out


def shared_content(images: np.ndarray, pairs: int = 500, seed: int = 0) -> float:
    """Mean Pearson correlation of the pixels of random pairs of images (of different patients)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    if n < 2:
        return float("nan")
    flat = images.reshape(n, -1).astype(np.float64)
    flat -= flat.mean(1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True) + 1e-9
    a = rng.integers(0, n, pairs)
    b = (a + rng.integers(1, n, pairs)) % n
    return float(np.mean(np.sum(flat[a] * flat[b], axis=1)))
