"""Rendering a Digital Mask reconstruction: a neutral, shaded face mesh with eyelids and eyeballs.

A small z-buffer rasteriser (numpy): Gouraud-shaded Lambert lighting on one plaster-like albedo, so the
shape of face, lids and eyes is visible and no skin texture, colour or hair of the patient survives.
Eye openings and the mouth are holes in MediaPipe's mesh; they are capped (eyes: skin, which the eyeball
then covers inside the fitted lid curves; mouth: a dark interior). Rendering is supersampled and
downscaled (area) for anti-aliasing.
"""

from __future__ import annotations

import cv2
import numpy as np

from mema.baselines.digital_mask_model import (
    EYES,
    INNER_LIPS,
    PUPIL_PER_IRIS,
    EyeballFit,
    Reconstruction,
    face_triangles,
    opening_polygon,
)

SKIN = np.array([214.0, 208.0, 200.0])  # one neutral albedo for every face
MOUTH = np.array([70.0, 60.0, 58.0])
SCLERA = np.array([232.0, 230.0, 226.0])
IRIS = np.array([92.0, 78.0, 66.0])
LIMBUS = np.array([48.0, 40.0, 36.0])
PUPIL = np.array([16.0, 14.0, 14.0])
UPPER_LID_LINE = np.array([52.0, 46.0, 44.0])
LOWER_LID_LINE = np.array([150.0, 138.0, 130.0])
# unit vector from the surface towards the light: above-left of the viewer (the viewer looks along +z)
LIGHT = np.array([-0.25, -0.45, -1.0]) / np.linalg.norm([-0.25, -0.45, -1.0])
AMBIENT, DIFFUSE = 0.30, 0.75


