"""Face recognisers: aligned face crop -> L2-normalised identity embedding.

Each recogniser declares its weights (manifest name), crop and distance, so results can record
exactly what measured them. Thresholds are calibrated elsewhere (on a calibration split), never
hard-coded into metrics; ``reference_threshold`` is only the upstream-published value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mema.faces.align import align_crop, five_points
from mema.faces.landmarks import FaceLandmarks
from mema.weights import weight_path, weight_record


@dataclass(frozen=True)
class RecogniserInfo:
    name: str
    weights: str  # manifest entry
    dim: int
    crop: str
    reference_threshold: float  # upstream's same-person L2 threshold on normalised embeddings


def l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def fold_dequantized_weights(model) -> int:
    """Replace each ``DequantizeLinear`` of a constant (int8 weights, blocked or per-axis scales) by its float result.

    onnxruntime otherwise dequantises every weight on every call, a third of SFace's time on one thread. The
    float values are computed as onnxruntime does, ``float(q - zero_point) * scale``. Returns the nodes folded."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    kept, folded = [], 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input):
            kept.append(node)
            continue
        q = numpy_helper.to_array(inits[node.input[0]])
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else np.zeros_like(scale, np.int32)
        attrs = {a.name: a.i for a in node.attribute}
        axis, block = attrs.get("axis", 1) % max(q.ndim, 1), attrs.get("block_size", 0)
        if block:  # blocked quantisation: one scale per `block` elements along `axis`
            scale = np.repeat(scale, block, axis=axis)[tuple(slice(0, d) for d in q.shape)]
            zero = np.repeat(zero, block, axis=axis)[tuple(slice(0, d) for d in q.shape)]
        elif scale.ndim == 1 and scale.size > 1:  # per-axis
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        w = (q.astype(np.int32) - zero.astype(np.int32)).astype(np.float32) * scale
        model.graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), node.output[0]))
        folded += 1
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for t in unused:  # the int8 tensors and their scales
        model.graph.initializer.remove(t)
    return folded


class SFace:
    """OpenCV Zoo SFace (int8, 128-d) run with onnxruntime.

    The model lists stale weight tensors as graph inputs that no node reads (the graph dequantises
    its own int8 copies), and onnxruntime demands a value for each; inputs that no node consumes, or
    that are initializers, are dropped before the session is built.
    Pre-processing follows OpenCV's FaceRecognizerSF: 112x112 RGB, float 0..255, no mean.
    """

    # Upstream: same person when cosine > 0.363, i.e. L2 on unit vectors < sqrt(2 - 2 * 0.363).
    info = RecogniserInfo("sface", "sface_int8", 128, "arcface-112 similarity crop from 5 landmarks", float(np.sqrt(2 - 2 * 0.363)))

    def __init__(self, threads: int = 1, fold_weights: bool = True):
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(weight_path(self.info.weights)))
        consumed = {name for node in model.graph.node for name in node.input}
        initializers = {t.name for t in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name in consumed and i.name not in initializers]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if fold_weights:
            fold_dequantized_weights(model)
            # No graph rewrites and no weight prepacking: the convolutions then sum in the same order as on the
            # unfolded graph, so embeddings are bit-identical to it (tests/test_recognisers.py), only faster.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.add_session_config_entry("session.disable_prepacking", "1")
        self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    @property
    def record(self) -> dict:
        return {**weight_record(self.info.weights), "recogniser": self.info.name, "crop": self.info.crop}

    def embed_aligned(self, crops: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 aligned crops -> (N, 128) unit embeddings."""
        x = np.ascontiguousarray(crops.astype(np.float32).transpose(0, 3, 1, 2))
        out = [self._session.run(None, {self._input: x[i : i + 1]})[0] for i in range(len(x))]
        return l2_normalise(np.concatenate(out).reshape(len(x), -1))

    def embed(self, rgb: np.ndarray, landmarks: FaceLandmarks) -> np.ndarray:
        return self.embed_aligned(align_crop(rgb, five_points(landmarks))[None])[0]


class DlibResNet:
    """dlib's ResNet (128-d, LFW 99.38%), aligned by dlib's own 5-point chip from a landmark box.

    The box is the bounding box of the face-mesh points, so the recogniser sees the face where the
    original was, even when a method has hidden it from a detector.
    """

    info = RecogniserInfo("dlib-resnet", "dlib_resnet_v1", 128, "dlib 5-point chip (150 px, padding 0.25) in the landmark box", 0.6)

    def __init__(self):
        import dlib

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(weight_path("dlib_shape_5")))
        self._net = dlib.face_recognition_model_v1(str(weight_path(self.info.weights)))

    @property
    def record(self) -> dict:
        return {**weight_record(self.info.weights), "recogniser": self.info.name, "crop": self.info.crop,
                "aligner": weight_record("dlib_shape_5")}

    def embed(self, rgb: np.ndarray, landmarks: FaceLandmarks) -> np.ndarray:
        x0, y0 = np.floor(landmarks.points.min(0)).astype(int)
        x1, y1 = np.ceil(landmarks.points.max(0)).astype(int)
        rect = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        img = np.ascontiguousarray(rgb)
        shape = self._shape(img, rect)
        return l2_normalise(np.asarray(self._net.compute_face_descriptor(img, shape), dtype=np.float64)[None])[0]


RECOGNISERS = {"sface": SFace, "dlib-resnet": DlibResNet}


def embed_images(images: Iterable[np.ndarray], recognisers: dict) -> tuple[dict[str, np.ndarray], list[bool]]:
    """Per recogniser, one unit embedding per image (a NaN row where no face is found), and the found mask.

    Every identity check (leakage filter, split disjointness of a card, ``mema-data verify``) embeds
    through here, so they find faces and measure alike. Rows keep the recogniser's own dtype.
    """
    from mema.faces.landmarks import LandmarkDetector

    rows: dict[str, list] = {name: [] for name in recognisers}
    found = []
    with LandmarkDetector() as det:
        for img in images:
            lm = det.detect(img)
            found.append(lm is not None)
            for name, rec in recognisers.items():
                rows[name].append(np.asarray(rec.embed(img, lm)) if lm is not None else None)
    emb = {}
    for name, rec in recognisers.items():
        first = next((r for r in rows[name] if r is not None), None)
        dim = len(first) if first is not None else (rec.info.dim or 1)  # adapters may not declare a dim
        dtype = first.dtype if first is not None else np.float64
        emb[name] = (np.stack([r if r is not None else np.full(dim, np.nan, dtype) for r in rows[name]]) if rows[name]
                     else np.zeros((0, dim), dtype))
    return emb, found


def get_recogniser(name: str):
    if name not in RECOGNISERS:
        from mema.faces.adapters import optional_recogniser

        return optional_recogniser(name)
    return RECOGNISERS[name]()
