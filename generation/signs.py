"""Procedural eye rendering and ophthalmic signs for the procedural (MeMa-mini) backend.

The DCGAN's own eyes have almost no iris/sclera contrast, so signs drawn on them are invisible or
ambiguous. Each eye is therefore redrawn (sclera, iris, pupil, lids) in a frame fixed by the two
landmark eye corners, and a sign changes that drawing: ptosis lowers the upper lid over the iris,
strabismus displaces one iris, TAO retracts the lids so sclera shows above the iris, conjunctivitis
reddens the sclera, uveitis adds a ciliary flush and clouds the iris, BCC adds a pearly nodule and
SCC a red scaly plaque near the lids (both with a lesion mask).

Each identity also carries its own periocular traits (:mod:`mema.generation.periocular`: eye shape,
lid crease, brows, iris texture, periocular skin), so the eye region identifies a person as it does on
real faces; the signs are drawn on top of those traits.

Rendering is supersampled (x4) in a patch around each eye and box-filtered down, so the ~16 px
eyes of a 128 px face keep smooth edges. Everything is driven by an explicit ``numpy`` Generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mema.faces.landmarks import CHEEKS, FaceLandmarks
from mema.generation.periocular import PeriocularTraits, brow_alpha, draw_traits, iris_colour, medial

SS = 4  # supersampling factor
SEVERITY_INDEX = {"slight": 0, "mid": 1, "heavy": 2}

SCLERA = np.array((236, 234, 228), dtype=np.float32)
LID_LINE = np.array((38, 26, 24), dtype=np.float32)


@dataclass(frozen=True)
class EyeShape:
    """One eye in its own frame: s along the corner axis, t perpendicular (down), both in eye widths."""

    h_up: float = 0.24  # upper lid apex above the axis
    h_lo: float = 0.17  # lower lid apex below the axis
    iris_s: float = 0.0
    iris_t: float = 0.02
    iris_r: float = 0.23
    pupil_r: float = 0.09
    iris_rgb: tuple[float, float, float] = (92.0, 56.0, 32.0)
    iris_haze: float = 0.0  # uveitis: iris clouded towards grey
    sclera_red: float = 0.0  # conjunctivitis: sclera tinted red
    vessels: int = 0
    flush: float = 0.0  # uveitis: ciliary flush ring strength
    lid_swelling: float = 0.0  # TAO: periorbital puffiness above the lid
    crease_drop: float = 0.0  # ptosis: lid fold hangs lower
    brow_raise: float = 0.0  # per-photo expression


@dataclass(frozen=True)
class Lesion:
    kind: str  # 'bcc' or 'scc'
    side: str
    anchor: str  # 'lower', 'upper' or 'medial'
    radius: float  # in eye widths
    offset: tuple[float, float]  # jitter of the anchor, in eye widths
    seed: int


@dataclass(frozen=True)
class SignPlan:
    """Everything needed to draw one photo's eyes and sign; per identity, jittered per photo."""

    disease: str
    severity: str
    left: EyeShape = field(default_factory=EyeShape)
    right: EyeShape = field(default_factory=EyeShape)
    eye_scale: float = 1.15
    lesion: Lesion | None = None
    traits: PeriocularTraits | None = None  # None: the single eye drawing of MeMa-mini 1.0