def _vertex_normals(v: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, each triangle turned to face the viewer (two-sided lighting)."""
    n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    n[n[:, 2] > 0] *= -1
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, tris[:, k], n)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def rasterise(xy: np.ndarray, z: np.ndarray, attr: np.ndarray, tris: np.ndarray, shape: tuple[int, int]):
    """Z-buffered triangle rasteriser at pixel centres; the nearest (smallest z) surface wins, the earlier
    triangle on ties. Vectorised: every triangle's bounding-box pixels are tested at once.

    Returns (zbuf (H, W) with +inf where empty, attributes (H, W, K) interpolated barycentrically,
    triangle index (H, W), -1 where empty).
    """
    h, w = shape
    zbuf = np.full((h, w), np.inf)
    out = np.zeros((h, w, attr.shape[1]))
    tid = np.full((h, w), -1, np.int32)
    p = xy[tris]  # (T, 3, 2)
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    c0 = np.clip(np.floor(p[:, :, 0].min(1)), 0, None).astype(np.int64)
    c1 = np.clip(np.ceil(p[:, :, 0].max(1)), None, w - 1).astype(np.int64)
    r0 = np.clip(np.floor(p[:, :, 1].min(1)), 0, None).astype(np.int64)
    r1 = np.clip(np.ceil(p[:, :, 1].max(1)), None, h - 1).astype(np.int64)
    bw, bh = np.maximum(c1 - c0 + 1, 0), np.maximum(r1 - r0 + 1, 0)
    counts = np.where(np.abs(area) > 1e-9, bw * bh, 0)
    if counts.sum() == 0:
        return zbuf, out, tid
    t = np.repeat(np.arange(len(tris)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = c0[t] + local % bw[t]
    py = r0[t] + local // bw[t]
    cx, cy = px + 0.5, py + 0.5
    (x0, y0), (x1, y1), (x2, y2) = p[t, 0].T, p[t, 1].T, p[t, 2].T
    b0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) / area[t]
    b1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) / area[t]
    b2 = 1.0 - b0 - b1
    inside = (b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9)
    t, px, py, b0, b1, b2 = t[inside], px[inside], py[inside], b0[inside], b1[inside], b2[inside]
    zt = z[tris[t]]
    depth = b0 * zt[:, 0] + b1 * zt[:, 1] + b2 * zt[:, 2]
    key = py * w + px
    order = np.lexsort((depth, key))  # stable: equal depths keep triangle order
    _, first = np.unique(key[order], return_index=True)
    win = order[first]
    yy, xx = py[win], px[win]
    zbuf[yy, xx] = depth[win]
    at = attr[tris[t[win]]]  # (P, 3, K)
    out[yy, xx] = b0[win, None] * at[:, 0] + b1[win, None] * at[:, 1] + b2[win, None] * at[:, 2]
    tid[yy, xx] = t[win]
    return zbuf, out, tid


def _caps(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fan triangles closing the two eye holes and the mouth hole, with one added centre vertex each.

    Returns (extra vertices (3, 3), triangles (M, 3) into [v; extra], is-mouth flag per triangle).
    """
    loops = []
    for side in ("left", "right"):
        e = EYES[side]
        loops.append(list(e["upper"]) + list(e["lower"][1:-1][::-1]))
    loops.append(list(INNER_LIPS))
    extra, tris, mouth = [], [], []
    for n, loop in enumerate(loops):
        c = len(v) + n
        extra.append(v[loop].mean(0))
        for a, b in zip(loop, loop[1:] + loop[:1]):
            tris.append((a, b, c))
            mouth.append(n == 2)
    return np.array(extra), np.array(tris, np.int32), np.array(mouth)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _shade(normals: np.ndarray) -> np.ndarray:
    return AMBIENT + DIFFUSE * np.clip(normals @ LIGHT, 0.0, None)


def _eye_plane_depth(v: np.ndarray, side: str, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Depth of the plane through the eye contour at (px, py), for the occlusion test of the eyeball."""
    e = EYES[side]
    p = v[list(dict.fromkeys(e["upper"] + e["lower"]))]
    a = np.c_[p[:, 0], p[:, 1], np.ones(len(p))]
    coef = np.linalg.lstsq(a, p[:, 2], rcond=None)[0]
    return coef[0] * px + coef[1] * py + coef[2]


def _draw_eyeball(img, zbuf, v, side, ball: EyeballFit, poly: np.ndarray, upper: np.ndarray, s: float, tol: float):
    """Ray-cast the SGAEM sphere inside the lid opening where nothing nearer than the eye plane covers it."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * s * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return
    px, py = (xs + 0.5) / s, (ys + 0.5) / s  # input pixel units
    # only on the face (not past its silhouette), and not behind anything nearer than the eye plane (the nose, in profile)
    visible = np.isfinite(zbuf[ys, xs]) & (zbuf[ys, xs] >= _eye_plane_depth(v, side, px, py) - tol)
    ys, xs, px, py = ys[visible], xs[visible], px[visible], py[visible]
    c, re = ball.centre, ball.radius
    dx, dy = px - c[0], py - c[1]
    dist = np.sqrt(dx * dx + dy * dy)
    # beyond the sphere's silhouette (towards the canthi) the rim colour continues
    r = np.minimum(dist, re * 0.999)
    ux, uy = dx / np.maximum(dist, 1e-12) * r, dy / np.maximum(dist, 1e-12) * r
    d2 = r * r
    nz = -np.sqrt(np.maximum(re * re - d2, 0.0))  # the near half of the sphere faces the viewer (-z)
    n = np.stack([ux, uy, nz], axis=1) / re
    cosg = n @ ball.gaze
    ca, cp = np.cos(ball.iris_angle), np.cos(np.arcsin(np.sin(ball.iris_angle) * PUPIL_PER_IRIS))
    cl = np.cos(ball.iris_angle * 0.82)
    col = np.where((cosg >= cp)[:, None], PUPIL, np.where((cosg >= cl)[:, None], IRIS, np.where((cosg >= ca)[:, None], LIMBUS, SCLERA)))
    light = 0.55 + 0.45 * np.clip(n @ LIGHT, 0.0, None)
    # the upper lid shades the top of the eyeball
    upper_y = np.interp(px, upper[:, 0], upper[:, 1]) if upper[0, 0] < upper[-1, 0] else np.interp(px, upper[::-1, 0], upper[::-1, 1])
    gap = max(float(np.ptp(poly[:, 1])), 1e-6)
    light *= 0.7 + 0.3 * _smoothstep((py - upper_y) / (0.35 * gap))
    rgb = col * light[:, None]
    # a corneal highlight (mirror direction of the light towards the viewer)
    half = (LIGHT + np.array([0.0, 0.0, -1.0]))
    half /= np.linalg.norm(half)
    rgb += 160.0 * np.clip(n @ half, 0.0, None)[:, None] ** 120 * (cosg >= ca)[:, None]
    img[ys, xs] = np.clip(rgb, 0, 255)


def render(recon: Reconstruction, shape: tuple[int, int], background=(0, 0, 0), supersample: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 rendering of a reconstruction in its input's pixel frame."""
    h, w = shape
    s = float(supersample)
    v = recon.vertices.copy()
    extra, cap_tris, cap_mouth = _caps(v)
    verts = np.concatenate([v, extra])  # the mesh uses vertices < 468; the caps' centres come last
    mesh_tris = face_triangles()
    tris = np.concatenate([mesh_tris, cap_tris])
    normals = _vertex_normals(verts, tris)
    shade = _shade(normals)
    big = (int(round(h * s)), int(round(w * s)))
    # attributes: shading, and a mouth flag (1 on the mouth cap's own vertex, 0 elsewhere)
    mouth_flag = np.zeros(len(verts))
    mouth_flag[len(v) + 2] = 1.0
    attr = np.stack([shade, mouth_flag], axis=1)
    # the mouth cap is drawn flat (every vertex dark) so its fan centre's normal cannot light it
    zbuf, vals, tid = rasterise(verts[:, :2] * s, verts[:, 2] * s, attr, tris, big)
    img = np.empty(big + (3,))
    img[:] = np.asarray(background, dtype=float)
    hit = tid >= 0
    is_mouth = np.zeros(len(tris), bool)
    is_mouth[len(mesh_tris):] = cap_mouth
    mouth = hit & is_mouth[np.maximum(tid, 0)]
    face = hit & ~mouth
    img[face] = SKIN * np.clip(vals[face, 0:1], 0, 1.2)
    img[mouth] = MOUTH
    tol = 0.25 * max(f.width for f in recon.eyelids.values())
    for side, lid in recon.eyelids.items():
        ball = recon.eyeballs.get(side)
        if ball is not None:
            _draw_eyeball(img, zbuf / s, v, side, ball, opening_polygon(lid), lid.upper, s, tol)
    for side, lid in recon.eyelids.items():
        thick = max(1, int(round(0.07 * lid.width * s)))
        if recon.closed.get(side):
            line = (lid.upper + lid.lower) / 2
            cv2.polylines(img, [np.round(line * s * 4).astype(np.int32)], False, UPPER_LID_LINE.tolist(), thick, cv2.LINE_AA, shift=2)
            continue
        if recon.eyeballs.get(side) is None:
            continue
        cv2.polylines(img, [np.round(lid.upper * s * 4).astype(np.int32)], False, UPPER_LID_LINE.tolist(), thick, cv2.LINE_AA, shift=2)
        cv2.polylines(img, [np.round(lid.lower * s * 4).astype(np.int32)], False, LOWER_LID_LINE.tolist(), max(1, thick // 2), cv2.LINE_AA, shift=2)
    img = np.clip(img, 0, 255).astype(np.float32)
    if s != 1:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def neutral(shape: tuple[int, int], background=(0, 0, 0)) -> np.ndarray:
    """The fallback when there is no face to reconstruct: the background alone, nothing of the input."""
    out = np.empty(tuple(shape) + (3,), np.uint8)
    out[:] = np.asarray(background, dtype=np.uint8)
    return out
