"""Lesion overlap metrics. Empty reference and empty prediction give NaN (averaged with nanmean)."""

from __future__ import annotations

import numpy as np


def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    ref, pred = np.asarray(ref, bool), np.asarray(pred, bool)
    denom = ref.sum() + pred.sum()
    return float("nan") if denom == 0 else float(2 * np.logical_and(ref, pred).sum() / denom)


def jaccard(ref: np.ndarray, pred: np.ndarray) -> float:
    ref, pred = np.asarray(ref, bool), np.asarray(pred, bool)
    union = np.logical_or(ref, pred).sum()
    return float("nan") if union == 0 else float(np.logical_and(ref, pred).sum() / union)