def plan_sign(disease: str, severity: str, rng: np.random.Generator) -> SignPlan:
    """Per-identity sign plan: the identity's periocular traits, which eye, how strong, lesion place."""
    traits = draw_traits(rng)
    gaze = (float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.02, 0.02)))
    base = EyeShape(iris_rgb=traits.iris_rgb, iris_s=gaze[0], iris_t=0.02 + gaze[1], h_up=traits.h_up, h_lo=traits.h_lo,
                    iris_r=traits.iris_r)
    left, right = base, base
    k = SEVERITY_INDEX.get(severity, 0)
    side = "left" if rng.random() < 0.5 else "right"
    both = rng.random() < 0.6
    lesion = None

    def on(side_or_both: str, **changes) -> None:
        nonlocal left, right
        if side_or_both in ("left", "both"):
            left = replace(left, **changes)
        if side_or_both in ("right", "both"):
            right = replace(right, **changes)

    if disease == "Ptosis":
        on(side, h_up=base.h_up * (0.50, 0.30, 0.12)[k], crease_drop=(0.10, 0.16, 0.22)[k])
    elif disease == "Strab":
        direction = 1.0 if rng.random() < 0.5 else -1.0
        on(side, iris_s=direction * (0.17, 0.24, 0.31)[k], iris_t=base.iris_t + float(rng.uniform(-0.04, 0.04)))
    elif disease == "TAO":
        changes = dict(h_up=base.h_up * (1.40, 1.65, 1.90)[k], h_lo=base.h_lo * 1.15, lid_swelling=(0.18, 0.28, 0.38)[k])
        on("both" if both else side, **changes)
    elif disease == "Conj":
        on("both" if both else side, sclera_red=(0.40, 0.58, 0.76)[k], vessels=(4, 7, 10)[k])
    elif disease == "Uveitis":
        on(side, flush=(0.55, 0.75, 0.95)[k], iris_haze=(0.35, 0.5, 0.65)[k], pupil_r=0.05)
    elif disease in ("BCC", "SCC"):
        anchor = ("lower", "upper", "medial")[rng.integers(3)]
        radius = ((0.17, 0.22, 0.28) if disease == "BCC" else (0.22, 0.29, 0.36))[k]
        offset = (float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.05, 0.05)))
        lesion = Lesion(disease.lower(), side, anchor, radius, offset, int(rng.integers(2**31)))
    return SignPlan(disease, severity, left, right, traits.eye_scale, lesion, traits)


def jitter_plan(plan: SignPlan, rng: np.random.Generator) -> SignPlan:
    """Per-photo variation: the same patient looks a little different in each photo."""

    def wobble(eye: EyeShape) -> EyeShape:
        return replace(
            eye,
            h_up=eye.h_up * float(rng.uniform(0.93, 1.07)),
            h_lo=eye.h_lo * float(rng.uniform(0.93, 1.07)),
            iris_s=eye.iris_s + float(rng.uniform(-0.02, 0.02)),
            brow_raise=brow,
        )

    brow = float(rng.uniform(-0.03, 0.03))

    lesion = plan.lesion
    if lesion is not None:
        lesion = replace(lesion, radius=lesion.radius * float(rng.uniform(0.92, 1.08)), seed=lesion.seed)
    return replace(plan, left=wobble(plan.left), right=wobble(plan.right), lesion=lesion)


@dataclass(frozen=True)
class EyeFrame:
    center: np.ndarray
    u: np.ndarray  # unit vector along the eye (image left -> right)
    v: np.ndarray  # unit vector perpendicular, pointing down
    width: float


def eye_frame(lm: FaceLandmarks, side: str, scale: float) -> EyeFrame:
    a, b = lm.eye_corners(side)
    d = (b - a).astype(np.float64)
    width = float(np.linalg.norm(d))
    u = d / max(width, 1e-6)
    v = np.array([-u[1], u[0]])
    if v[1] < 0:
        v = -v
    return EyeFrame(center=((a + b) / 2).astype(np.float64), u=u, v=v, width=width * scale)


def skin_colour(img: np.ndarray, lm: FaceLandmarks) -> np.ndarray:
    """Median colour of small patches on both cheeks."""
    h, w = img.shape[:2]
    samples = []
    for idx in CHEEKS:
        x, y = np.round(lm.points[idx]).astype(int)
        x0, x1 = np.clip([x - 3, x + 4], 0, w)
        y0, y1 = np.clip([y - 3, y + 4], 0, h)
        if x1 > x0 and y1 > y0:
            samples.append(img[y0:y1, x0:x1].reshape(-1, 3))
    if not samples:
        return np.array((180, 140, 120), dtype=np.float32)
    return np.median(np.concatenate(samples), axis=0).astype(np.float32)


