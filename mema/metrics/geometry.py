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


# --- Digital Mask's reconstruction fidelity (Yang et al., Nat Med 2022, Methods eqs. 25-29) -------------
# The full eyelid contour of each eye (MediaPipe FACE_LANDMARKS_LEFT_EYE / RIGHT_EYE, 16 points each) and
# the ten iris points (centre + 4 ring points per eye).
EYELID_POINTS = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,  # image-left eye
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,  # image-right eye
)
IRIS_POINTS = tuple(range(468, 478))


def _points(lm) -> np.ndarray:
    """(478, 2) pixel points of a FaceLandmarks or an (N, 2|3) array."""
    pts = lm.points if isinstance(lm, FaceLandmarks) else np.asarray(lm, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 478 or pts.shape[1] < 2:
        raise ValueError(f"expected 478 landmark points, got an array of shape {pts.shape}")
    return np.asarray(pts[:, :2], dtype=np.float64)


def _normalised_point_error(orig_lm, out_lm, idx, reduce: str) -> float:
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' (ARE) or 'max' (MRE), not {reduce!r}")
    o, r = _points(orig_lm), _points(out_lm)
    iod = FaceLandmarks(points=o).inter_ocular()
    if not np.isfinite(iod) or iod <= 0:
        raise ValueError("the original's eye centres coincide: no inter-ocular distance to normalise by")
    d = np.linalg.norm(o[list(idx)] - r[list(idx)], axis=1) / iod
    return float(d.mean() if reduce == "mean" else d.max())


def eyelid_error(orig_lm, out_lm, reduce: str = "mean") -> float:
    """Eyelid landmark error of a reconstruction, as a fraction of the original's inter-ocular distance.

    Digital Mask's D_norm (eq. 27) over the 32 eyelid-contour points: ``reduce="mean"`` is its ARE
    (eq. 29), ``"max"`` its MRE (eq. 28). The paper reports 1.2-1.6% ARE. Inter-ocular distance is the
    distance between the eye-corner mid-points of ``orig_lm`` (as :func:`landmark_error`).
    """
    return _normalised_point_error(orig_lm, out_lm, EYELID_POINTS, reduce)


def eyeball_error(orig_lm, out_lm, reduce: str = "mean") -> float:
    """Eyeball (iris) landmark error, as :func:`eyelid_error` over the 10 iris points (paper: 0.8-1.0% ARE)."""
    return _normalised_point_error(orig_lm, out_lm, IRIS_POINTS, reduce)


# --- Digital FaceDefender's diagnostic benchmark (Tan et al., JMIR 2025, Fig. 3) -------------------------
# Per eye: iris centre, inner and outer canthus, upper and lower lid mid-points. "Image-left" is the
# subject's right eye (OD).
DIAGNOSTIC_POINTS = {
    "left": {"iris": 468, "inner": 133, "outer": 33, "upper": 159, "lower": 145},
    "right": {"iris": 473, "inner": 362, "outer": 263, "upper": 386, "lower": 374},
}


def iris_reference_distances(lm) -> dict[str, float]:
    """Pixel distances from each iris centre to its canthus and eyelid reference points.

    Distances are measured along the line through the two iris centres (x) and across it (y), which is
    the paper's x/y after its roll alignment (it rotates every photo so the irises are level). Keys, for
    ``side`` in ``left``/``right`` (image sides): ``{side}_inner`` / ``{side}_outer`` (iris centre to
    inner / outer canthus, along), ``{side}_upper`` / ``{side}_lower`` (iris centre to upper / lower lid
    mid-point, across), ``{side}_fissure`` (lid to lid, across; the ptosis/TAO measure).
    """
    p = _points(lm)
    u = p[DIAGNOSTIC_POINTS["right"]["iris"]] - p[DIAGNOSTIC_POINTS["left"]["iris"]]
    norm = float(np.linalg.norm(u))
    if not np.isfinite(norm) or norm <= 0:
        raise ValueError("the iris centres coincide: no eye line to measure along")
    u /= norm
    v = np.array([-u[1], u[0]])  # points down the face for an upright face
    out = {}
    for side, ref in DIAGNOSTIC_POINTS.items():
        o = p[ref["iris"]]
        out[f"{side}_inner"] = float(abs((p[ref["inner"]] - o) @ u))
        out[f"{side}_outer"] = float(abs((p[ref["outer"]] - o) @ u))
        out[f"{side}_upper"] = float(abs((p[ref["upper"]] - o) @ v))
        out[f"{side}_lower"] = float(abs((p[ref["lower"]] - o) @ v))
        out[f"{side}_fissure"] = float(abs((p[ref["lower"]] - p[ref["upper"]]) @ v))
    return out


def strabismus_asymmetry(lm, normalise: bool = False) -> float:
    """|A - B|: the difference between the two eyes' iris-to-inner-canthus distances (the paper's esotropia/
    exotropia measure), in pixels, or as a fraction of the inter-ocular distance when ``normalise``."""
    d = iris_reference_distances(lm)
    a = abs(d["left_inner"] - d["right_inner"])
    return a / FaceLandmarks(points=_points(lm)).inter_ocular() if normalise else a


def diagnostic_distance_error(orig_lm, out_lm) -> dict[str, float]:
    """How far a de-identified face moves FaceDefender's diagnostic distances, normalised by the original's
    inter-ocular distance: per key of :func:`iris_reference_distances`, and ``strabismus_asymmetry``."""
    o, r = iris_reference_distances(orig_lm), iris_reference_distances(out_lm)
    iod = FaceLandmarks(points=_points(orig_lm)).inter_ocular()
    err = {k: abs(r[k] - o[k]) / iod for k in o}
    err["strabismus_asymmetry"] = abs(strabismus_asymmetry(out_lm) - strabismus_asymmetry(orig_lm)) / iod
    return err
