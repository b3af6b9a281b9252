"""Digital FaceDefender (Tan et al., JMIR 2025), irreversible: the patient's eyes on a matched avatar.

Per photo: MediaPipe landmarks; sex and age from the offline estimator; the avatar of that sex and age
band (``facedefender_bank``) that fits the patient's periocular landmarks best; a similarity (affine
without shear) transform between the two faces fitted on the eye and brow landmarks; the patient's
periocular region (convex hulls of the eye, brow and under-eye landmarks of each eye) colour-corrected
to the avatar (the blurred-ratio RGB correction the paper cites, Earl 2015) and pasted with a feathered
mask, whose seam is then Gaussian-blurred. The composite is formed in the patient's pixel frame (the
avatar is moved onto the patient), so eyes stay where they were. Deviations: docs/methods/facedefender.md.

Per-sample status (``last_statuses``; ``status_counts`` over the method's lifetime):

    ok            fused
    eyes_closed   fused (the closed eyes are the patient's own pixels); a lid gap < 8% of the eye width
    profile       fused, but |yaw| > 45 degrees: the far eye's region is mostly guessed by MediaPipe
    tiny_face     fused; inter-ocular distance < 12 px
    no_face       no landmarks: the bank's default avatar, resized to the input (no pixel of the input)

``last_avatars`` and ``last_cells`` say which avatar and (sex, age band) cell each sample used.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from mema.baselines.digital_mask import check_batch
from mema.baselines.facedefender_bank import (
    IMAGE_SUFFIXES,
    AvatarBank,
    BankConfig,
    bank_from_folder,
    build_bank,
    cell_name,
    estimate_sex_age,
    folder_fingerprint,
)
from mema.methods import MethodInfo, register

# The periocular region, per eye (image sides; "left" is the subject's right eye). The paper names 52
# landmarks "within the eye and periocular regions, including the eyelids, eye sockets, irises, and brow
# arches" without listing them; the authors' public code (github.com/GreatFishbig/Digital-Face-Defender,
# tools.py) builds the fused region from these eye, brow and under-eye indices (50 entries; 8 and 168 on
# the nose bridge belong to both eyes) and measures from the two iris centres: 50 + 2 = 52.
PERIOCULAR = {
    "left": {"eye": (130, 110, 23, 26, 133, 157, 158, 159, 160), "brow": (113, 70, 63, 105, 66, 107),
             "below": (124, 35, 31, 228, 229, 230, 231, 232, 245, 168, 8)},
    "right": {"eye": (362, 256, 253, 339, 359, 387, 385, 384, 398), "brow": (336, 296, 334, 293, 276),
              "below": (8, 168, 465, 453, 452, 451, 450, 449, 261, 265)},
}
IRIS_CENTRES = (468, 473)
# Eye and brow points (not the under-eye zone) align the two faces, as in the authors' code.
ALIGN_POINTS = tuple(i for side in PERIOCULAR.values() for i in side["eye"] + side["brow"])
BANK_ENV = "MEMA_FACEDEFENDER_BANK"


def similarity_lsq(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (scale, rotation, translation) mapping src onto dst (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s * s).sum()
    if var <= 1e-12:
        raise ValueError("degenerate point set")
    u, sig, vt = np.linalg.svd(d.T @ s)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, sign]) @ vt
    scale = (sig * np.array([1.0, sign])).sum() / var
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _iod(pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts[[33, 133]].mean(0) - pts[[263, 362]].mean(0)))


def periocular_mask(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 {0, 1}: the convex hull of each eye's eye, brow and under-eye landmarks."""
    mask = np.zeros(shape, np.float32)
    for side in PERIOCULAR.values():
        idx = list(side["eye"] + side["brow"] + side["below"])
        hull = cv2.convexHull(np.round(pts[idx] * 4).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_8, shift=2)
    return mask


def _odd(x: float) -> int:
    k = max(3, int(round(x)))
    return k if k % 2 else k + 1


