"""Disease classification metrics on the reference classifier's outputs."""

from __future__ import annotations

import numpy as np


def top1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of samples whose predicted class equals the label."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Top-1 within each true class (NaN for a class with no samples)."""
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        sel = y_true == c
        if sel.any():
            out[c] = np.mean(y_pred[sel] == c)
    return out


def binary_auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney), NaN if one class."""
    y = np.asarray(y).astype(bool)
    pos, neg = np.sum(y), np.sum(~y)
    if pos == 0 or neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)  # average ranks handle ties
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def macro_auroc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """One-vs-rest AUROC averaged over the classes present in ``y_true``."""
    vals = [binary_auroc(y_true == c, proba[:, c]) for c in range(proba.shape[1]) if np.any(y_true == c)]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def cohen_kappa(a: np.ndarray, b: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa between two label sequences (unweighted). 1 when both are constant and equal."""
    a, b = np.asarray(a), np.asarray(b)
    if not len(a):
        return float("nan")
    cm = np.zeros((n_classes, n_classes))
    np.add.at(cm, (a, b), 1)
    n = cm.sum()
    po = np.trace(cm) / n
    pe = float((cm.sum(0) * cm.sum(1)).sum()) / n**2
    if pe == 1.0:
        return 1.0 if po == 1.0 else 0.0
    return float((po - pe) / (1 - pe))


def sensitivity_specificity(y_true: np.ndarray, y_pred: np.ndarray, normal_class: int = 0) -> tuple[float, float]:
    """Disease detection: sensitivity = diseased predicted diseased; specificity = normal predicted normal."""
    sick_t, sick_p = y_true != normal_class, y_pred != normal_class
    sens = float(np.mean(sick_p[sick_t])) if sick_t.any() else float("nan")
    spec = float(np.mean(~sick_p[~sick_t])) if (~sick_t).any() else float("nan")
    return sens, spec
