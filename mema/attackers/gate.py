"""The face-presence gate: does the output still look like a face?

A method that destroys the face (noise, a black square, heavy pixelation) hides identity trivially and is
useless for face photos. Every run therefore asks an independent detector, YuNet (OpenCV Zoo, int8;
no built-in method uses it, unlike MediaPipe which ROFI and the harness's landmarks use), whether it finds a
face in each output. Its confidence doubles as the realism proxy (docs/metrics.md): the mean of YuNet's
face score over all outputs, 0 where it finds none. On the real-face crops YuNet finds 205 of 205 faces
(mean score 0.92); black, noise and a sigma-6 blur give none.
"""

from __future__ import annotations

import numpy as np

from mema.weights import weight_path, weight_record

SCORE_THRESHOLD = 0.5  # YuNet's published default


class FacePresenceGate:
    name = "yunet"

    def __init__(self, score_threshold: float = SCORE_THRESHOLD):
        import cv2

        self._cv2 = cv2
        self.score_threshold = score_threshold
        self._det = cv2.FaceDetectorYN.create(str(weight_path("yunet_int8")), "", (128, 128), score_threshold, 0.3, 50)
        self._size = (128, 128)

    @property
    def record(self) -> dict:
        return {**weight_record("yunet_int8"), "detector": "YuNet 2023mar int8", "score_threshold": self.score_threshold}

    def score(self, rgb: np.ndarray) -> float:
        """Best face score in an RGB image, 0.0 when no face passes the threshold."""
        h, w = rgb.shape[:2]
        if (w, h) != self._size:
            self._det.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._det.detect(np.ascontiguousarray(rgb[..., ::-1]))
        return 0.0 if faces is None or len(faces) == 0 else float(faces[:, 14].max())

    def scores(self, images) -> np.ndarray:
        return np.array([self.score(img) for img in images], np.float64)
