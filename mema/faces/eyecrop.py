"""The periocular crop: both eyes, lids and the skin around them, in a fixed frame.

Signs cover about 1% of a face, and a CNN over the whole face stayed at chance in trials here; the
same CNN on a landmark-aligned crop of both eyes learns them. The crop places the two eye centres at
fixed points, so it is a similarity warp (no shear) of the input.
"""

from __future__ import annotations

import cv2
import numpy as np

from mema.faces.landmarks import FaceLandmarks

# The fixed eye window of MeMa's aligned 128 px faces (top, bottom, left, right): every lesion pixel of
# MeMa-mini's training masks lies in rows 33-83 and columns 30-98, inside it. Multiples of 8, so it
# falls on the H/8 grid of region-based models.
EYE_WINDOW_128 = (24, 88, 16, 112)

CROP_W, CROP_H = 96, 48
# Eye centres land at 1/4 and 3/4 of the width, a little above the middle: lids and lesions below
# the eye (lower-lid BCC/SCC) need more room than the brow.
LEFT_EYE_DST = (CROP_W * 0.25, CROP_H * 0.42)
RIGHT_EYE_DST = (CROP_W * 0.75, CROP_H * 0.42)


def eye_crop_matrix(lm: FaceLandmarks) -> np.ndarray:
    """2x3 similarity matrix mapping image pixels to the crop."""
    src = np.stack([lm.eye_center("left"), lm.eye_center("right")]).astype(np.float64)
    return two_point_similarity(src, np.array([LEFT_EYE_DST, RIGHT_EYE_DST], dtype=np.float64))


def apply_eye_crop(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(rgb, matrix, (CROP_W, CROP_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def eye_opening_mask(lm: FaceLandmarks, shape: tuple[int, int], along: float = 0.75, across: float = 0.45,
                     feather: float = 1.5) -> np.ndarray:
    """Soft (H, W) float32 mask of both eye openings with their lid margins, in [0, 1].

    One ellipse per eye, centred between its landmark corners and turned with the corner axis; its
    semi-axes are ``along`` and ``across`` eye widths (corner to corner), so the mask follows each face's
    own scale and roll. ``feather`` is the Gaussian sigma in pixels that softens the rim.
    """
    mask = np.zeros(shape, np.float32)
    for side in ("left", "right"):
        a, b = lm.eye_corners(side)
        width = float(np.linalg.norm(b - a))
        centre = (a + b) / 2
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        # Sub-pixel drawing (shift=2: coordinates in quarter pixels) keeps small eyes symmetric.
        cv2.ellipse(mask, (int(round(centre[0] * 4)), int(round(centre[1] * 4))),
                    (int(round(along * width * 4)), int(round(across * width * 4))), angle, 0, 360, 1.0, -1, shift=2)
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), feather)
    return mask


# The periocular window a periocular recogniser sees: both eyes, lids and brows, and the skin just below,
# in a similarity frame fixed by the two eye centres (48 px apart, at mid-height).
PERIOCULAR_W, PERIOCULAR_H = 96, 64
PERIOCULAR_LEFT_DST = (PERIOCULAR_W * 0.25, PERIOCULAR_H * 0.5)
PERIOCULAR_RIGHT_DST = (PERIOCULAR_W * 0.75, PERIOCULAR_H * 0.5)


def two_point_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity matrix taking the two ``src`` points onto the two ``dst`` points (closed form)."""
    s0, s1 = complex(*src[0]), complex(*src[1])
    d0, d1 = complex(*dst[0]), complex(*dst[1])
    if abs(s1 - s0) < 1e-6:
        raise ValueError("eye centres coincide")
    a = (d1 - d0) / (s1 - s0)
    b = d0 - a * s0
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)


def periocular_matrix(lm: FaceLandmarks) -> np.ndarray:
    src = np.stack([lm.eye_center("left"), lm.eye_center("right")]).astype(np.float64)
    return two_point_similarity(src, np.array([PERIOCULAR_LEFT_DST, PERIOCULAR_RIGHT_DST], dtype=np.float64))


def periocular_crop(rgb: np.ndarray, lm: FaceLandmarks) -> np.ndarray:
    """(64, 96, 3) periocular window of ``rgb`` placed by ``lm`` (the landmarks of the original face)."""
    return cv2.warpAffine(rgb, periocular_matrix(lm), (PERIOCULAR_W, PERIOCULAR_H), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
