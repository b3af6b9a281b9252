"""Digital Mask reconstruction (Yang et al., Nat Med 2022): face, eyelids and eyeballs from landmarks.

The paper fits three parametric models to detected features: a bilinear face model to face landmarks,
a linear eyelid model to cubic curves through the eyelid landmarks, and a sphere eyeball model (SGAEM:
eyeball radius, iris radius, position, rotation) to the iris landmarks. Here (docs/methods/digital-mask.md
lists every deviation):

- face: the 468 MediaPipe mesh vertices with their depth, on MediaPipe's own triangulation (852 triangles),
  instead of a fitted bilinear model;
- eyelids: the paper's cubic ``y = ax^3 + bx^2 + cx + d`` per lid (eq. 6) fitted by least squares to the 9
  landmarks of each lid in the eye's own frame, densely resampled (eq. 8);
- eyeballs: SGAEM's sphere with an anatomical radius prior, the iris radius and position from the
  landmarks, and the rotation (theta, phi) fitted by damped Gauss-Newton (Levenberg-Marquardt) to the
  five iris points of each eye (eqs. 15-16).

Coordinates are input pixels: x right, y down, z depth (smaller is nearer the camera, MediaPipe's sign).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from mema.faces.landmarks import LandmarkDetector

N_POINTS = 478
N_MESH = 468

# Per image side ("left" = the subject's right eye). Each lid runs corner to corner through 9 points.
EYES = {
    "left": {"corners": (33, 133), "upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
             "lower": (33, 7, 163, 144, 145, 153, 154, 155, 133), "iris": 468, "ring": (469, 470, 471, 472)},
    "right": {"corners": (263, 362), "upper": (263, 466, 388, 387, 386, 385, 384, 398, 362),
              "lower": (263, 249, 390, 373, 374, 380, 381, 382, 362), "iris": 473, "ring": (474, 475, 476, 477)},
}
# The mouth opening is a hole in MediaPipe's mesh; it is closed with a dark cap (a neutral mouth interior).
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)

# Anatomical priors (the paper estimates its SGAEM constants "with prior knowledge" on the first frame):
# eyeball radius ~12 mm against a palpebral fissure ~29 mm corner to corner; the eyeball centre sits about
# half a radius behind the corner line; the pupil is ~45% of the iris radius in room light.
EYEBALL_RADIUS_PER_EYE_WIDTH = 0.42
EYEBALL_DEPTH_PER_RADIUS = 0.5
PUPIL_PER_IRIS = 0.45
DENSE_PER_LID = 50  # the paper validates on 200 eyelid points over both eyes: 50 per lid
CORNER_WEIGHT = 10.0  # both lid curves pass (almost) through the corners, so the opening closes


@functools.lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """(852, 3) vertex indices: MediaPipe's face-mesh tessellation, whose edges come as closed triples."""
    from mediapipe.tasks.python import vision

    edges = [(c.start, c.end) for c in vision.FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION]
    tris = np.array([[edges[i][0], edges[i + 1][0], edges[i + 2][0]] for i in range(0, len(edges), 3)], dtype=np.int32)
    closed = all(edges[i][1] == edges[i + 1][0] and edges[i + 1][1] == edges[i + 2][0] and edges[i + 2][1] == edges[i][0]
                 for i in range(0, len(edges), 3))
    if not closed or len(edges) % 3 or tris.max() >= N_MESH:
        raise RuntimeError("this mediapipe's face tessellation is not a list of closed triangles; pin mediapipe==1.2.2")
    return tris


