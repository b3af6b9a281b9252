"""Whole photos: every face anonymized at the method's resolution and pasted back; the sealed container.

Anonymizing a photo:
1. :class:`~mema.faces.detection.FaceDetector` finds every face (five landmarks each).
2. Each face is aligned to MeMa's crop framing (a similarity transform of its five points onto
   ``TEMPLATE``, the framing of the corpus the methods are trained on) and cut out at the method's size.
3. The method anonymizes all crops; each is warped back into the full-resolution frame and blended in
   with a feathered square mask. Pixels outside the faces' regions are not touched.
4. For a reversible method (or ``--seal``), the original pixels of every region are sealed with the key
   (:mod:`mema.sealing`, AES-SIV) into a private PNG chunk, ``meMA``, beside the pixels.

The chunk says, in the clear, the method, the face regions and the key id that sealed it (the key's public
name, nothing about its secret); its ciphertext is bound to every pixel of the image, so an edited or
re-encoded file (one flipped bit) does not open, and a wrong key is named as such. Restoring pastes the
sealed regions back: the full-resolution original, bit-exact, 8-bit RGB and upright as it was anonymized.
A released image (``mema release``) keeps the chunk's public part only (state ``released``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mema.imageio import png_chunk
from mema.keys import Key

CHUNK = b"meMA"  # ancillary, private, unsafe to copy: editors that change the pixels must drop it
MAGIC = b"MPH1"
PURPOSE = b"mema-photo-seal-v1"
FORMAT = "mema-photo-1"  # PhotoHeader.format
DEFAULT_SIZE = 128  # methods that do not declare a crop size get MeMa's
# MeMa's crop framing: YuNet's five points on the corpus faces (mean over 97 of 100 DCGAN faces, 128 px).
TEMPLATE = np.array([[44.1, 59.5], [83.0, 59.4], [62.4, 82.7], [48.1, 103.7], [80.1, 103.9]]) / 128.0
FEATHER = 0.12  # of the crop side: the band over which a pasted face fades into the photo


class PhotoError(ValueError):
    """A photo that cannot be processed or restored; the message is one line."""


@dataclass(frozen=True)
class Region:
    """One face: ``matrix`` maps photo (x, y, 1) to crop pixels; ``box`` (y0, x0, y1, x1) holds every
    photo pixel the pasted crop may change."""

    matrix: tuple[float, ...]  # 2 x 3, row-major
    box: tuple[int, int, int, int]

    @property
    def m(self) -> np.ndarray:
        return np.array(self.matrix, np.float64).reshape(2, 3)

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel."""
        return float(np.hypot(*self.m[0, :2]))


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking ``src`` points onto ``dst`` (2 x 3)."""
    ms, md = src.mean(0), dst.mean(0)
    zs = (src - ms) @ np.array([1, 1j])
    zd = (dst - md) @ np.array([1, 1j])
    a = (np.conj(zs) @ zd) / max(float((np.conj(zs) @ zs).real), 1e-12)
    rot = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def _invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def region_for(points: np.ndarray, size: int, shape: tuple[int, int]) -> Region:
    """The region of a face with five ``points`` in a photo of ``shape`` (H, W), for crops of ``size``."""
    m = _similarity(np.asarray(points, np.float64), TEMPLATE * size)
    scale = float(np.hypot(*m[0, :2]))
    if not np.isfinite(m).all() or not 1e-3 < scale < 1e3:
        raise PhotoError("a detected face could not be aligned (its landmarks are degenerate)")
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    inv = _invert(m)
    photo = corners @ inv[:, :2].T + inv[:, 2]
    h, w = shape
    x0, y0 = np.floor(photo.min(0)).astype(int) - 1
    x1, y1 = np.ceil(photo.max(0)).astype(int) + 2
    box = (max(0, int(y0)), max(0, int(x0)), min(h, int(y1)), min(w, int(x1)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise PhotoError("a detected face lies outside the photo")
    return Region(tuple(float(v) for v in m.ravel()), box)


def find_regions(rgb: np.ndarray, detector, size: int) -> list[Region]:
    return [region_for(f.points, size, rgb.shape[:2]) for f in detector.detect(rgb)]


def crop(rgb: np.ndarray, region: Region, size: int) -> np.ndarray:
    """The face of ``region`` at the method's ``size``; area-averaged first when shrinking a lot."""
    m = region.m
    k = 1.0 / region.scale  # photo pixels per crop pixel
    if k >= 2.0:
        f = int(k)
        inv = _invert(m)
        corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64) @ inv[:, :2].T + inv[:, 2]
        x0, y0 = np.floor(corners.min(0)).astype(int) - f
        x1, y1 = np.ceil(corners.max(0)).astype(int) + f
        h, w = rgb.shape[:2]
        patch = rgb[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
        patch = cv2.copyMakeBorder(patch, max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w), cv2.BORDER_REFLECT_101)
        small = cv2.resize(patch, (max(1, patch.shape[1] // f), max(1, patch.shape[0] // f)), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / patch.shape[1], small.shape[0] / patch.shape[0]
        # crop = m @ (x0 + u / sx, y0 + v / sy, 1)
        m = np.hstack([m[:, :2] @ np.diag([1 / sx, 1 / sy]), (m[:, :2] @ np.array([x0, y0]) + m[:, 2])[:, None]])
        src = small
    else:
        src = rgb
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _mask(size: int) -> np.ndarray:
    band = max(1.0, FEATHER * size)
    d = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size))
    ramp = np.clip(d / band, 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.outer(ramp, ramp).astype(np.float32)


def paste(rgb: np.ndarray, faces: np.ndarray, regions: list[Region]) -> np.ndarray:
    """``rgb`` with each crop of ``faces`` warped into its region and feathered in; other pixels untouched."""
    out = rgb.copy()
    for face, region in zip(faces, regions):
        y0, x0, y1, x1 = region.box
        m = region.m
        k = 1.0 / region.scale
        src, mask = face, _mask(face.shape[0])
        if k < 0.67:  # the face is smaller in the photo than the crop: shrink by area first
            side = max(2, int(round(face.shape[0] * k * 1.5)))
            f = side / face.shape[0]
            src = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (side, side), interpolation=cv2.INTER_AREA)
            m = m * f
        # box pixel (u, v) is photo pixel (x0 + u, y0 + v); its crop coordinates are m @ (x0 + u, y0 + v, 1)
        mb = np.hstack([m[:, :2], (m[:, :2] @ np.array([x0, y0]) + m[:, 2])[:, None]])
        size = (x1 - x0, y1 - y0)
        warped = cv2.warpAffine(src, mb, size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(mask, mb, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]
        patch = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(np.round(alpha * warped.astype(np.float32) + (1.0 - alpha) * patch), 0, 255).astype(np.uint8)
    return out


# --- the container -----------------------------------------------------------------------------------

class RegionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    matrix: list[float] = Field(min_length=6, max_length=6)
    box: list[int] = Field(min_length=4, max_length=4)


class PhotoHeader(BaseModel):
    """The clear part of the chunk. ``released`` headers keep only format, state, method and faces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["mema-photo-1"]
    state: Literal["anonymized", "released"]
    method: str
    method_version: str
    faces: int = Field(ge=0)
    shape: list[int] | None = None
    regions: list[RegionRecord] | None = None
    key_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    sealed: bool = False

    def canonical(self) -> bytes:
        return json.dumps(self.model_dump(exclude_none=True), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Container:
    """The public part of a protected photo's chunk, and its ciphertext (empty when not sealed)."""

    header: PhotoHeader
    header_bytes: bytes  # as stored: the associated data of the ciphertext
    ciphertext: bytes

    @property
    def state(self) -> str:
        return self.header.state

    @property
    def key_id(self) -> str | None:
        return self.header.key_id

    @property
    def sealed(self) -> bool:
        return self.header.sealed

    @property
    def method(self) -> tuple[str, str]:
        return self.header.method, self.header.method_version

    def regions(self) -> list[Region]:
        return [Region(tuple(float(v) for v in r.matrix), tuple(int(v) for v in r.box)) for r in self.header.regions or []]


def _pixels_digest(pixels: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes() + repr(pixels.shape).encode()).digest()


def _pack(header: PhotoHeader, ciphertext: bytes = b"") -> bytes:
    hb = header.canonical()
    return MAGIC + len(hb).to_bytes(4, "big") + hb + ciphertext


def container_chunk(pixels: np.ndarray, original: np.ndarray, regions: list[Region], *, method: tuple[str, str],
                    key: Key | None, seal: bool) -> bytes:
    """The chunk for protected ``pixels`` made from ``original`` (same shape); sealed when ``seal``."""
    from mema.sealing import seal_bytes

    if seal and key is None:
        raise PhotoError("sealing needs a key")
    header = PhotoHeader(format=FORMAT, state="anonymized", method=method[0], method_version=method[1], faces=len(regions),
                         shape=list(pixels.shape[:2]), regions=[RegionRecord(matrix=list(r.matrix), box=list(r.box)) for r in regions],
                         key_id=key.key_id if seal else None, sealed=bool(seal))
    if not seal:
        return _pack(header)
    # Raw pixels: the ciphertext's length then follows from the regions alone, not from the photo's content.
    plaintext = b"".join(np.ascontiguousarray(original[y0:y1, x0:x1]).tobytes() for y0, x0, y1, x1 in (r.box for r in regions))
    return _pack(header, seal_bytes(plaintext, key, [MAGIC, header.canonical(), _pixels_digest(pixels)], PURPOSE))


def released_chunk(container: Container | None, faces: int | None = None) -> bytes:
    """The public marker a released image keeps: that mema anonymized it, with which method; no seal, no key id."""
    name, version = container.method if container is not None else ("", "")
    n = container.header.faces if container is not None else int(faces or 0)
    return _pack(PhotoHeader(format=FORMAT, state="released", method=name, method_version=version, faces=n))


def read_container(file_bytes: bytes) -> Container | None:
    """The container of a PNG's bytes; None when it has none. PhotoError when the chunk is damaged."""
    try:
        data = png_chunk(file_bytes, CHUNK)
    except ValueError:
        raise PhotoError("its mema seal is damaged (the file was changed or cut short)") from None
    if data is None:
        return None
    if data[:4] != MAGIC or len(data) < 8:
        raise PhotoError("its mema chunk is not one this version reads")
    n = int.from_bytes(data[4:8], "big")
    hb = data[8 : 8 + n]
    try:
        header = PhotoHeader.model_validate_json(hb)
    except ValidationError:
        raise PhotoError("its mema chunk is not one this version reads (or it was edited)") from None
    return Container(header, hb, data[8 + n :])


def open_container(pixels: np.ndarray, container: Container, key: Key) -> np.ndarray:
    """The original photo: the sealed regions pasted back. PhotoError with the reason when it does not open."""
    from mema.sealing import open_bytes

    if container.state == "released":
        raise PhotoError("a released image: its seal was removed (mema release), so nothing restores it")
    if not container.sealed:
        name = container.method[0] or "its method"
        raise PhotoError(f"anonymized with {name}, which is not reversible, without --seal: it carries no original")
    if container.key_id != key.key_id:
        raise PhotoError(f"sealed with key id {container.key_id}; this key is {key.key_id}")
    if list(pixels.shape[:2]) != container.header.shape:
        raise PhotoError("its size differs from the sealed photo's (resized or edited since it was anonymized)")
    plain = open_bytes(container.ciphertext, key, [MAGIC, container.header_bytes, _pixels_digest(pixels)], PURPOSE)
    if plain is None:
        raise PhotoError("its seal does not open: the file changed since it was anonymized (edited, re-encoded or a bit flipped)")
    out = pixels.copy()
    pos = 0
    for y0, x0, y1, x1 in (r.box for r in container.regions()):
        n = (y1 - y0) * (x1 - x0) * 3
        if pos + n > len(plain):
            raise PhotoError("its seal is inconsistent with its regions")
        out[y0:y1, x0:x1] = np.frombuffer(plain[pos : pos + n], np.uint8).reshape(y1 - y0, x1 - x0, 3)
        pos += n
    if pos != len(plain):
        raise PhotoError("its seal is inconsistent with its regions")
    return out
