"""Ophthalmic signs drawn onto real eyes, without redrawing the eye (the real-face track).

The patient's own eye stays: colour signs tint what is there, lid signs move what is there, lesions are
painted on the lid skin with a mask. Every sign works in the eye's landmark frame (the corner axis, in eye
widths; :class:`mema.generation.signs.EyeFrame`), from the MediaPipe eyelid contours and iris points.

- Conj: the sclera (eye opening minus the iris) reddened, with vessels running in from the canthi.
- Uveitis: a ciliary flush (a red ring around the limbus) and a hazy iris.
- Ptosis: the upper lid stretched down over the iris by a backward warp of the lid (the opening below the
  new margin is left as it was, so the iris is covered, not squashed).
- TAO: the upper lid pulled up and the exposed band above the iris filled with the eye's own sclera colour
  (superior scleral show), with a swollen lid above.
- Strab: the iris moved along the eye axis by a warp confined to the eye opening; the lids do not move.
- BCC, SCC: the procedural lesions of MeMa-mini painted on the lid skin, with their masks.

What cannot be drawn credibly is left out: pupil size and lens changes, proptosis seen from the side,
and colour signs on eyes the photo shows closed (see docs/real-faces.md).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from mema.faces.landmarks import FaceLandmarks
from mema.generation.signs import SEVERITY_INDEX, EyeFrame, EyeShape, Lesion, _Canvas, draw_lesion, eye_frame

UPPER = {"left": (33, 246, 161, 160, 159, 158, 157, 173, 133), "right": (263, 466, 388, 387, 386, 385, 384, 398, 362)}
LOWER = {"left": (33, 7, 163, 144, 145, 153, 154, 155, 133), "right": (263, 249, 390, 373, 374, 380, 381, 382, 362)}
IRIS = {"left": (468, (469, 470, 471, 472)), "right": (473, (474, 475, 476, 477))}
EYE_SCALE = 1.0  # real eye frames use the true corner distance


def _frame(lm: FaceLandmarks, side: str) -> EyeFrame:
    return eye_frame(lm, side, EYE_SCALE)


def _to_frame(frame: EyeFrame, pts: np.ndarray) -> np.ndarray:
    d = pts - frame.center
    return np.stack([d @ frame.u, d @ frame.v], -1) / frame.width


def _from_frame(frame: EyeFrame, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = frame.center[0] + (s * frame.u[0] + t * frame.v[0]) * frame.width
    y = frame.center[1] + (s * frame.u[1] + t * frame.v[1]) * frame.width
    return x, y


def _contour(lm: FaceLandmarks, frame: EyeFrame, idx) -> tuple[np.ndarray, np.ndarray]:
    st = _to_frame(frame, lm.points[list(idx)].astype(np.float64))
    order = np.argsort(st[:, 0])
    return st[order, 0], st[order, 1]


def lid_heights(lm: FaceLandmarks, frame: EyeFrame, side: str, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid margin (t, eye widths) at positions ``s`` along the eye."""
    us, ut = _contour(lm, frame, UPPER[side])
    ls, lt = _contour(lm, frame, LOWER[side])
    return np.interp(s, us, ut), np.interp(s, ls, lt)


def iris_geometry(lm: FaceLandmarks, frame: EyeFrame, side: str) -> tuple[float, float, float]:
    """Iris centre (s, t) and radius, in eye widths."""
    c, ring = IRIS[side]
    cs, ct = _to_frame(frame, lm.points[[c]].astype(np.float64))[0]
    r = float(np.mean(np.linalg.norm(lm.points[list(ring)] - lm.points[c], axis=1))) / frame.width
    return float(cs), float(ct), r


def _region_grid(img: np.ndarray, frame: EyeFrame, half: float):
    h, w = img.shape[:2]
    x0 = int(max(0, np.floor(frame.center[0] - half * frame.width)))
    x1 = int(min(w, np.ceil(frame.center[0] + half * frame.width)))
    y0 = int(max(0, np.floor(frame.center[1] - half * frame.width)))
    y1 = int(min(h, np.ceil(frame.center[1] + half * frame.width)))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = xs - frame.center[0], ys - frame.center[1]
    s = (dx * frame.u[0] + dy * frame.u[1]) / frame.width
    t = (dx * frame.v[0] + dy * frame.v[1]) / frame.width
    return (slice(y0, y1), slice(x0, x1)), s, t


