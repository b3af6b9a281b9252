"""Adaptive attackers (SEBA, "A False Sense of Privacy"; Fantomas, PETS 2024): they learn the method.

The attacker has the method itself (and, for keyed methods, its own key, never the evaluation key) and
photos of identities of its own (the corpus's train split, or dev when there is none). It runs the method
on them, learns from (output, original) pairs, and then identifies the anonymized test probes against the
original gallery. Three learners, each reported; the adaptive protection is the lowest of the first two,
the de-anonymization protection that of the third:

- ``feature-map``: ridge regression from the secondary recognisers' embeddings of an output (SFace,
  periocular, periocular-sface, concatenated) to the embeddings of its original; probes are matched in the mapped space. It learns which
  parts of the recognisers' view survive the method. The ridge strength is chosen on held-out attacker
  identities.
- ``periocular-finetune``: the corpus's periocular recogniser fine-tuned on the attacker's outputs and
  originals together (same identity labels), so it becomes invariant to the method.
- ``deanon`` (:mod:`mema.attackers.deanon`): a U-Net trained to map outputs back to originals; its
  reconstructions are identified by every recogniser of the zoo.
"""

from __future__ import annotations

import numpy as np

from mema.metrics.identity import rank1_match

RIDGE_LAMBDAS = (0.01, 0.1, 1.0, 10.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """W minimising ||[x, 1] W - y||^2 + lam ||W||^2 (bias unpenalised in spirit; small lam makes it moot)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    a = xb.T @ xb + lam * np.eye(xb.shape[1])
    return np.linalg.solve(a, xb.T @ y)


def ridge_apply(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def choose_lambda(x: np.ndarray, y: np.ndarray, ids: np.ndarray, seed: int = 0) -> tuple[float, dict]:
    """Ridge strength with the best rank-1 on held-out identities (2 folds by identity)."""
    uniq = np.unique(ids)
    rng = np.random.default_rng(seed)
    fold = dict(zip(uniq, rng.permutation(len(uniq)) % 2))
    f = np.array([fold[i] for i in ids])
    scores = {}
    for lam in RIDGE_LAMBDAS:
        hits = []
        for k in (0, 1):
            tr, te = f != k, f == k
            if tr.sum() < 2 or te.sum() < 2:
                continue
            w = ridge_fit(x[tr], y[tr], lam)
            pred = _unit(ridge_apply(w, x[te]))
            # Gallery: one original embedding per held-out identity (its first).
            te_ids = ids[te]
            _, first = np.unique(te_ids, return_index=True)
            gal, gal_ids = _unit(y[te][first]), te_ids[first]
            hits.append(rank1_match(pred, te_ids, gal, gal_ids))
        scores[lam] = float(np.mean(np.concatenate(hits))) if hits else 0.0
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def feature_map_attack(train_out: np.ndarray, train_orig: np.ndarray, train_ids: np.ndarray,
                       probe: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mapped probe features, gallery features, report). Rows must be finite (callers drop the others)."""
    lam, scores = choose_lambda(train_out, train_orig, train_ids)
    w = ridge_fit(train_out, train_orig, lam)
    return _unit(ridge_apply(w, probe)), _unit(gallery), {"lambda": lam, "heldout_rank1_by_lambda": scores,
                                                           "n_train": int(len(train_out)), "n_train_identities": int(len(np.unique(train_ids)))}