def avatar_onto_patient(avatar: np.ndarray, a_pts: np.ndarray, p_pts: np.ndarray, shape: tuple[int, int]):
    """(the avatar warped into the patient's frame, the 2x3 similarity used): fitted on eye and brow points."""
    m = similarity_lsq(a_pts[list(ALIGN_POINTS)].astype(np.float64), p_pts[list(ALIGN_POINTS)].astype(np.float64))
    return cv2.warpAffine(avatar, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101), m


def fusion_mask(p_pts: np.ndarray, a_pts_in_patient: np.ndarray, shape: tuple[int, int], feather: float) -> np.ndarray:
    """(H, W) soft mask in [0, 1]: the patient's periocular hulls and the avatar's own (so none of the avatar's
    eyes survive), grown by the feather width and then softened with it (``feather`` in inter-ocular units)."""
    mask = np.maximum(periocular_mask(p_pts, shape), periocular_mask(a_pts_in_patient, shape))
    sig = max(feather * _iod(p_pts), 0.5)
    mask = (cv2.GaussianBlur(mask, (0, 0), sig) > 1e-3).astype(np.float32)
    return cv2.GaussianBlur(mask, (0, 0), sig)


def fuse(patient: np.ndarray, p_pts: np.ndarray, avatar: np.ndarray, a_pts: np.ndarray,
         colour_blur: float = 0.6, feather: float = 0.06, seam: float = 0.05) -> np.ndarray:
    """The patient's periocular region on the avatar, in the patient's frame. Sizes are in inter-ocular units."""
    h, w = patient.shape[:2]
    warped, m = avatar_onto_patient(avatar, a_pts, p_pts, (h, w))
    warped = warped.astype(np.float64)
    iod = _iod(p_pts)
    mask = fusion_mask(p_pts, _apply(m, a_pts), (h, w), feather)[..., None].astype(np.float64)
    # RGB colour correction: the patient's pixels scaled by the ratio of local (blurred) colours
    k = _odd(colour_blur * iod)
    pat = patient.astype(np.float64)
    blur_a = cv2.GaussianBlur(warped, (k, k), 0)
    blur_p = cv2.GaussianBlur(pat, (k, k), 0)
    blur_p += 128.0 * (blur_p <= 1.0)
    corrected = np.clip(pat * blur_a / blur_p, 0, 255)
    out = warped * (1 - mask) + corrected * mask
    # Gaussian blur on the seam only
    band = np.clip(4 * mask * (1 - mask), 0, 1)
    soft = cv2.GaussianBlur(out, (0, 0), max(seam * iod, 0.5))
    out = out * (1 - band) + soft * band
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _alignment_residual(p_pts: np.ndarray, a_pts: np.ndarray) -> float:
    src, dst = a_pts[list(ALIGN_POINTS)].astype(np.float64), p_pts[list(ALIGN_POINTS)].astype(np.float64)
    return float(np.linalg.norm(_apply(similarity_lsq(src, dst), src) - dst, axis=1).mean())