def opening_mask(img: np.ndarray, lm: FaceLandmarks, side: str, frame: EyeFrame, half: float = 1.3):
    """(region, s, t, soft opening mask in [0, 1]) around one eye."""
    region, s, t = _region_grid(img, frame, half)
    up, lo = lid_heights(lm, frame, side, s)
    inside = (t - up) * (lo - t)
    px = 1.0 / frame.width  # one pixel in eye widths
    soft = np.clip(0.5 + np.minimum(t - up, lo - t) / px, 0, 1) * (inside > -px * px)
    soft *= (np.abs(s) < 0.5)
    return region, s, t, soft.astype(np.float32)


def _blend(img: np.ndarray, region, target: np.ndarray, alpha: np.ndarray) -> None:
    patch = img[region].astype(np.float32)
    img[region] = np.clip(np.round(patch + (target - patch) * alpha[..., None]), 0, 255).astype(np.uint8)


def _remap(img: np.ndarray, region, map_x: np.ndarray, map_y: np.ndarray) -> None:
    img[region] = cv2.remap(img, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)


def draw_conj(img, lm, side, k, rng) -> None:
    frame = _frame(lm, side)
    region, s, t, open_ = opening_mask(img, lm, side, frame)
    cs, ct, r = iris_geometry(lm, frame, side)
    sclera = open_ * np.clip((np.hypot(s - cs, t - ct) - r * 1.02) / 0.03, 0, 1)
    strength = (0.40, 0.58, 0.76)[k]
    patch = img[region].astype(np.float32)
    red = patch * np.array([1.0, 0.55, 0.55], np.float32) + np.array([40, 0, 0], np.float32)
    _blend(img, region, red, sclera * strength)
    for _ in range((4, 7, 10)[k]):
        x0 = rng.choice([-1, 1]) * rng.uniform(0.3, 0.48)
        y0 = rng.uniform(-0.06, 0.06)
        slope = rng.uniform(-0.5, 0.5)
        line = np.clip(1 - np.abs((t - y0) - slope * (s - x0)) / 0.025, 0, 1) * (np.abs(s - x0) < rng.uniform(0.1, 0.2))
        _blend(img, region, np.broadcast_to(np.array([170, 30, 35], np.float32), patch.shape), line * sclera * 0.8)


def draw_uveitis(img, lm, side, k, rng) -> None:
    frame = _frame(lm, side)
    region, s, t, open_ = opening_mask(img, lm, side, frame)
    cs, ct, r = iris_geometry(lm, frame, side)
    d = np.hypot(s - cs, t - ct)
    ring = np.clip(1 - np.abs(d - r - 0.05) / 0.07, 0, 1) * open_ * (d > r)
    patch = img[region].astype(np.float32)
    _blend(img, region, patch * np.array([1.0, 0.35, 0.38], np.float32) + np.array([60, 0, 0], np.float32), ring * (0.55, 0.75, 0.95)[k])
    iris = np.clip((r - d) / 0.02, 0, 1) * open_
    grey = np.broadcast_to(np.array([165, 160, 150], np.float32), patch.shape)
    _blend(img, region, grey, iris * (0.2, 0.3, 0.4)[k])


def _lid_warp(img, lm, side, delta: float) -> tuple:
    """Move the upper lid margin by ``delta`` eye widths (down > 0), tapering to the canthi.

    Backward map: between the lid's upper reference line (0.55 eye widths above the margin) and the new
    margin, each output row samples the lid linearly stretched (or compressed) from the old interval; below
    the new margin the opening is left as it is. Returns (region, s, t, new_upper, old_upper) for callers that
    paint the uncovered band.
    """
    frame = _frame(lm, side)
    region, s, t = _region_grid(img, frame, 1.3)
    up, lo = lid_heights(lm, frame, side, s)
    taper = np.clip(1 - (2 * np.abs(s)) ** 2, 0, 1) * (np.abs(s) < 0.5)
    new_up = up + delta * taper
    top = up - 0.55
    src_t = t.copy()
    lid = (t >= top) & (t <= new_up)
    span_new = np.maximum(new_up - top, 1e-6)
    src_t[lid] = top[lid] + (t[lid] - top[lid]) * ((up - top)[lid] / span_new[lid])
    x, y = _from_frame(frame, s, src_t)
    _remap(img, region, x, y)
    return frame, region, s, t, new_up, up, lo


