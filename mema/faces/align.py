"""Face alignment: the one place that maps a face to a recogniser's canonical crop.

Five points (eye centres, nose tip, mouth corners) from the landmark detector are fitted with a
similarity transform to the ArcFace 112x112 template, which SFace and ArcFace share.
"""

from __future__ import annotations

import cv2
import numpy as np

from mema.faces.landmarks import EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, MOUTH_CORNERS, NOSE_TIP, FaceLandmarks

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def five_points(lm: FaceLandmarks) -> np.ndarray:
    """(5, 2): image-left eye, image-right eye, nose tip, image-left and image-right mouth corner."""
    p = lm.points
    return np.stack(
        [p[EYE_IMAGE_LEFT["iris"]], p[EYE_IMAGE_RIGHT["iris"]], p[NOSE_TIP], p[MOUTH_CORNERS[0]], p[MOUTH_CORNERS[1]]]
    ).astype(np.float32)


def align_crop(rgb: np.ndarray, points5: np.ndarray, size: int = 112) -> np.ndarray:
    """Similarity-warp ``rgb`` so ``points5`` land on the ArcFace template scaled to ``size``."""
    dst = ARCFACE_112 * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(points5.astype(np.float32), dst, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("could not fit an alignment transform to the five face points")
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
