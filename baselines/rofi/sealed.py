"""A key-sealed copy of the original carried in the two low bits of the protected image.

ROFI's neural restorer did not learn to invert the protector in a CPU training budget (restored PSNR
10.3 dB, same-person 3%; docs/rofi.md), so reversibility comes from a classical channel instead:
the original is JPEG-coded (4:4:4, the highest quality in ``QUALITIES`` that fits), encrypted with
deterministic authenticated encryption (AES-SIV, RFC 5297; 512-bit key from HKDF of the key's secret),
and written into the two least significant bits of every channel value of the protected image. Changing
those bits moves each value by at most 3 grey levels, so what recognisers and classifiers see is the
protected face. The carrier's six high bits are the associated data: a protected image that was edited,
re-encoded as JPEG or perturbed cannot be opened, and neither can any key but the one that sealed it.

Layout of the low-bit stream (row-major, channel-interleaved, two bits per value, most significant
first): ``MAGIC`` (4 bytes), ciphertext length (4 bytes, big-endian), ciphertext (16-byte SIV tag
first), then zero bits up to the last value. The plaintext is the JPEG padded with zeros to the whole
capacity (JPEG decoders stop at the end-of-image marker), so the length field is the same for every
image of a size and tells nothing about the original; MAGIC only says that an image carries a seal.
Sealing is deterministic: the same original, carrier and key give the same bytes.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from PIL import Image

from mema.keys import Key, hkdf_sha256

MAGIC = b"MRS1"
BITS = 2  # low bits per channel value that carry the stream
HEADER_BYTES = len(MAGIC) + 4
TAG_BYTES = 16
QUALITIES = (95, 92, 90, 85, 80, 70, 60, 50, 40)  # the first that fits is used


class SealError(ValueError):
    """The carrier is too small to hold even a low-quality copy of the original."""


def capacity_bytes(shape: tuple[int, ...]) -> int:
    """Whole bytes the low bits of an image of ``shape`` hold."""
    return int(np.prod(shape)) * BITS // 8


def _cipher(key: Key) -> AESSIV:
    return AESSIV(hkdf_sha256(key.secret, b"mema-rofi-sealed-original-v1", length=64))


def _carrier_digest(carrier: np.ndarray) -> bytes:
    high = carrier & np.uint8(0xFF ^ ((1 << BITS) - 1))
    return hashlib.sha256(np.ascontiguousarray(high).tobytes() + repr(carrier.shape).encode()).digest()


def _jpeg(image: np.ndarray, budget: int) -> bytes:
    for quality in QUALITIES:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=quality, subsampling=0)
        if buf.tell() <= budget:
            return buf.getvalue()
    raise SealError(f"a {image.shape[1]}x{image.shape[0]} carrier cannot hold a copy of the original")


def _to_symbols(data: bytes) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    return (bits.reshape(-1, BITS) * (1 << np.arange(BITS - 1, -1, -1))).sum(1).astype(np.uint8)


def _from_symbols(symbols: np.ndarray) -> bytes:
    bits = (symbols[:, None] >> np.arange(BITS - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).ravel()).tobytes()


def seal(carrier: np.ndarray, original: np.ndarray, key: Key) -> np.ndarray:
    """Return ``carrier`` (H, W, 3 uint8) with a sealed copy of ``original`` (same shape) in its low bits."""
    if (carrier.shape != original.shape or carrier.dtype != np.uint8 or original.dtype != np.uint8
            or carrier.ndim != 3 or carrier.shape[2] != 3):
        raise SealError("carrier and original must be (H, W, 3) uint8 images of the same shape")
    room = capacity_bytes(carrier.shape) - HEADER_BYTES - TAG_BYTES
    if room <= 0:
        raise SealError(f"a {carrier.shape[1]}x{carrier.shape[0]} carrier cannot hold a copy of the original")
    jpeg = _jpeg(original, room)
    high = carrier & np.uint8(0xFF ^ ((1 << BITS) - 1))
    ciphertext = _cipher(key).encrypt(jpeg + bytes(room - len(jpeg)), [MAGIC, _carrier_digest(carrier)])
    stream = MAGIC + len(ciphertext).to_bytes(4, "big") + ciphertext
    stream += bytes(-(-carrier.size * BITS // 8) - len(stream))  # a partial last byte when H x W x 3 is odd
    return high | _to_symbols(stream)[: carrier.size].reshape(carrier.shape)


def unseal(image: np.ndarray, key: Key) -> np.ndarray | None:
    """The sealed original, or None when ``image`` carries no copy openable with ``key``."""
    if image.dtype != np.uint8 or image.ndim != 3:
        return None
    stream = _from_symbols((image & np.uint8((1 << BITS) - 1)).ravel())
    if stream[: len(MAGIC)] != MAGIC:
        return None
    n = int.from_bytes(stream[len(MAGIC) : HEADER_BYTES], "big")
    if not TAG_BYTES < n <= len(stream) - HEADER_BYTES:
        return None
    try:
        jpeg = _cipher(key).decrypt(stream[HEADER_BYTES : HEADER_BYTES + n], [MAGIC, _carrier_digest(image)])
        restored = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    except (InvalidTag, OSError, ValueError):
        return None
    return restored if restored.shape == image.shape else None