class _Canvas:
    """A supersampled patch of the image that shapes are painted on, then box-filtered back."""

    def __init__(self, img: np.ndarray, center: np.ndarray, half: float):
        h, w = img.shape[:2]
        self.x0 = int(max(0, np.floor(center[0] - half)))
        self.x1 = int(min(w, np.ceil(center[0] + half)))
        self.y0 = int(max(0, np.floor(center[1] - half)))
        self.y1 = int(min(h, np.ceil(center[1] + half)))
        patch = img[self.y0 : self.y1, self.x0 : self.x1].astype(np.float32)
        self.rgb = patch.repeat(SS, 0).repeat(SS, 1)
        ys, xs = np.mgrid[0 : self.rgb.shape[0], 0 : self.rgb.shape[1]].astype(np.float32)
        self.x = self.x0 + (xs + 0.5) / SS
        self.y = self.y0 + (ys + 0.5) / SS
        self.lesion = np.zeros(self.rgb.shape[:2], dtype=np.float32)

    @property
    def empty(self) -> bool:
        return self.x1 <= self.x0 or self.y1 <= self.y0

    def local(self, frame: EyeFrame) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = self.x - frame.center[0], self.y - frame.center[1]
        return (dx * frame.u[0] + dy * frame.u[1]) / frame.width, (dx * frame.v[0] + dy * frame.v[1]) / frame.width

    def paint(self, where: np.ndarray, colour, alpha: float | np.ndarray = 1.0) -> None:
        a = np.asarray(alpha, dtype=np.float32) * where.astype(np.float32)
        self.rgb += (np.asarray(colour, dtype=np.float32) - self.rgb) * a[..., None]

    def commit(self, img: np.ndarray, mask: np.ndarray | None) -> None:
        hh, ww = (self.y1 - self.y0), (self.x1 - self.x0)
        down = self.rgb.reshape(hh, SS, ww, SS, 3).mean(axis=(1, 3))
        img[self.y0 : self.y1, self.x0 : self.x1] = np.clip(np.round(down), 0, 255).astype(np.uint8)
        if mask is not None:
            cover = self.lesion.reshape(hh, SS, ww, SS).mean(axis=(1, 3))
            mask[self.y0 : self.y1, self.x0 : self.x1] |= (cover >= 0.5).astype(np.uint8)


def _lid_profile(s: np.ndarray, power: float = 0.8, apex: float = 0.0) -> np.ndarray:
    """Lid height along the eye (1 at the apex, 0 at the corners); ``apex`` in frame units along s."""
    n = np.where(s < apex, (s - apex) / (0.5 + apex), (s - apex) / (0.5 - apex))
    n = np.clip(n, -1, 1)
    return np.power(np.clip(1 - n * n, 0, 1), power)


def _soft_ellipse(s: np.ndarray, t: np.ndarray, cs: float, ct: float, rs: float, rt: float) -> np.ndarray:
    return np.clip(1.0 - (((s - cs) / rs) ** 2 + ((t - ct) / rt) ** 2), 0, 1)


def draw_periocular(canvas: _Canvas, frame: EyeFrame, eye: EyeShape, skin: np.ndarray, side: str, tr: PeriocularTraits) -> None:
    """The identity's periocular skin, crease-free parts: tint, dark circles, crow's feet, moles, brow."""
    s, t = canvas.local(frame)
    m = medial(s, side)
    tint = np.asarray(tr.skin_tint, np.float32)
    everywhere = np.ones_like(s, bool)
    # Tints and shadows scale the pixels already there, so the generator's skin texture stays and no patch shows.
    canvas.paint(everywhere, canvas.rgb * tint, np.clip(_soft_ellipse(s, t, 0.0, -0.15, 1.05, 0.95) * 1.5, 0, 0.8))
    tinted = skin * tint
    # Brow zone: fade the generator's own brow before drawing the identity's.
    brow_c = -(tr.brow_gap + tr.brow_arch * 0.6)
    zone = _soft_ellipse(m, t, tr.brow_shift, brow_c, tr.brow_len / 2 + 0.2, 0.26)
    canvas.paint(zone > 0, tinted, np.clip(zone * 1.5, 0, 0.55))
    if tr.dark_circle > 0:
        band = _soft_ellipse(s, t, 0.0, eye.h_lo + 0.24, 0.5, 0.14)
        canvas.paint(band > 0, canvas.rgb * np.array([0.80, 0.72, 0.82], np.float32), band * tr.dark_circle)
    wr = np.random.default_rng(tr.wrinkle_seed)
    for _ in range(tr.wrinkles):
        angle = wr.uniform(-0.6, 0.6)
        line = np.abs((t - wr.uniform(-0.05, 0.05)) * np.cos(angle) - (m + 0.58) * np.sin(angle)) < 0.014
        canvas.paint(line & (m < -0.58) & (m > -0.58 - wr.uniform(0.18, 0.32)), canvas.rgb * 0.78, 0.45)
    for mole in tr.moles:
        if mole.side == side:
            d = np.hypot(m - mole.m, t - mole.t) / mole.r
            canvas.paint(d < 1.2, canvas.rgb * np.array([0.45, 0.36, 0.32], np.float32), np.clip(1.2 - d, 0, 1) * 2 * mole.darkness)
    canvas.paint(np.ones_like(s, bool), np.asarray(tr.brow_rgb, np.float32), brow_alpha(s, t, side, tr, eye.brow_raise))


