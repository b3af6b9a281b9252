"""Every face in a photo: YuNet (OpenCV Zoo, int8), independent of the methods' own landmark models.

YuNet finds faces from about 40 to 300 px at its input scale, so a photo is searched at a pyramid of
scales (long side 640, 1280, 2560 px; a small photo is enlarged up to 2x, never more); the smallest pass
is padded with grey so that a face filling the frame (an aligned crop) is found too. Detections of the
passes are merged by non-maximum suppression. Faces smaller than about 1/64 of the long side (94 px in a
6000 px photo; 20 px in a small one) can be missed; ``mema anonymize`` reports how many faces it found
in each photo.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from mema.weights import weight_path

SCORE_THRESHOLD = 0.6
NMS_IOU = 0.3
PASS_SIDES = (640, 1280, 2560)
PAD_FRACTION = 0.25
MAX_UPSCALE = 2.0


@dataclass(frozen=True)
class Face:
    """One detection in photo pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, width, height
    points: np.ndarray  # (5, 2): eye (image left), eye (image right), nose tip, mouth corners (image left, right)
    score: float


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (x, y, w, h) with each row of ``b``."""
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2]), np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter + 1e-9)


class FaceDetector:
    """YuNet over a pyramid of scales. Thread-safe (one OpenCV net per thread)."""

    def __init__(self, score_threshold: float = SCORE_THRESHOLD):
        self.model = str(weight_path("yunet_int8"))  # verifies the manifest's sha256
        self.score_threshold = score_threshold
        self._local = threading.local()

    def _net(self):
        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = cv2.FaceDetectorYN.create(self.model, "", (320, 320), self.score_threshold, NMS_IOU, 5000)
        return net

    def _pass(self, rgb: np.ndarray, scale: float, pad: float) -> np.ndarray:
        """Rows (x, y, w, h, 10 landmark coordinates, score) in the coordinates of ``rgb``, searched at ``scale``."""
        h, w = rgb.shape[:2]
        p = int(round(pad * max(h, w)))
        img = cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_CONSTANT, value=(128, 128, 128)) if p else rgb
        if scale != 1.0:
            img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC)
        net = self._net()
        net.setInputSize((img.shape[1], img.shape[0]))
        _, rows = net.detect(np.ascontiguousarray(img[..., ::-1]))
        if rows is None or not len(rows):
            return np.zeros((0, 15), np.float32)
        rows = rows.astype(np.float64).copy()
        sx, sy = img.shape[1] / (w + 2 * p), img.shape[0] / (h + 2 * p)
        xs, ys = [0, 4, 6, 8, 10, 12], [1, 5, 7, 9, 11, 13]  # x, y of the box corner and the five points
        rows[:, xs] = rows[:, xs] / sx - p
        rows[:, ys] = rows[:, ys] / sy - p
        rows[:, 2] /= sx
        rows[:, 3] /= sy
        return rows

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face found in an (H, W, 3) uint8 RGB photo, largest first."""
        long_side = max(rgb.shape[:2])
        scales = sorted({min(MAX_UPSCALE, side / long_side) for side in PASS_SIDES})
        # the smallest pass on the padded photo (its long side is 1 + 2 * PAD_FRACTION times longer)
        rows = [self._pass(rgb, scales[0] / (1 + 2 * PAD_FRACTION), PAD_FRACTION)] + [self._pass(rgb, s, 0.0) for s in scales[1:]]
        allrows = np.concatenate(rows) if rows else np.zeros((0, 15))
        allrows = allrows[np.argsort(-allrows[:, 14], kind="stable")]
        kept: list[np.ndarray] = []
        for row in allrows:
            if not kept or _iou(row[:4], np.array([k[:4] for k in kept])).max() < NMS_IOU:
                kept.append(row)
        kept.sort(key=lambda r: (-r[2] * r[3], r[1], r[0]))
        return [Face(box=tuple(float(v) for v in r[:4]), points=r[4:14].reshape(5, 2).astype(np.float64), score=float(r[14])) for r in kept]
