"""Confidence intervals: percentile bootstrap over samples (or over identities, when given groups)."""

from __future__ import annotations

from typing import Callable

import numpy as np

N_BOOT = 1000
SEED = 0


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    alpha: float = 0.05,
) -> tuple[float, float] | None:
    """95% percentile-bootstrap CI of ``statistic(indices)``; None when n < 2.

    With ``groups`` (e.g. identity of each sample), whole groups are resampled, so photos of one
    person do not count as independent evidence.
    """
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = (rng.integers(0, n, n) for _ in range(n_boot))
    else:
        uniq, inverse = np.unique(groups, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
        draws = (np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))]) for _ in range(n_boot))
    vals = np.array([statistic(idx) for idx in draws], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return None
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))