def draw_eye(canvas: _Canvas, frame: EyeFrame, eye: EyeShape, skin: np.ndarray, rng: np.random.Generator,
             side: str, tr: PeriocularTraits) -> None:
    s, t0 = canvas.local(frame)
    m = medial(s, side)
    t = t0 - tr.tilt * m  # canthal tilt: the lateral corner sits higher
    prof = _lid_profile(s, tr.lid_power, tr.apex if side == "left" else -tr.apex)
    tinted = skin * np.asarray(tr.skin_tint, np.float32)
    # Skin underlay hides the generator's own eye, softly, so no hard patch edge shows.
    under = np.clip(1.0 - ((s / 0.78) ** 2 + (t / 0.48) ** 2), 0, 1)
    canvas.paint(under > 0, tinted, np.clip(under * 2.2, 0, 0.92))
    if eye.lid_swelling > 0:
        band = np.clip(1.0 - ((s / 0.62) ** 2 + ((t + eye.h_up + 0.12) / 0.14) ** 2), 0, 1)
        canvas.paint(band > 0, tinted * np.array([1.08, 0.9, 0.9]), band * eye.lid_swelling * 2.0)
    crease_t = -eye.h_up * prof - tr.crease_gap - eye.crease_drop * prof
    crease_alpha = max(tr.crease, 0.6 if eye.crease_drop > 0 else 0.0)
    if crease_alpha > 0:
        canvas.paint(np.abs(t - crease_t) < 0.022 + eye.crease_drop * 0.12, tinted * 0.78, crease_alpha * (np.abs(s) < 0.42))
    upper, lower = -eye.h_up * prof, eye.h_lo * prof
    inside = (np.abs(s) < 0.5) & (t > upper) & (t < lower)
    sclera = SCLERA + (np.array((212, 92, 92), dtype=np.float32) - SCLERA) * eye.sclera_red
    canvas.paint(inside, sclera)
    # Corner shading keeps the sclera from looking like a flat sticker.
    canvas.paint(inside, sclera * 0.78, np.clip((np.abs(s) - 0.25) * 1.6, 0, 0.5))
    for _ in range(eye.vessels):
        y0 = rng.uniform(-0.08, 0.08)
        x0 = rng.choice([-1, 1]) * rng.uniform(0.3, 0.48)
        slope = rng.uniform(-0.5, 0.5)
        line = np.abs((t - y0) - slope * (s - x0)) < 0.018
        reach = (np.abs(s - x0) < rng.uniform(0.1, 0.2))
        canvas.paint(inside & line & reach, (175, 30, 35), 0.85)
    d = np.hypot(s - eye.iris_s, t - eye.iris_t)
    if eye.flush > 0:
        ring = np.clip(1 - np.abs(d - eye.iris_r - 0.05) / 0.07, 0, 1)
        canvas.paint(inside, (200, 40, 45), ring * eye.flush)
    iris_rgb = np.asarray(eye.iris_rgb, dtype=np.float32)
    iris_rgb = iris_rgb + (np.array((165, 160, 150), dtype=np.float32) - iris_rgb) * eye.iris_haze
    iris = inside & (d < eye.iris_r)
    texture = iris_colour(d, np.arctan2(t - eye.iris_t, s - eye.iris_s), iris_rgb, tr)
    haze = np.float32(eye.iris_haze)
    texture = texture * (1 - haze) + iris_rgb * haze  # a clouded iris loses its pattern
    canvas.rgb[iris] = texture[iris]
    canvas.paint(iris & (d > eye.iris_r * 0.8), iris_rgb * 0.55)  # limbal ring
    canvas.paint(inside & (d < eye.pupil_r), (12, 10, 10))
    canvas.paint(inside & (np.hypot(s - eye.iris_s + 0.06, t - eye.iris_t + 0.06) < 0.035), (250, 250, 250), 0.8)
    # Lid margins: a dark upper line with lashes, a thin lower one.
    canvas.paint((np.abs(t - upper) < 0.03 + 0.025 * tr.lash) & (np.abs(s) < 0.52), LID_LINE)
    canvas.paint((np.abs(t - lower) < 0.02) & (np.abs(s) < 0.48), skin * 0.62)


