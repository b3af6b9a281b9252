"""Classic de-identification baselines: the reference rows every method is compared with.

identity   no change (the upper bound of utility, no protection)
mosaic     pixelation in b x b blocks
blur       Gaussian blur (sigma 4 px)
blur-2     Gaussian blur at sigma 2 px: a sanity check of the attackers (a face this mildly blurred is still
           identified; a benchmark that calls it protected has weak attackers)
mask-out   the face (convex hull of the face mesh) filled black
eye-crop   only boxes around the left and right eye kept (ROFI Fig. 5c: clinics' current practice)
dp-pix     differentially private pixelization (Fan 2018): block means plus Laplace noise
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from mema.methods import MethodInfo, register


def _per_image(images: np.ndarray, fn) -> np.ndarray:
    return np.stack([fn(img) for img in images]) if len(images) else images.copy()


@register("identity")
class Identity:
    info = MethodInfo(name="identity", version="1.0", licence="Apache-2.0", description="Returns the input unchanged.")

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        return images.copy()


def pixelate(img: np.ndarray, block: int) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@register("mosaic")
class Mosaic:
    def __init__(self, block: int = 8):
        self.block = block
        self.info = MethodInfo(name="mosaic", version="1.0", licence="Apache-2.0", description="Pixelation (block means).", params={"block": block})

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        return _per_image(images, lambda im: pixelate(im, self.block))


@register("blur")
class Blur:
    def __init__(self, sigma: float = 4.0, name: str = "blur"):
        self.sigma = sigma
        self.info = MethodInfo(name=name, version="1.0", licence="Apache-2.0", description=f"Gaussian blur (sigma {sigma:g} px).",
                               params={"sigma_px": sigma})

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        return _per_image(images, lambda im: cv2.GaussianBlur(im, (0, 0), self.sigma, borderType=cv2.BORDER_REFLECT_101))


@register("blur-2")
def mild_blur() -> Blur:
    return Blur(sigma=2.0, name="blur-2")


class _LandmarkMethod:
    """Shared detector for methods that need to know where the face is."""

    _detector = None

    def landmarks(self, img: np.ndarray):
        if _LandmarkMethod._detector is None:
            from mema.faces.landmarks import LandmarkDetector

            _LandmarkMethod._detector = LandmarkDetector()
        return _LandmarkMethod._detector.detect(img)


@register("mask-out")
class MaskOut(_LandmarkMethod):
    info = MethodInfo(
        name="mask-out", version="1.0", licence="Apache-2.0",
        description="Face region (convex hull of the landmarks) filled black; the whole image when no face is found.",
    )

    def _one(self, img: np.ndarray) -> np.ndarray:
        lm = self.landmarks(img)
        out = img.copy()
        if lm is None:
            return np.zeros_like(img)
        hull = cv2.convexHull(np.round(lm.points).astype(np.int32))
        cv2.fillConvexPoly(out, hull, (0, 0, 0), lineType=cv2.LINE_8)
        return out

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        return _per_image(images, self._one)


@register("eye-crop")
class EyeCrop(_LandmarkMethod):
    def __init__(self, width_factor: float = 1.6, height_factor: float = 1.1):
        self.wf, self.hf = width_factor, height_factor
        self.info = MethodInfo(
            name="eye-crop", version="1.0", licence="Apache-2.0",
            description="Keeps a box around each eye (width x1.6, height x1.1 of the eye width), black elsewhere; all black when no face is found.",
            params={"width_factor": width_factor, "height_factor": height_factor},
        )

    def _one(self, img: np.ndarray) -> np.ndarray:
        lm = self.landmarks(img)
        out = np.zeros_like(img)
        if lm is None:
            return out
        h, w = img.shape[:2]
        for side in ("left", "right"):
            a, b = lm.eye_corners(side)
            c, ew = (a + b) / 2, float(np.linalg.norm(b - a))
            x0, x1 = int(max(0, c[0] - ew * self.wf / 2)), int(min(w, np.ceil(c[0] + ew * self.wf / 2)))
            y0, y1 = int(max(0, c[1] - ew * self.hf / 2)), int(min(h, np.ceil(c[1] + ew * self.hf / 2)))
            out[y0:y1, x0:x1] = img[y0:y1, x0:x1]
        return out

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        return _per_image(images, self._one)


@register("dp-pix")
class DPPix:
    """Fan (2018), "Image pixelization with differential privacy".

    Pixelize in b x b blocks, then add Laplace(0, 255 m / (b^2 eps)) noise to each block mean, where m
    is the number of pixels two neighbouring images may differ in. Noise is drawn from a generator
    seeded by ``seed`` and a hash of the image, so a result does not depend on batch order or resumes.
    """

    def __init__(self, epsilon: float = 1.0, block: int = 8, m: int = 16, seed: int = 0):
        if epsilon <= 0 or block < 1 or m < 1:
            raise ValueError("dp-pix needs epsilon > 0, block >= 1 and m >= 1")
        self.epsilon, self.block, self.m, self.seed = epsilon, block, m, seed
        self.info = MethodInfo(
            name="dp-pix", version="1.0", licence="Apache-2.0", paper="Fan 2018, DBSec (Image pixelization with differential privacy)",
            description="Differentially private pixelization.", params={"epsilon": epsilon, "block": block, "m": m, "seed": seed},
        )

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        out = []
        scale = 255.0 * self.m / (self.block**2 * self.epsilon)
        for img in images:
            digest = hashlib.sha256(np.ascontiguousarray(img).tobytes()).digest()
            rng = np.random.default_rng([self.seed, int.from_bytes(digest[:8], "little")])
            h, w = img.shape[:2]
            bh, bw = max(1, h // self.block), max(1, w // self.block)
            means = cv2.resize(img, (bw, bh), interpolation=cv2.INTER_AREA).astype(np.float64)
            noisy = np.clip(np.round(means + rng.laplace(0.0, scale, size=means.shape)), 0, 255).astype(np.uint8)
            out.append(cv2.resize(noisy, (w, h), interpolation=cv2.INTER_NEAREST))
        return np.stack(out) if out else images.copy()
