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


# Where MeMa-mini's faces put the five points at 128 px (mean over the procedural corpus, made symmetric):
# real photos are aligned to this frame so that every crop, eye window and evaluator sees them alike.
MEMA_128 = np.array([[45.5, 60.5], [82.5, 60.5], [64.0, 86.0], [48.5, 104.0], [79.5, 104.0]], dtype=np.float32)


def align_to_mema(rgb: np.ndarray, points5: np.ndarray, size: int = 128) -> np.ndarray:
    """A ``size`` px face crop of ``rgb`` in MeMa-mini's frame (similarity fit of the five points).

    Large photos are first shrunk with area averaging to about twice the target scale, so the final
    warp does not alias.
    """
    dst = MEMA_128 * (size / 128.0)
    matrix, _ = cv2.estimateAffinePartial2D(points5.astype(np.float32), dst, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("could not fit an alignment transform to the five face points")
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 0.5:
        pre = 2.0 * scale
        small = cv2.resize(rgb, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
        matrix = matrix.copy()
        matrix[:, :2] /= pre
        rgb = small
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