def _lesion_center(frame: EyeFrame, eye: EyeShape, lesion: Lesion, side: str) -> tuple[float, float]:
    """Lesion centre in the eye frame (eye widths)."""
    if lesion.anchor == "lower":
        s, t = 0.0, eye.h_lo + 0.1 + lesion.radius * 0.9
    elif lesion.anchor == "upper":
        s, t = 0.05, -eye.h_up - 0.14 - lesion.radius * 0.9
    else:  # medial canthus: towards the nose, which is image-right for the image-left eye
        s, t = (0.55 + lesion.radius * 0.7) * (1 if side == "left" else -1), 0.02
    return s + lesion.offset[0], t + lesion.offset[1]


def draw_lesion(canvas: _Canvas, frame: EyeFrame, eye: EyeShape, lesion: Lesion) -> None:
    rng = np.random.default_rng(lesion.seed)
    s, t = canvas.local(frame)
    cs, ct = _lesion_center(frame, eye, lesion, lesion.side)
    r = lesion.radius
    if lesion.kind == "bcc":
        d = np.hypot(s - cs, t - ct) / r
        body = d < 1.0
        canvas.paint(body, (214, 160, 158))  # rolled pink border
        canvas.paint(d < 0.78, (238, 214, 206))  # pearly dome
        canvas.paint(d < 0.55, (248, 236, 230), np.clip(1 - d / 0.55, 0, 1) * 0.8)  # sheen
        for _ in range(3):  # telangiectasia across the dome
            ang = rng.uniform(0, np.pi)
            off = rng.uniform(-0.4, 0.4) * r
            line = np.abs((s - cs) * np.sin(ang) - (t - ct) * np.cos(ang) - off) < 0.02
            canvas.paint(body & line & (d < 0.9), (185, 50, 60), 0.9)
        canvas.lesion[body] = 1.0
    else:
        blob = np.zeros_like(s, dtype=bool)
        for _ in range(4):
            ox, oy = rng.uniform(-0.45, 0.45, size=2) * r
            ax, ay = rng.uniform(0.55, 0.9, size=2) * r
            blob |= ((s - cs - ox) / ax) ** 2 + ((t - ct - oy) / ay) ** 2 < 1
        noise = rng.random(s.shape[0] // SS * s.shape[1] // SS).reshape(s.shape[0] // SS, s.shape[1] // SS)
        noise = noise.repeat(SS, 0).repeat(SS, 1)
        canvas.paint(blob, (178, 62, 54))
        canvas.paint(blob & (noise > 0.72), (232, 214, 188), 0.9)  # scale
        canvas.paint(blob & (noise < 0.08), (96, 48, 34), 0.9)  # crust
        canvas.lesion[blob] = 1.0


def render_signs(img: np.ndarray, lm: FaceLandmarks, plan: SignPlan, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Redraw both eyes, their periocular traits and the sign; returns (image, lesion mask) as new arrays."""
    if plan.traits is None:
        raise ValueError("a sign plan needs the identity's periocular traits (plan_sign draws them)")
    out = img.copy()
    mask = np.zeros(img.shape[:2], dtype=np.uint8)
    skin = skin_colour(img, lm)
    for side, eye in (("left", plan.left), ("right", plan.right)):
        frame = eye_frame(lm, side, plan.eye_scale)
        lesion = plan.lesion if plan.lesion is not None and plan.lesion.side == side else None
        canvas = _Canvas(out, frame.center, frame.width * 1.3)  # brows, moles and lesions included
        if canvas.empty:
            continue
        draw_periocular(canvas, frame, eye, skin, side, plan.traits)
        draw_eye(canvas, frame, eye, skin, rng, side, plan.traits)
        if lesion is not None:
            draw_lesion(canvas, frame, eye, lesion)
        canvas.commit(out, mask if lesion is not None else None)
    return out, mask
