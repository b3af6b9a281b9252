"""An identity's periocular traits for the procedural backend (MeMa-mini 2.0 and later).

On real faces the eye region is a strong biometric (periocular matchers reach 80-90% rank-1), so a corpus
whose eyes are all redrawn by one procedure would make keeping a patient's eyes look free. Each synthetic
identity therefore draws its own eye shape (lid heights, canthal tilt, lid curve, apex), lid crease, brows
(gap, arch, thickness, length, colour and a fixed hair pattern), iris texture and periocular skin (tint,
moles, dark circles, crow's feet). They are fixed per identity and only wobble a little per photo.

Everything is placed in each eye's frame (:class:`mema.generation.signs.EyeFrame`, eye widths), in
medial/lateral terms (``m > 0`` towards the nose), so the two eyes mirror each other and traits move with
the face's scale and roll. Textures are small seeded value-noise grids sampled in that frame, so the same
brow hair and iris pattern appear in every photo of an identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HAIR_COLOURS = np.array(
    [(28, 20, 16), (45, 32, 24), (70, 50, 34), (96, 72, 48), (130, 102, 70), (60, 56, 54), (110, 108, 104)],
    dtype=np.float32,
)
IRIS_COLOURS = np.array(
    [(92, 56, 32), (70, 42, 24), (120, 84, 50), (76, 104, 132), (92, 120, 84), (110, 92, 60), (55, 38, 28), (96, 110, 120)],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Mole:
    side: str  # 'left' or 'right' (image side)
    m: float  # medial (+) / lateral (-) position, eye widths
    t: float  # below (+) / above (-) the eye axis, eye widths
    r: float
    darkness: float


@dataclass(frozen=True)
class PeriocularTraits:
    h_up: float
    h_lo: float
    tilt: float  # lateral canthus raised by tilt * |m| eye widths
    lid_power: float  # lid curve exponent: low = round, high = almond
    apex: float  # upper-lid apex shifted medially (+) or laterally (-)
    eye_scale: float
    crease_gap: float
    crease: float  # crease darkness; 0 = no visible crease
    brow_gap: float
    brow_arch: float
    brow_thick: float
    brow_len: float
    brow_shift: float  # brow centre medial (+) / lateral (-)
    brow_tail: float  # tail drop (+) or rise (-)
    brow_rgb: tuple[float, float, float]
    brow_density: float
    brow_seed: int
    iris_rgb: tuple[float, float, float]
    iris_rgb2: tuple[float, float, float]
    iris_r: float
    iris_seed: int
    skin_tint: tuple[float, float, float]
    dark_circle: float
    wrinkles: int
    wrinkle_seed: int
    lash: float
    moles: tuple[Mole, ...]


def draw_traits(rng: np.random.Generator) -> PeriocularTraits:
    """One identity's traits, from the identity's own generator."""
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    iris = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.85, 1.15, size=3)
    inner = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    moles = []
    for _ in range(int(rng.integers(0, 4))):
        side = "left" if rng.random() < 0.5 else "right"
        # Anywhere on the lids, below the eye or beside it, never in the opening itself.
        zone = int(rng.integers(3))
        m, t = ((u(-0.5, 0.5), u(0.35, 0.75)), (u(-0.85, -0.55), u(-0.3, 0.4)), (u(-0.4, 0.5), u(-0.42, -0.3)))[zone]
        moles.append(Mole(side, m, t, u(0.035, 0.075), u(0.35, 0.7)))
    return PeriocularTraits(
        h_up=u(0.20, 0.28), h_lo=u(0.13, 0.21), tilt=u(-0.10, 0.14), lid_power=u(0.55, 1.15), apex=u(-0.10, 0.12),
        eye_scale=u(1.05, 1.28), crease_gap=u(0.08, 0.24), crease=float(rng.choice([0.0, u(0.3, 0.75)], p=[0.25, 0.75])),
        brow_gap=u(0.42, 0.70), brow_arch=u(0.0, 0.20), brow_thick=u(0.07, 0.16), brow_len=u(1.05, 1.45),
        brow_shift=u(-0.12, 0.12), brow_tail=u(-0.08, 0.14), brow_rgb=tuple(float(c) for c in hair), brow_density=u(0.55, 0.95),
        brow_seed=int(rng.integers(2**31)), iris_rgb=tuple(float(c) for c in iris), iris_rgb2=tuple(float(c) for c in inner),
        iris_r=u(0.20, 0.25), iris_seed=int(rng.integers(2**31)),
        skin_tint=tuple(float(c) for c in rng.uniform(0.93, 1.07, size=3)), dark_circle=u(0.0, 0.35),
        wrinkles=int(rng.integers(0, 4)), wrinkle_seed=int(rng.integers(2**31)), lash=u(0.5, 1.0), moles=tuple(moles),
    )


def value_noise(seed: int, shape: tuple[int, int], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear value noise in [0, 1] from a seeded ``shape`` grid, sampled at ``x, y`` in [0, 1] (clipped)."""
    grid = np.random.default_rng(seed).random(shape)
    gx = np.clip(x, 0, 1) * (shape[1] - 1)
    gy = np.clip(y, 0, 1) * (shape[0] - 1)
    x0 = np.minimum(np.floor(gx).astype(int), shape[1] - 2)
    y0 = np.minimum(np.floor(gy).astype(int), shape[0] - 2)
    fx, fy = gx - x0, gy - y0
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def medial(s: np.ndarray, side: str) -> np.ndarray:
    """Medial coordinate: the nose is image-right of the image-left eye."""
    return s if side == "left" else -s


def brow_alpha(s: np.ndarray, t: np.ndarray, side: str, tr: PeriocularTraits, raise_by: float = 0.0) -> np.ndarray:
    """Opacity of the brow at frame coordinates: a tapered arched band with a fixed hair pattern."""
    m = medial(s, side)
    half = tr.brow_len / 2
    q = (m - tr.brow_shift) / half  # -1 lateral tail .. +1 medial head
    centre = -tr.brow_gap - raise_by - tr.brow_arch * (1 - np.clip(q, -1, 1) ** 2) + tr.brow_tail * np.clip(-q, 0, 1) ** 2
    thick = tr.brow_thick * (0.55 + 0.45 * np.clip((q + 1) / 1.4, 0, 1))  # the tail thins out
    inside = np.clip(1 - np.abs(t - centre) / np.maximum(thick / 2, 1e-3), 0, 1) * (np.abs(q) < 1)
    ends = np.clip((1 - np.abs(q)) / 0.15, 0, 1)
    # Hair: fine streaks along the brow (many columns, few rows), fixed per identity.
    hair = value_noise(tr.brow_seed, (5, 40), (q + 1) / 2, (t - centre) / np.maximum(thick, 1e-3) + 0.5)
    return np.clip(inside * 1.6, 0, 1) * ends * tr.brow_density * (0.45 + 0.75 * hair)


def iris_colour(d: np.ndarray, angle: np.ndarray, tr_rgb: np.ndarray, tr: PeriocularTraits) -> np.ndarray:
    """(…, 3) iris colour with radial streaks and a collarette of the identity's second colour."""
    rho = np.clip(d / tr.iris_r, 0, 1)
    streak = value_noise(tr.iris_seed, (3, 36), (angle + np.pi) / (2 * np.pi), rho)
    inner = np.asarray(tr.iris_rgb2, np.float32)
    mix = np.clip((0.6 - rho) / 0.2, 0, 1)[..., None] * 0.7
    base = tr_rgb * (1 - mix) + inner * mix
    return base * (0.7 + 0.6 * streak[..., None])
