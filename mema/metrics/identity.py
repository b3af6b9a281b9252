"""Identity metrics on L2-normalised embeddings."""

from __future__ import annotations

import numpy as np


def l2_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ID-Dis: row-wise Euclidean distance between unit embeddings (0 same vector .. 2 opposite)."""
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


def pairwise_l2(a: np.ndarray, b: np.ndarray, dtype=np.float64) -> np.ndarray:
    """(len(a), len(b)) distances between unit embeddings.

    The Gram form needs len(a) x len(b) memory, not x dim as a broadcast difference would.
    """
    return np.sqrt(np.clip(2.0 - 2.0 * (np.asarray(a, dtype) @ np.asarray(b, dtype).T), 0.0, None))


def rank1_match(probe: np.ndarray, probe_ids: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray) -> np.ndarray:
    """Per probe: True when its nearest gallery embedding has the same identity (face matching attack)."""
    d = pairwise_l2(probe, gallery)
    return np.asarray(gallery_ids)[d.argmin(1)] == np.asarray(probe_ids)


def calibrate_threshold(impostor: np.ndarray, far: float) -> float:
    """Largest distance threshold whose false accept rate on ``impostor`` distances is <= ``far``.

    Same person when distance < threshold. With sorted impostor distances d, accepting the k smallest
    gives FAR k/n; the threshold is placed at d[k] with k = floor(far * n).
    """
    d = np.sort(np.asarray(impostor, np.float64))
    if not len(d):
        raise ValueError("no impostor pairs to calibrate on")
    k = int(np.floor(far * len(d)))
    return float(d[min(k, len(d) - 1)])


def accept_rate(distances: np.ndarray, threshold: float) -> float:
    """Fraction of pairs judged same person (distance < threshold): TAR on genuine, FAR on impostor pairs."""
    d = np.asarray(distances)
    return float(np.mean(d < threshold)) if len(d) else float("nan")
