"""Perceptual hash (pHash) of a photo, for near-duplicates in a real set.

A re-saved, resized or re-exposed copy of a photo has other bytes but the same picture; kept twice, it
would count one patient photo twice in the statistics and in the finetuning data. pHash (Zauner 2010;
the ``imagehash`` package's ``phash``): grey image resized to 32x32, 2-D DCT-II, the 8x8 lowest
frequencies compared with their median, 64 bits. Two photos are near-duplicates when their hashes differ
in at most ``NEAR_DUPLICATE_BITS`` bits.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.fft import dctn

# Measured on offline DCGAN faces (which look more alike than real people): a copy rescaled, JPEG
# re-encoded (quality 70) or brightened by 10% differs by at most 2 bits; two photos of one MeMa-tiny
# identity (pose and latent jitter) by 6 or more, different faces by 10 or more. Another photo of the
# same patient is data, not a duplicate, so the threshold stays below 6.
NEAR_DUPLICATE_BITS = 4


def phash(rgb: np.ndarray) -> np.ndarray:
    """64 bits (a bool vector) from an (H, W, 3) uint8 image."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float64)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA)
    low = dctn(small, type=2, norm="ortho")[:8, :8]
    return (low > np.median(low)).ravel()


def nearest(bits: np.ndarray, earlier: list[np.ndarray]) -> tuple[int, int] | None:
    """Index and Hamming distance of the closest earlier hash, or None when there is none."""
    if not earlier:
        return None
    d = (np.stack(earlier) != bits).sum(1)
    j = int(d.argmin())
    return j, int(d[j])