@register("facedefender")
class FaceDefender:
    def __init__(self, bank_dir: str | Path | None = None, bank: BankConfig | None = None, progress: bool = True,
                 colour_blur: float = 0.6, feather: float = 0.06, seam: float = 0.05,
                 profile_yaw: float = 45.0, closed_opening: float = 0.08, tiny_iod: float = 12.0):
        folder = bank_dir or os.environ.get(BANK_ENV) or None
        self._folder = Path(folder).expanduser() if folder else None
        self._bank_cfg = bank or BankConfig()
        self._bank: AvatarBank | None = None
        self.progress = progress
        self.colour_blur, self.feather, self.seam = colour_blur, feather, seam
        self.profile_yaw, self.closed_opening, self.tiny_iod = profile_yaw, closed_opening, tiny_iod
        if self._folder is not None:
            if not self._folder.is_dir():
                raise ValueError(f"{BANK_ENV} / bank_dir is not a folder")
            if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in self._folder.iterdir()):
                raise ValueError(f"{BANK_ENV} / bank_dir holds no images ({', '.join(IMAGE_SUFFIXES)})")
            source = f"folder:{folder_fingerprint(self._folder)}"
        else:
            source = f"dcgan:{self._bank_cfg.fingerprint()}"
        self.info = MethodInfo(
            name="facedefender", version="1.0", reversible=False, key_scheme="none",
            licence="Apache-2.0 (code); the default avatars come from a DCGAN trained on DigiFace-1M: research-only (non-commercial)",
            paper="Tan et al. 2025, J Med Internet Res 27:e66873 (Digital FaceDefender)",
            trained_on="nothing trained; avatar bank from the DCGAN face generator labelled by the offline Cydral age/gender "
                       "estimator; no MeMa split used or tuned on",
            description="Patient's periocular region (eyes, brows, under-eye) similarity-warped onto an age- and sex-matched "
                        "synthetic avatar, RGB colour-corrected, feathered and seam-blurred; no face -> the default avatar.",
            params={"avatar_bank": source, "per_cell": self._bank_cfg.per_cell if self._folder is None else 0,
                    "colour_blur_iod": colour_blur, "feather_iod": feather, "seam_blur_iod": seam,
                    "profile_yaw_deg": profile_yaw, "closed_opening": closed_opening, "tiny_iod_px": tiny_iod},
        )
        self._assess = None
        self.last_statuses: list[str] = []
        self.last_avatars: list[str] = []
        self.last_cells: list[str] = []
        self.status_counts: Counter = Counter()

    @property
    def bank(self) -> AvatarBank:
        if self._bank is None:
            self._bank = bank_from_folder(self._folder, self.progress) if self._folder else build_bank(self._bank_cfg, self.progress)
        return self._bank

    def _tools(self):
        if self._assess is None:
            from mema.baselines.digital_mask_model import Landmarker3D
            from mema.generation.age_gender import OfflineEstimator

            self._assess = (Landmarker3D(), OfflineEstimator())
        return self._assess

    def close(self) -> None:
        if self._assess is not None:
            self._assess[0].close()
            self._assess = None

    def _status(self, pts: np.ndarray) -> str:
        from mema.baselines.digital_mask_model import face_frame, fit_eyelids, head_angles

        if _iod(pts[:, :2]) < self.tiny_iod:
            return "tiny_face"
        try:
            if abs(head_angles(face_frame(pts))[0]) > self.profile_yaw:
                return "profile"
            if min(fit_eyelids(pts[:, :2], s).opening for s in ("left", "right")) < self.closed_opening:
                return "eyes_closed"
        except (ValueError, np.linalg.LinAlgError):
            pass  # degenerate eyes still fuse: the region is built from the hull, not from the lid fit
        return "ok"

    def _one(self, img: np.ndarray) -> tuple[np.ndarray, str, str, str]:
        det, est = self._tools()
        bank = self.bank
        h, w = img.shape[:2]
        pts = det.detect_xyz(img)
        if pts is None:
            a = bank.default()
            return cv2.resize(a.image, (w, h), interpolation=cv2.INTER_AREA if a.image.shape[0] > h else cv2.INTER_CUBIC), "no_face", a.id, ""
        sex, age = estimate_sex_age(est, img, pts)
        candidates, cell = bank.lookup(sex, age)
        p2 = pts[:, :2]
        best = min(candidates, key=lambda a: _alignment_residual(p2, a.points))
        out = fuse(img, p2, best.image, best.points, self.colour_blur, self.feather, self.seam)
        return out, self._status(pts), best.id, cell_name(*cell)

    def anonymize(self, images: np.ndarray, key: bytes | None = None) -> np.ndarray:
        check_batch(images, "facedefender")
        out = np.empty_like(images)
        statuses, avatars, cells = [], [], []
        for i, img in enumerate(images):
            out[i], status, aid, cell = self._one(img)
            statuses.append(status), avatars.append(aid), cells.append(cell)
        self.last_statuses, self.last_avatars, self.last_cells = statuses, avatars, cells
        self.status_counts.update(statuses)
        return out
