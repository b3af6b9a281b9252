"""Digital Mask (Yang et al., Nature Medicine 2022), irreversible: the face re-drawn from its geometry.

Landmarks -> 3D face, eyelid and eyeball reconstruction (``digital_mask_model``) -> a neutral shaded
rendering (``digital_mask_render``) on a plain background, in the input's pixel frame. Shape, lids and
gaze survive; skin texture, colour, hair and background do not. Deviations: docs/methods/digital-mask.md.

Per-sample status (``last_statuses`` after each call, ``status_counts`` over the method's lifetime):

    ok            reconstructed and rendered
    eyes_closed   rendered; a closed eye (lid gap < 8% of its width) is drawn as a lid line, no eyeball
    profile       rendered; |yaw| > 45 degrees, so MediaPipe's far-side points (and eyeball) are guesses
    tiny_face     rendered; inter-ocular distance < 12 px, so lids and irises are a few pixels wide
    no_face       MediaPipe found no face: the output is the plain background (no pixel of the input)
    failed        the landmarks were degenerate (no face frame, coincident corners) or could not be
                  rendered: plain background

A sample has one status; the first that applies in the order no_face, failed, tiny_face, profile,
eyes_closed wins. ``last_fits`` holds each sample's reconstruction fit errors (the paper's measure).
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from mema.baselines.digital_mask_model import Landmarker3D, reconstruct
from mema.baselines.digital_mask_render import neutral, render
from mema.methods import MethodInfo, register

STATUSES = ("ok", "eyes_closed", "profile", "tiny_face", "no_face", "failed")


def check_batch(images: np.ndarray, name: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"{name} expects an (N, H, W, 3) uint8 RGB batch, got {got}")


@register("digital-mask")
class DigitalMask:
    def __init__(self, background: tuple[int, int, int] = (0, 0, 0), supersample: int | None = None,
                 profile_yaw: float = 45.0, closed_opening: float = 0.08, tiny_iod: float = 12.0):
        self.background = tuple(int(c) for c in background)
        self.supersample = supersample
        self.profile_yaw, self.closed_opening, self.tiny_iod = profile_yaw, closed_opening, tiny_iod
        self.info = MethodInfo(
            name="digital-mask", version="1.0", reversible=False, key_scheme="none",
            licence="Apache-2.0 (independent re-implementation; the authors' code is licence-gated)",
            paper="Yang et al. 2022, Nature Medicine 28:1883 (A digital mask to safeguard patient privacy)",
            trained_on="nothing: MediaPipe FaceLandmarker (Apache-2.0) and fixed anatomical priors; no MeMa split used or tuned on",
            description="Face mesh from MediaPipe's 478 points with depth, cubic eyelid curves and a fitted sphere eyeball model, "
                        "rendered with one neutral albedo and Lambert shading on a plain background; no face -> plain background.",
            params={"background": "rgb(%d,%d,%d)" % self.background, "supersample": supersample or 0,
                    "profile_yaw_deg": profile_yaw, "closed_opening": closed_opening, "tiny_iod_px": tiny_iod},
        )
        self._detector: Landmarker3D | None = None
        self.last_statuses: list[str] = []
        self.last_fits: list[dict | None] = []
        self.status_counts: Counter = Counter()

    def _det(self) -> Landmarker3D:
        if self._detector is None:
            self._detector = Landmarker3D()
        return self._detector

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def reconstruct_one(self, img: np.ndarray):
        """(status, reconstruction or None) for one image."""
        return self.classify(self._det().detect_xyz(img))

    def classify(self, pts: np.ndarray | None):
        """(status, reconstruction or None) for (478, 3) landmark points, or None when no face was found."""
        if pts is None:
            return "no_face", None
        try:
            recon = reconstruct(pts, self.closed_opening)
        except (ValueError, np.linalg.LinAlgError):
            return "failed", None
        iod = float(np.linalg.norm(pts[[33, 133], :2].mean(0) - pts[[263, 362], :2].mean(0)))
        if iod < self.tiny_iod:
            return "tiny_face", recon
        if abs(recon.yaw) > self.profile_yaw:
            return "profile", recon
        if any(recon.closed.values()):
            return "eyes_closed", recon
        return "ok", recon

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        check_batch(images, "digital-mask")
        out = np.empty_like(images)
        statuses, fits = [], []
        h, w = images.shape[1:3]
        ss = self.supersample or (2 if max(h, w) <= 512 else 1)
        for i, img in enumerate(images):
            status, recon = self.reconstruct_one(img)
            if recon is not None:
                try:
                    out[i] = render(recon, (h, w), self.background, ss)
                    fits.append(recon.fit_errors())
                except (ValueError, np.linalg.LinAlgError, cv2.error):  # degenerate geometry (e.g. collapsed eyes)
                    status, recon = "failed", None
            if recon is None:
                out[i] = neutral((h, w), self.background)
                fits.append(None)
            statuses.append(status)
        self.last_statuses, self.last_fits = statuses, fits
        self.status_counts.update(statuses)
        return out
