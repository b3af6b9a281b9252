"""Same-person decisions: one recogniser at the threshold calibrated for the corpus (docs/metrics.md).

Pixel-aligned like the harness: an image is cropped with the landmarks of the original it is
compared with, so a method (or an attack) cannot escape the recogniser by moving the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mema.faces.landmarks import FaceLandmarks


def calibrated_threshold(ref, recogniser, name: str, far: float) -> tuple[float, dict]:
    """(threshold, calibration table) of ``name`` at ``far``, from the corpus's reference evaluators."""
    from mema.evaluation.harness import EvalError  # late: the harness imports this module's users

    cal = ref.thresholds(recogniser, name)
    far_key = f"far_{far:g}"
    if far_key not in cal:
        raise EvalError(f"no threshold calibrated at FAR {far}; available: {[k for k in cal if k.startswith('far_')]}")
    return float(cal[far_key]["threshold"]), cal


@dataclass
class SamePersonJudge:
    """Two images show the same person when the L2 distance of their unit embeddings is below ``threshold``."""

    name: str
    recogniser: object
    threshold: float
    far: float

    @classmethod
    def from_reference(cls, ref, name: str, far: float) -> "SamePersonJudge":
        from mema.faces.recognisers import get_recogniser

        recogniser = get_recogniser(name)
        threshold, _ = calibrated_threshold(ref, recogniser, name, far)
        return cls(name, recogniser, threshold, far)

    @property
    def record(self) -> dict:
        return {**self.recogniser.record, "threshold": self.threshold, "far": self.far}

    def embed(self, images: np.ndarray, landmarks: list[FaceLandmarks | None]) -> np.ndarray:
        """(N, d) embeddings; image i is cropped with ``landmarks[i]`` (NaN row when that is None)."""
        rows = [self.recogniser.embed(img, lm) if lm is not None else None for img, lm in zip(images, landmarks)]
        dim = next((len(r) for r in rows if r is not None), 128)
        return np.stack([r if r is not None else np.full(dim, np.nan) for r in rows]).astype(np.float64)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)

    def same_person(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise decisions; a NaN embedding (no face to crop) is never a match."""
        d = self.distance(a, b)
        return np.isfinite(d) & (d < self.threshold)
