"""What the images show, measured: age and gender by the offline estimator, the disease sign by a reference
classifier, on the generated images and on the real set alike, compared by Wasserstein W1 with bootstrap CIs.

The sampling plan's labels say what was asked for; a report built from them is near 0 by construction
(``plan_vs_real.json``). This report measures the pixels instead:

- age (years) and gender (male = 1) by the same estimator on both sides (its bias cancels in the comparison);
- the sign, by the eye-crop disease classifier of :mod:`mema.evaluators.classifier` (``--classifier DIR``:
  ``classifier.pt`` + ``classifier.json`` as ``save_classifier`` writes them): the predicted class
  distribution (class index / 7, as in MeMa Table 2) against the real set's, and the share of images
  whose predicted class is their label, on the generated images and, for scale, on the real ones.

Images in which no face is found are counted and left out. CIs are percentile bootstraps (both sides
resampled with replacement). Only aggregates are returned; per-image values of real photos stay in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mema.corpus.schema import DISEASES
from mema.generation.stage import StageError

N_BOOTSTRAP = 1000


def w1(u: np.ndarray, v: np.ndarray) -> float:
    """Wasserstein-1 distance of two 1-D empirical distributions: the area between their CDFs."""
    u, v = np.sort(np.asarray(u, float)), np.sort(np.asarray(v, float))
    both = np.sort(np.concatenate([u, v]))
    cu = np.searchsorted(u, both[:-1], side="right") / len(u)
    cv = np.searchsorted(v, both[:-1], side="right") / len(v)
    return float(np.sum(np.abs(cu - cv) * np.diff(both)))


def bootstrap_w1(u, v, *, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """W1 with a 95% percentile-bootstrap interval; None when either side is empty."""
    u, v = np.asarray(u, float), np.asarray(v, float)
    if len(u) == 0 or len(v) == 0:
        return {"w1": None, "ci95": None, "n_generated": len(u), "n_real": len(v)}
    rng = np.random.default_rng(seed)
    boots = [w1(u[rng.integers(0, len(u), len(u))], v[rng.integers(0, len(v), len(v))]) for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"w1": round(w1(u, v), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)], "n_generated": len(u), "n_real": len(v)}


def bootstrap_rate(hits, *, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """A share with its 95% percentile-bootstrap interval."""
    x = np.asarray(hits, float)
    if len(x) == 0:
        return {"rate": None, "ci95": None, "n": 0}
    rng = np.random.default_rng(seed)
    boots = [x[rng.integers(0, len(x), len(x))].mean() for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"rate": round(float(x.mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)], "n": len(x)}


class ReferenceClassifier:
    """The eye-crop disease classifier from a folder, its weights checked against the hash recorded beside them."""

    def __init__(self, folder: str | Path):
        from mema.evaluators.classifier import load_classifier
        from mema.weights import sha256_file

        folder = Path(folder)
        if not (folder / "classifier.pt").is_file() or not (folder / "classifier.json").is_file():
            raise StageError(f"--classifier {folder}: needs classifier.pt and classifier.json (as `mema-eval` caches them in "
                             "$MEMA_HOME/evaluators/<corpus>/, or mema.evaluators.classifier.save_classifier writes them)")
        meta = json.loads((folder / "classifier.json").read_text())
        digest = sha256_file(folder / "classifier.pt")
        if meta.get("sha256") != digest:
            raise StageError(f"--classifier {folder}: classifier.pt does not match the sha256 in classifier.json")
        if list(meta.get("classes", [])) != list(DISEASES):
            raise StageError(f"--classifier {folder}: its classes {meta.get('classes')} are not MeMa's {list(DISEASES)}")
        self.model, self.meta = load_classifier(folder)
        self.record = {"arch": meta["arch"], "sha256": digest, "trained_on": meta.get("corpus"), "val_top1": meta.get("val_top1")}

    def predict(self, crops: np.ndarray) -> np.ndarray:
        from mema.evaluators.classifier import predict_proba

        return predict_proba(self.model, crops)


@dataclass
class Measured:
    """Per image: face found, age (years), male (0/1), predicted class index (-1: not measured)."""

    face: np.ndarray
    age: np.ndarray
    male: np.ndarray
    predicted: np.ndarray

    @property
    def n(self) -> int:
        return len(self.face)


def measure_images(images: Iterable[np.ndarray], estimator, classifier: ReferenceClassifier | None = None, *,
                   total: int | None = None, desc: str = "measure", progress: bool = True) -> Measured:
    """Age, gender and (with a classifier) the predicted disease of each image in which a face is found."""
    from tqdm import tqdm

    from mema.faces.eyecrop import apply_eye_crop, eye_crop_matrix
    from mema.faces.landmarks import LandmarkDetector

    face, age, male, crops = [], [], [], []
    with LandmarkDetector() as det:
        for img in tqdm(images, total=total, desc=desc, unit="img", disable=not progress, leave=False):
            lm = det.detect(img)
            face.append(lm is not None)
            if lm is None:
                age.append(np.nan)
                male.append(np.nan)
                continue
            a, g = estimator.predict(img)
            age.append(float(a))
            male.append(1.0 if g == "male" else 0.0)
            if classifier is not None:
                crops.append(apply_eye_crop(img, eye_crop_matrix(lm)))
    face = np.array(face, bool)
    predicted = np.full(len(face), -1, int)
    if classifier is not None and crops:
        predicted[face] = classifier.predict(np.stack(crops)).argmax(1)
    return Measured(face, np.array(age, float), np.array(male, float), predicted)


def attribute_report(gen: Measured, gen_labels: list[str], real: Measured, real_labels: list[str], *, estimator: str,
                     classifier: ReferenceClassifier | None, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """Measured attributes of the generated images against the real set's (aggregates only)."""
    g, r = gen.face, real.face
    report = {
        "what": "measured on the images (not the sampling labels): generated vs real, Wasserstein W1 with 95% bootstrap CIs",
        "estimator": estimator, "n_bootstrap": n_boot, "seed": seed,
        "n_generated": gen.n, "n_generated_without_face": int((~g).sum()), "n_real": real.n, "n_real_without_face": int((~r).sum()),
        "age": {**bootstrap_w1(gen.age[g], real.age[r], n_boot=n_boot, seed=seed), "unit": "years",
                "generated_median": _round(np.median(gen.age[g])) if g.any() else None,
                "real_median": _round(np.median(real.age[r])) if r.any() else None},
        "gender": {**bootstrap_w1(gen.male[g], real.male[r], n_boot=n_boot, seed=seed + 1), "unit": "male = 1, female = 0",
                   "generated_male_share": _round(gen.male[g].mean()) if g.any() else None,
                   "real_male_share": _round(real.male[r].mean()) if r.any() else None},
        "classifier": classifier.record if classifier is not None else None,
        "sign": None,
    }
    if classifier is not None:
        scale = len(DISEASES) - 1
        gi = np.array([DISEASES.index(d) for d in gen_labels])
        ri = np.array([DISEASES.index(d) for d in real_labels])
        report["sign"] = {
            "predicted_class_w1": {**bootstrap_w1(gen.predicted[g] / scale, real.predicted[r] / scale, n_boot=n_boot, seed=seed + 2),
                                   "unit": "class index / 7 (MeMa Table 2 scale)"},
            "agreement_generated": bootstrap_rate(gen.predicted[g] == gi[g], n_boot=n_boot, seed=seed + 3),
            "agreement_real": bootstrap_rate(real.predicted[r] == ri[r], n_boot=n_boot, seed=seed + 4),
            "predicted_generated": {d: int((gen.predicted[g] == k).sum()) for k, d in enumerate(DISEASES)},
            "predicted_real": {d: int((real.predicted[r] == k).sum()) for k, d in enumerate(DISEASES)},
            "agreement_generated_by_label": {
                d: {"n": int((gi[g] == k).sum()), "agree": int(((gi[g] == k) & (gen.predicted[g] == k)).sum())}
                for k, d in enumerate(DISEASES) if (gi[g] == k).any()},
        }
    return report


def _round(x) -> float:
    return round(float(x), 4)