class Landmarker3D(LandmarkDetector):
    """The project's MediaPipe FaceLandmarker, returning depth too, and upscaling small images first.

    Padding follows :class:`LandmarkDetector` (grey border, same fraction) so the points equal its
    ``detect`` points. Images whose shorter side is below ``min_side`` are upscaled (bicubic) before
    detection: MediaPipe misses most faces under ~60 px.
    """

    def __init__(self, min_side: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.min_side = min_side

    def detect_xyz(self, rgb: np.ndarray) -> np.ndarray | None:
        """(478, 3) points (x, y in input pixels; z in the same pixel scale), or None when no face is found."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        scale = 1 if min(h, w) >= self.min_side else int(np.ceil(self.min_side / max(1, min(h, w))))
        img = cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC) if scale > 1 else rgb
        hh, ww = img.shape[:2]
        ph, pw = int(round(hh * self.pad_fraction)), int(round(ww * self.pad_fraction))
        padded = np.pad(img, ((ph, ph), (pw, pw), (0, 0)), constant_values=128)
        result = self._landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(padded)))
        if not result.face_landmarks:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float64)
        if pts.shape[0] != N_POINTS or not np.isfinite(pts).all():
            return None
        pts[:, 0] = pts[:, 0] * padded.shape[1] - pw
        pts[:, 1] = pts[:, 1] * padded.shape[0] - ph
        pts[:, 2] = pts[:, 2] * padded.shape[1]  # MediaPipe: z uses roughly the scale of x
        return pts / scale


# --- face pose --------------------------------------------------------------------------------------------
def face_frame(v: np.ndarray) -> np.ndarray:
    """3x3 rotation whose columns are the face's right, down and outward (towards the viewer) axes."""
    x = v[263] - v[33]  # image-left outer corner -> image-right outer corner
    if np.linalg.norm(x) < 1e-6:
        raise ValueError("degenerate face landmarks: the outer eye corners coincide")
    x = x / np.linalg.norm(x)
    down = v[152] - v[10]  # forehead top -> chin
    y = down - (down @ x) * x
    if np.linalg.norm(y) < 1e-6:
        raise ValueError("degenerate face landmarks: no face height")
    y = y / np.linalg.norm(y)
    out = -np.cross(x, y)  # x right, y down: the cross points away from the viewer (+z), so negate
    return np.stack([x, y, out], axis=1)


def head_angles(frame: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees; yaw 0 = facing the camera, +-90 = profile."""
    out = frame[:, 2]
    yaw = float(np.degrees(np.arctan2(out[0], -out[2])))
    pitch = float(np.degrees(np.arcsin(np.clip(out[1], -1, 1))))
    roll = float(np.degrees(np.arctan2(frame[1, 0], frame[0, 0])))
    return yaw, pitch, roll


# --- eyelids ----------------------------------------------------------------------------------------------
@dataclass
class EyelidFit:
    upper: np.ndarray  # (DENSE_PER_LID, 2) dense upper-lid curve, image px, from corner to corner
    lower: np.ndarray  # (DENSE_PER_LID, 2)
    model_points: np.ndarray  # (16, 2) the curves at the landmarks (the "projections" of eq. 9), order of eyelid landmarks
    landmark_ids: tuple[int, ...]
    opening: float  # largest lid-to-lid distance over eye width
    width: float  # corner to corner, px (2D)


def _eye_axes(p2: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    a, b = p2[EYES[side]["corners"][0]], p2[EYES[side]["corners"][1]]
    if a[0] > b[0]:
        a, b = b, a
    u = b - a
    width = float(np.linalg.norm(u))
    if width < 1e-6:
        raise ValueError("eye corners coincide")
    u /= width
    return a, u, np.array([-u[1], u[0]]), width  # v points down the face for an upright face


def fit_eyelids(p2: np.ndarray, side: str) -> EyelidFit:
    """Cubic least-squares curve per lid in the eye frame (paper eqs. 6-8), corners weighted to close the eye."""
    origin, u, v, width = _eye_axes(p2, side)
    curves, model = {}, {}
    for lid in ("upper", "lower"):
        ids = EYES[side][lid]
        local = (p2[list(ids)] - origin) @ np.stack([u, v], axis=1)  # (9, 2): along, across
        t, y = local[:, 0] / width, local[:, 1] / width
        w = np.ones(len(ids))
        w[0] = w[-1] = CORNER_WEIGHT
        coef = np.polyfit(t, y, 3, w=w)
        ts = np.linspace(min(0.0, t.min()), max(1.0, t.max()), DENSE_PER_LID)
        curves[lid] = origin + np.outer(ts * width, u) + np.outer(np.polyval(coef, ts) * width, v)
        model.update({i: origin + tt * width * u + np.polyval(coef, tt) * width * v for i, tt in zip(ids, t)})
    gap = (curves["lower"] - origin) @ v - (curves["upper"] - origin) @ v
    ids = tuple(dict.fromkeys(EYES[side]["upper"] + EYES[side]["lower"]))
    return EyelidFit(curves["upper"], curves["lower"], np.stack([model[i] for i in ids]), ids,
                     float(max(gap.max(), 0.0) / width), width)


def opening_polygon(fit: EyelidFit) -> np.ndarray:
    """The eye opening: the upper curve corner to corner, then the lower curve back."""
    return np.concatenate([fit.upper, fit.lower[::-1]])


# --- eyeballs (SGAEM) -------------------------------------------------------------------------------------
@dataclass
class EyeballFit:
    centre: np.ndarray  # (3,) px
    radius: float  # eyeball radius re, px
    iris_angle: float  # angular iris radius asin(ri / re), radians
    gaze: np.ndarray  # (3,) unit vector in camera axes
    theta: float  # eyeball rotation in the face frame, degrees (+ = towards image right)
    phi: float  # degrees (+ = down)
    model_points: np.ndarray  # (5, 2) projected iris centre + the rim points nearest each ring landmark
    landmark_ids: tuple[int, ...]


def _gaze(theta: float, phi: float, frame: np.ndarray) -> np.ndarray:
    g = np.array([np.sin(theta) * np.cos(phi), np.sin(phi), np.cos(theta) * np.cos(phi)])
    return frame @ g


def _rim(centre, radius, alpha, g, frame, n=72) -> np.ndarray:
    """(n, 2) projected iris rim: the circle at angular radius alpha around gaze g on the sphere."""
    e1 = frame[:, 0] - (frame[:, 0] @ g) * g
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(g, e1)
    beta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = centre + radius * (np.cos(alpha) * g + np.sin(alpha) * (np.outer(np.cos(beta), e1) + np.outer(np.sin(beta), e2)))
    return pts[:, :2]


def _point_to_polygon(q: np.ndarray, poly: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(((q - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    near = a + t[:, None] * ab
    d = np.linalg.norm(near - q, axis=1)
    k = int(np.argmin(d))
    return float(d[k]), near[k]


def fit_eyeball(v: np.ndarray, side: str, frame: np.ndarray) -> EyeballFit:
    """SGAEM fit: priors give re, ri and the centre; (theta, phi) minimise the iris-landmark error (eq. 15)."""
    from scipy.optimize import least_squares

    eye = EYES[side]
    a, b = v[eye["corners"][0]], v[eye["corners"][1]]
    width3d = float(np.linalg.norm(b - a))
    re = EYEBALL_RADIUS_PER_EYE_WIDTH * width3d
    centre = (a + b) / 2 - EYEBALL_DEPTH_PER_RADIUS * re * frame[:, 2]
    iris, ring = v[eye["iris"], :2], v[list(eye["ring"]), :2]
    ri = max(np.linalg.norm(ring[0] - ring[2]), np.linalg.norm(ring[1] - ring[3])) / 2
    alpha = float(np.arcsin(np.clip(ri / re, 0.05, 0.9)))

    def residuals(x):
        g = _gaze(x[0], x[1], frame)
        c = centre[:2] + re * np.cos(alpha) * g[:2]
        rim = _rim(centre, re, alpha, g, frame)
        return np.concatenate([c - iris, [_point_to_polygon(q, rim)[0] for q in ring]])

    # start from the iris offset read directly off the image, in the face frame
    off = np.linalg.lstsq(frame[:2, :2], (iris - centre[:2]) / (re * np.cos(alpha)), rcond=None)[0]
    phi0 = np.arcsin(np.clip(off[1], -0.95, 0.95))
    x0 = np.array([np.arcsin(np.clip(off[0] / np.cos(phi0), -0.95, 0.95)), phi0])
    fit = least_squares(residuals, x0, method="lm", x_scale=0.1)
    theta, phi = fit.x
    g = _gaze(theta, phi, frame)
    c = centre[:2] + re * np.cos(alpha) * g[:2]
    rim = _rim(centre, re, alpha, g, frame)
    model = np.stack([c] + [_point_to_polygon(q, rim)[1] for q in ring])
    return EyeballFit(centre, re, alpha, g, float(np.degrees(theta)), float(np.degrees(phi)), model,
                      (eye["iris"],) + tuple(eye["ring"]))


# --- the whole reconstruction -----------------------------------------------------------------------------
@dataclass
class Reconstruction:
    vertices: np.ndarray  # (478, 3) px
    frame: np.ndarray  # (3, 3) face axes
    yaw: float
    pitch: float
    roll: float
    eyelids: dict[str, EyelidFit]
    eyeballs: dict[str, EyeballFit | None]  # None: that eye is closed (no eyeball is shown)
    closed: dict[str, bool] = field(default_factory=dict)

    def fit_errors(self) -> dict[str, float]:
        """The paper's own measure (eqs. 25-29): detected landmarks vs the reconstruction's projected points,
        over the inter-ocular distance; mean (ARE) and max (MRE), for eyelids and for open eyes' eyeballs."""
        p2 = self.vertices[:, :2]
        iod = float(np.linalg.norm(sum(p2[list(EYES["left"]["corners"])]) / 2 - sum(p2[list(EYES["right"]["corners"])]) / 2))
        lid = np.concatenate([np.linalg.norm(f.model_points - p2[list(f.landmark_ids)], axis=1) for f in self.eyelids.values()]) / iod
        balls = [f for f in self.eyeballs.values() if f is not None]
        out = {"eyelid_are": float(lid.mean()), "eyelid_mre": float(lid.max())}
        if balls:
            ball = np.concatenate([np.linalg.norm(f.model_points - p2[list(f.landmark_ids)], axis=1) for f in balls]) / iod
            out.update(eyeball_are=float(ball.mean()), eyeball_mre=float(ball.max()))
        return out


def reconstruct(points: np.ndarray, closed_opening: float = 0.08) -> Reconstruction:
    """Face, eyelid and eyeball models from (478, 3) landmark points. Raises ValueError on degenerate input."""
    v = np.asarray(points, dtype=np.float64)
    if v.shape != (N_POINTS, 3) or not np.isfinite(v).all():
        raise ValueError(f"expected (478, 3) finite landmark points, got {v.shape}")
    frame = face_frame(v)
    if not np.isfinite(frame).all():
        raise ValueError("degenerate face landmarks (no face frame)")
    yaw, pitch, roll = head_angles(frame)
    lids, balls, closed = {}, {}, {}
    for side in EYES:
        lids[side] = fit_eyelids(v[:, :2], side)
        closed[side] = lids[side].opening < closed_opening
        balls[side] = None if closed[side] else fit_eyeball(v, side, frame)
    return Reconstruction(v, frame, yaw, pitch, roll, lids, balls, closed)
