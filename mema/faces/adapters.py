"""Adapters for recognisers whose weights no package ships (ArcFace, FaceNet, VGG-Face).

They work when the user has the weights locally: set ``MEMA_ARCFACE_ONNX`` to an insightface ArcFace
ONNX file (e.g. ``w600k_r50.onnx`` from buffalo_l) or ``MEMA_FACENET_ONNX`` to a FaceNet ONNX export
(e.g. facenet-pytorch's InceptionResnetV1 on VGGFace2, exported with torch.onnx). Otherwise the error says what is missing and
where it goes; nothing is downloaded. ArcFace is described under ``local_inputs`` in the weights manifest
(licence, upstream), so its error comes from :func:`mema.weights.local.require_local`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mema.faces.align import align_crop, five_points
from mema.faces.landmarks import FaceLandmarks
from mema.faces.recognisers import RecogniserInfo, l2_normalise
from mema.weights import WeightsError, sha256_file

OPTIONAL = {
    "arcface": ("MEMA_ARCFACE_ONNX", "an insightface ArcFace ONNX model (e.g. buffalo_l/w600k_r50.onnx)"),
    "facenet": ("MEMA_FACENET_ONNX", "a FaceNet ONNX model taking 160x160 RGB crops"),
}
# recogniser -> its entry under local_inputs in manifest.json
LOCAL_INPUT = {"arcface": "arcface_onnx"}


# name -> (crop size, pixel scale): ArcFace (x - 127.5) / 127.5 at 112 px; FaceNet (x - 127.5) / 128 at 160 px.
PREPROCESS = {"arcface": (112, 127.5), "facenet": (160, 128.0)}


class OnnxRecogniser:
    """An ONNX face recogniser from a local path, fed a similarity-aligned RGB crop (NCHW)."""

    def __init__(self, path: Path, name: str, licence: str = "user-supplied"):
        import onnxruntime as ort

        self.path = path
        self.sha256 = sha256_file(path)
        self.licence = licence
        self.size, self.scale = PREPROCESS[name]
        self.info = RecogniserInfo(name, f"local:{path.name}", 0, f"arcface-template similarity crop at {self.size} px", 1.0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    @property
    def record(self) -> dict:
        return {"recogniser": self.info.name, "file": self.path.name, "sha256": self.sha256, "licence": self.licence}

    def embed(self, rgb: np.ndarray, landmarks: FaceLandmarks) -> np.ndarray:
        crop = align_crop(rgb, five_points(landmarks), size=self.size).astype(np.float32)
        x = ((crop - 127.5) / self.scale).transpose(2, 0, 1)[None]
        return l2_normalise(self._session.run(None, {self._input: x})[0])[0]


def optional_recogniser(name: str, path: str | Path | None = None):
    """The recogniser from ``path``, or else from its environment variable."""
    if name not in OPTIONAL:
        raise WeightsError(f"unknown recogniser {name!r}; built in: sface, dlib-resnet; with local weights: {', '.join(OPTIONAL)}")
    var, what = OPTIONAL[name]
    value = path or os.environ.get(var)
    if name in LOCAL_INPUT:
        from mema.weights.local import local_inputs, require_local

        path = require_local(LOCAL_INPUT[name], value)[0]
        return OnnxRecogniser(path, name, local_inputs()[LOCAL_INPUT[name]]["licence"])
    if not value or not Path(value).is_file():
        raise WeightsError(
            f"recogniser {name!r} needs {what}, which no package ships and MeMa never downloads. "
            f"Put the file on this machine and set {var}=/path/to/file."
        )
    return OnnxRecogniser(Path(value), name)