def draw_ptosis(img, lm, side, k, rng) -> None:
    frame = _frame(lm, side)
    _, _, r = iris_geometry(lm, frame, side)
    up, lo = lid_heights(lm, frame, side, np.zeros(1))
    opening = float(lo[0] - up[0])
    _lid_warp(img, lm, side, opening * (0.30, 0.45, 0.60)[k])


def draw_tao(img, lm, side, k, rng) -> None:
    frame = _frame(lm, side)
    cs, ct, r = iris_geometry(lm, frame, side)
    region0, s0, t0, open0 = opening_mask(img, lm, side, frame)
    d0 = np.hypot(s0 - cs, t0 - ct)
    sclera_px = img[region0][(open0 > 0.9) & (d0 > r * 1.15)]
    sclera = np.median(sclera_px, axis=0).astype(np.float32) if len(sclera_px) >= 3 else np.array([225, 220, 212], np.float32)
    lift = (0.10, 0.14, 0.18)[k]
    frame, region, s, t, new_up, up, lo = _lid_warp(img, lm, side, -lift)
    band = np.clip((t - new_up) / 0.02, 0, 1) * np.clip((up + 0.01 - t) / 0.02, 0, 1) * (np.abs(s) < 0.48)
    band *= np.clip(np.hypot(s - cs, t - ct) - r, 0, None) > 0  # the iris itself stays
    _blend(img, region, np.broadcast_to(sclera, img[region].shape), band * 0.95)
    swell = np.clip(1 - ((s / 0.62) ** 2 + ((t - new_up + 0.16) / 0.13) ** 2), 0, 1)
    patch = img[region].astype(np.float32)
    _blend(img, region, patch * np.array([1.10, 0.95, 0.95], np.float32), swell * (0.35, 0.5, 0.65)[k])


def draw_strab(img, lm, side, k, rng) -> None:
    frame = _frame(lm, side)
    region, s, t, open_ = opening_mask(img, lm, side, frame)
    cs, ct, r = iris_geometry(lm, frame, side)
    shift = (1.0 if rng.random() < 0.5 else -1.0) * (0.12, 0.17, 0.22)[k]
    shift = float(np.clip(cs + shift, -0.5 + r, 0.5 - r) - cs)  # the iris stays inside the opening
    bump = np.clip(1 - np.abs(s - cs - shift) / (r + abs(shift) + 0.12), 0, 1)
    src_s = s - shift * bump * np.clip(open_ * 1.5, 0, 1)
    x, y = _from_frame(frame, src_s, t)
    _remap(img, region, x, y)


def draw_real_lesion(img, lm, side, disease: str, k: int, rng) -> np.ndarray:
    frame = _frame(lm, side)
    up, lo = lid_heights(lm, frame, side, np.zeros(1))
    eye = EyeShape(h_up=float(-up[0]), h_lo=float(lo[0]))
    anchor = ("lower", "upper", "medial")[rng.integers(3)]
    radius = ((0.17, 0.22, 0.28) if disease == "BCC" else (0.22, 0.29, 0.36))[k]
    lesion = Lesion(disease.lower(), side, anchor, radius, (float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.05, 0.05))),
                    int(rng.integers(2**31)))
    mask = np.zeros(img.shape[:2], np.uint8)
    canvas = _Canvas(img, frame.center, frame.width * 1.4)
    if not canvas.empty:
        draw_lesion(canvas, replace(frame), eye, lesion)
        canvas.commit(img, mask)
    return mask


UNILATERAL = ("Ptosis", "Uveitis", "Strab", "BCC", "SCC")
DRAWERS = {"Conj": draw_conj, "Uveitis": draw_uveitis, "Ptosis": draw_ptosis, "TAO": draw_tao, "Strab": draw_strab}


def draw_real_sign(img: np.ndarray, lm: FaceLandmarks, disease: str, severity: str,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """(image with the sign, lesion mask or None) for a real aligned face and its landmarks."""
    out = img.copy()
    if disease == "Normal":
        return out, None
    k = SEVERITY_INDEX[severity]
    side = "left" if rng.random() < 0.5 else "right"
    sides = [side] if disease in UNILATERAL or rng.random() < 0.4 else ["left", "right"]
    if disease in ("BCC", "SCC"):
        return out, draw_real_lesion(out, lm, side, disease, k, rng)
    for sd in sides:
        DRAWERS[disease](out, lm, sd, k, rng)
    return out, None
