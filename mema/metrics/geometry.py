"""Landmark and gaze errors between the original and the de-identified face (MediaPipe points)."""

from __future__ import annotations

import numpy as np

from mema.faces.landmarks import EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, FaceLandmarks

REGIONS = {
    "eye": list(EYE_IMAGE_LEFT["corners"] + EYE_IMAGE_LEFT["upper"] + EYE_IMAGE_LEFT["lower"] + EYE_IMAGE_RIGHT["corners"] + EYE_IMAGE_RIGHT["upper"] + EYE_IMAGE_RIGHT["lower"]),
    "mouth": [61, 291, 0, 17, 13, 14, 78, 308, 37, 267, 84, 314],
    "nose": [1, 2, 4, 5, 6, 98, 327, 168, 195, 197],
}


def landmark_error(orig: FaceLandmarks, out: FaceLandmarks) -> dict[str, float]:
    """Mean point distance per region, divided by the original's inter-ocular distance (eye centres)."""
    iod = orig.inter_ocular()
    return {
        region: float(np.mean(np.linalg.norm(orig.points[idx] - out.points[idx], axis=1)) / iod)
        for region, idx in REGIONS.items()
    }


def gaze_angles(lm: FaceLandmarks) -> tuple[float, float]:
    """(yaw, pitch) in degrees from iris centre offsets, with an eyeball radius of half the eye width.

    Geometric: angle = asin(offset / radius) of the iris centre from the mid-point of the eye
    corners, averaged over both eyes. Needs no gaze network.
    """
    yaws, pitches = [], []
    for side in ("left", "right"):
        a, b = lm.eye_corners(side)
        width = np.linalg.norm(b - a)
        u = (b - a) / max(width, 1e-6)
        v = np.array([-u[1], u[0]])
        off = lm.iris_center(side) - (a + b) / 2
        r = width / 2
        yaws.append(np.degrees(np.arcsin(np.clip(off @ u / r, -1, 1))))
        pitches.append(np.degrees(np.arcsin(np.clip(off @ v / r, -1, 1))))
    return float(np.mean(yaws)), float(np.mean(pitches))


def gaze_error(orig: FaceLandmarks, out: FaceLandmarks) -> tuple[float, float]:
    """Absolute (yaw, pitch) difference in degrees."""
    (y0, p0), (y1, p1) = gaze_angles(orig), gaze_angles(out)
    return abs(y1 - y0), abs(p1 - p0)
