"""Key-sealed originals: any method's output made restorable with the key that produced it.

A seal is the original, encrypted with deterministic authenticated encryption (AES-SIV, RFC 5297;
512-bit key from HKDF-SHA256 of the key's secret, one derived key per purpose) and carried with the
protected image. Two carriers share the cipher and the header:

* **Low bits** (:func:`seal`, :func:`open_seal`): for arrays, where nothing but pixels travels (the
  evaluation harness, the Python API). The original is coded losslessly (PNG) when that fits in the two
  low bits of every channel value, else as the highest-quality JPEG (4:4:4) in ``QUALITIES`` that fits,
  and written into those bits. Each value moves by at most 3 grey levels, so what recognisers and
  classifiers see is the protected face. The carrier's six high bits are associated data: an edited,
  re-encoded or perturbed image, and any other key, do not open.
* **Bytes** (:func:`seal_bytes`, :func:`open_bytes`): for files with room beside the pixels (the clinic
  tool's PNG chunk, :mod:`mema.photo`), where the original is kept bit-exact at any size.

Low-bit stream (row-major, channel-interleaved, two bits per value, most significant first):
``MAGIC`` (4 bytes), key id (8 bytes), ciphertext length (4 bytes, big-endian), ciphertext (16-byte SIV
tag first), zero bits to the end. The plaintext is a codec byte and the coded original, padded with zeros
to the whole capacity (decoders stop at their end marker), so the length is the same for every image of
a size and tells nothing about the original.

The key id is the key's public name (``mema keygen`` prints it; audit logs hold it): a truncated SHA-256
of the secret, from which nothing about the secret follows. Carrying it lets a wrong key be named as
such ("sealed with key id X") wherever the image goes. It also links images sealed under one key, which
is what a pseudonymous image is; ``mema release`` removes seals before images leave the clinic.
Sealing is deterministic: the same original, carrier and key give the same bytes.

:class:`Sealed` (or :func:`sealed`) wraps any method: ``anonymize`` is the method's output with the
original sealed into it; ``restore`` opens the seal and falls back to the method's own learned restore
only when it has one. Its ``MethodInfo`` says so (``params["reversibility"] = "sealed"``).
"""

from __future__ import annotations

import hashlib
import io
import weakref
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from PIL import Image

from mema.keys import Key, hkdf_sha256
from mema.methods import MethodError, MethodInfo, check_output

MAGIC = b"MRS2"
LEGACY_MAGIC = b"MRS1"  # ROFI 0.1 seals (no key id, JPEG only): still opened, never written
BITS = 2  # low bits per channel value that carry the stream
KEY_ID_BYTES = 8
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + 4
LEGACY_HEADER_BYTES = len(LEGACY_MAGIC) + 4
TAG_BYTES = 16
QUALITIES = (95, 92, 90, 85, 80, 70, 60, 50, 40)  # the first that fits is used
CODEC_PNG, CODEC_JPEG = b"P", b"J"
LOW_BITS_PURPOSE = b"mema-rofi-sealed-original-v1"  # the HKDF label of ROFI 0.1, so its seals keep opening
SEAL_WORKERS = 2  # JPEG/PNG coding and AES release the GIL


class SealError(ValueError):
    """The carrier is too small to hold even a low-quality copy of the original, or shapes disagree."""


@dataclass(frozen=True)
class Opened:
    """What opening a seal gave: the original, or why not (``reason`` is one line for a user)."""

    status: str  # "opened" | "no-seal" | "other-key" | "damaged"
    original: np.ndarray | None = None
    key_id: str | None = None  # the key id the image says sealed it (None: no seal or a legacy seal)
    lossless: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "opened"

    def reason(self, key: Key | None = None) -> str:
        if self.status == "opened":
            return "sealed original opened" + ("" if self.lossless else " (a JPEG copy, not bit-exact)")
        if self.status == "no-seal":
            return "carries no sealed original (never anonymized with a seal, or re-encoded or edited since)"
        if self.status == "other-key":
            mine = f"; this key is {key.key_id}" if key is not None else ""
            return f"sealed with key id {self.key_id}{mine}"
        if self.key_id is None:
            return "its seal does not open: another key, or the file changed since it was anonymized"
        return "its seal does not open with this key: the file changed since it was anonymized (edited, re-encoded or a bit flipped)"


def key_id_bytes(key: Key) -> bytes:
    return bytes.fromhex(key.key_id)


def _cipher(key: Key, purpose: bytes) -> AESSIV:
    return AESSIV(hkdf_sha256(key.secret, purpose, length=64))


def seal_bytes(plaintext: bytes, key: Key, associated: list[bytes], purpose: bytes) -> bytes:
    """AES-SIV ciphertext of ``plaintext`` bound to ``associated`` (deterministic)."""
    return _cipher(key, purpose).encrypt(plaintext, associated)


def open_bytes(ciphertext: bytes, key: Key, associated: list[bytes], purpose: bytes) -> bytes | None:
    """The plaintext, or None when ``key`` or ``associated`` differ from sealing or the bytes changed."""
    try:
        return _cipher(key, purpose).decrypt(ciphertext, associated)
    except (InvalidTag, ValueError):
        return None


# --- low-bit carrier -----------------------------------------------------------------------------

def capacity_bytes(shape: tuple[int, ...]) -> int:
    """Whole bytes the low bits of an image of ``shape`` hold."""
    return int(np.prod(shape)) * BITS // 8


def _carrier_digest(carrier: np.ndarray) -> bytes:
    high = carrier & np.uint8(0xFF ^ ((1 << BITS) - 1))
    return hashlib.sha256(np.ascontiguousarray(high).tobytes() + repr(carrier.shape).encode()).digest()


def _code(image: np.ndarray, budget: int) -> bytes:
    """Codec byte + the original: lossless when it fits, else the best JPEG that fits."""
    # PNG costs ~20 ms at 128 px and a natural face never fits in two bits per value; try it only when a
    # quick zlib of every 8th row says it may (PNG's filters rarely beat plain zlib by 2x).
    if len(zlib.compress(np.ascontiguousarray(image[::8]).tobytes(), 1)) * 8 <= 2 * budget:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "PNG", compress_level=6)
        if buf.tell() + 1 <= budget:
            return CODEC_PNG + buf.getvalue()
    for quality in QUALITIES:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=quality, subsampling=0)
        if buf.tell() + 1 <= budget:
            return CODEC_JPEG + buf.getvalue()
    raise SealError(f"a {image.shape[1]}x{image.shape[0]} carrier cannot hold a copy of the original")


def _to_symbols(data: bytes) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    return (bits.reshape(-1, BITS) * (1 << np.arange(BITS - 1, -1, -1))).sum(1).astype(np.uint8)


def _from_symbols(symbols: np.ndarray) -> bytes:
    bits = (symbols[:, None] >> np.arange(BITS - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).ravel()).tobytes()


def _low_stream(image: np.ndarray, nbytes: int | None = None) -> bytes:
    values = image.reshape(-1) if nbytes is None else image.reshape(-1)[: nbytes * 8 // BITS]
    return _from_symbols(values & np.uint8((1 << BITS) - 1))


def seal(carrier: np.ndarray, original: np.ndarray, key: Key) -> np.ndarray:
    """Return ``carrier`` (H, W, 3 uint8) with a sealed copy of ``original`` (same shape) in its low bits."""
    if (carrier.shape != original.shape or carrier.dtype != np.uint8 or original.dtype != np.uint8
            or carrier.ndim != 3 or carrier.shape[2] != 3):
        raise SealError("carrier and original must be (H, W, 3) uint8 images of the same shape")
    room = capacity_bytes(carrier.shape) - HEADER_BYTES - TAG_BYTES
    if room <= 1:
        raise SealError(f"a {carrier.shape[1]}x{carrier.shape[0]} carrier cannot hold a copy of the original")
    coded = _code(original, room)
    high = carrier & np.uint8(0xFF ^ ((1 << BITS) - 1))
    kid = key_id_bytes(key)
    ciphertext = seal_bytes(coded + bytes(room - len(coded)), key, [MAGIC + kid, _carrier_digest(carrier)], LOW_BITS_PURPOSE)
    stream = MAGIC + kid + len(ciphertext).to_bytes(4, "big") + ciphertext
    stream += bytes(-(-carrier.size * BITS // 8) - len(stream))  # a partial last byte when H x W x 3 is odd
    return high | _to_symbols(stream)[: carrier.size].reshape(carrier.shape)


def seal_magic(image: np.ndarray) -> bytes | None:
    """MAGIC or LEGACY_MAGIC when ``image``'s low bits start with a seal header, else None."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.size * BITS // 8 < HEADER_BYTES:
        return None
    head = _low_stream(image, len(MAGIC))
    return head if head in (MAGIC, LEGACY_MAGIC) else None


def sealed_key_id(image: np.ndarray) -> str | None:
    """The key id a low-bit seal names (None when there is none, or for a legacy seal)."""
    if seal_magic(image) != MAGIC:
        return None
    return _low_stream(image, HEADER_BYTES)[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES].hex()


def _decode(coded: bytes, shape: tuple) -> tuple[np.ndarray, bool] | None:
    try:
        restored = np.asarray(Image.open(io.BytesIO(coded)).convert("RGB"))
    except (OSError, ValueError):
        return None
    return (restored, coded[:8] == b"\x89PNG\r\n\x1a\n") if restored.shape == shape else None


def open_seal(image: np.ndarray, key: Key) -> Opened:
    """Open the low-bit seal of ``image`` with ``key``; says why when it does not open."""
    magic = seal_magic(image)
    if magic is None:
        return Opened("no-seal")
    stream = _low_stream(image)
    digest = _carrier_digest(image)
    if magic == LEGACY_MAGIC:
        n = int.from_bytes(stream[len(LEGACY_MAGIC) : LEGACY_HEADER_BYTES], "big")
        if not TAG_BYTES < n <= len(stream) - LEGACY_HEADER_BYTES:
            return Opened("damaged")
        plain = open_bytes(stream[LEGACY_HEADER_BYTES : LEGACY_HEADER_BYTES + n], key, [LEGACY_MAGIC, digest], LOW_BITS_PURPOSE)
        decoded = None if plain is None else _decode(plain, image.shape)
        return Opened("opened", decoded[0], None, False) if decoded else Opened("damaged")
    kid = stream[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES]
    if kid != key_id_bytes(key):
        return Opened("other-key", key_id=kid.hex())
    n = int.from_bytes(stream[len(MAGIC) + KEY_ID_BYTES : HEADER_BYTES], "big")
    if not TAG_BYTES < n <= len(stream) - HEADER_BYTES:
        return Opened("damaged", key_id=kid.hex())
    plain = open_bytes(stream[HEADER_BYTES : HEADER_BYTES + n], key, [MAGIC + kid, digest], LOW_BITS_PURPOSE)
    if plain is None or plain[:1] not in (CODEC_PNG, CODEC_JPEG):
        return Opened("damaged", key_id=kid.hex())
    decoded = _decode(plain[1:], image.shape)
    if decoded is None:
        return Opened("damaged", key_id=kid.hex())
    return Opened("opened", decoded[0], kid.hex(), decoded[1])


def unseal(image: np.ndarray, key: Key) -> np.ndarray | None:
    """The sealed original, or None when ``image`` carries no copy openable with ``key``."""
    return open_seal(image, key).original


def scrub(image: np.ndarray) -> np.ndarray:
    """``image`` with its low bits replaced by content-free noise when they carry a seal (else unchanged).

    The noise is seeded by the high bits, so scrubbing is deterministic and carries nothing of the seal."""
    if seal_magic(image) is None:
        return image
    high = image & np.uint8(0xFF ^ ((1 << BITS) - 1))
    seed = int.from_bytes(_carrier_digest(image)[:8], "big")
    noise = np.random.default_rng(seed).integers(0, 1 << BITS, image.shape, dtype=np.uint8)
    out = high | noise
    while seal_magic(out) is not None:  # 2^-32: never leave something that still looks sealed
        seed += 1
        out = high | np.random.default_rng(seed).integers(0, 1 << BITS, image.shape, dtype=np.uint8)
    return out


# --- the wrapper -----------------------------------------------------------------------------------

def learned_restore(method):
    """The method's own restore when it has one (for a :class:`Sealed`, the wrapped method's), else None."""
    inner = method.inner if isinstance(method, Sealed) else method
    if getattr(inner, "info", None) is not None and inner.info.reversible and callable(getattr(inner, "restore", None)):
        return inner.restore
    return None


class Sealed:
    """Any method with the original sealed into its output (see the module docstring).

    ``restore`` gives the sealed original where the key opens it; elsewhere the wrapped method's learned
    restore when it has one, or the protected image unchanged (nothing else is recoverable). Use
    :meth:`open` to learn, per image, whether and why not it opened. Other attributes (e.g. the
    differentiable ``restore_tensor`` that key-security attacks use) are the wrapped method's.
    """

    def __init__(self, inner, *, name: str | None = None, version: str | None = None, description: str | None = None):
        if isinstance(inner, Sealed):
            raise MethodError(f"method {inner.info.name!r} is sealed already")
        info = getattr(inner, "info", None)
        if not isinstance(info, MethodInfo) or not callable(getattr(inner, "anonymize", None)):
            raise MethodError("sealed() takes a method (needs .info: MethodInfo and .anonymize)")
        self.inner = inner
        self.fallback = "learned" if learned_restore(inner) is not None else "none"
        base = description if description is not None else info.description
        seal_text = ("the original sealed with AES-SIV in the two low bits (key id in the clear), opened by the same key"
                     + ("; otherwise the method's learned restore" if self.fallback == "learned" else "; nothing else restores"))
        self.info = MethodInfo(
            name=name or f"{info.name}-sealed", version=version or info.version, reversible=True, key_scheme="mema-key-v1",
            licence=info.licence, trained_on=info.trained_on, paper=info.paper,
            description=f"{base.rstrip('.')}; {seal_text}." if base else f"{seal_text[0].upper()}{seal_text[1:]}.",
            params={**info.params, "reversibility": "sealed", "seal": "AES-SIV, 2 low bits", "fallback": self.fallback},
        )
        self._pool = None

    def __getattr__(self, name):  # only called for attributes not found on the wrapper
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _map(self, fn, items) -> list:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=SEAL_WORKERS, thread_name_prefix="seal")
            weakref.finalize(self, self._pool.shutdown)
        return list(self._pool.map(fn, items))

    @staticmethod
    def _key(key) -> Key:
        if not isinstance(key, Key):
            raise MethodError("a sealed method needs a key (mema keygen KEYFILE, then --key KEYFILE)")
        return key

    def anonymize(self, images: np.ndarray, key: Key | None = None) -> np.ndarray:
        key = self._key(key)
        ids = [str(i) for i in range(len(images))]
        protected = check_output(self.inner.info.name, images, self.inner.anonymize(images, key=key), ids).copy()

        def one(i: int) -> np.ndarray:
            try:
                return seal(protected[i], images[i], key)
            except SealError:  # an original too detailed even as a coarse JPEG: left unsealed (open() says so)
                return protected[i]

        if len(protected):
            protected[:] = np.stack(self._map(one, range(len(protected))))
        return protected

    def open(self, images: np.ndarray, key: Key) -> list[Opened]:
        """Per image: the sealed original, or why it did not open."""
        key = self._key(key)
        return self._map(lambda img: open_seal(img, key), images)

    def opened(self, images: np.ndarray, key: Key) -> list[np.ndarray | None]:
        """Per image: the sealed original when ``key`` opens it, else None."""
        return [o.original for o in self.open(images, key)]

    def restore(self, images: np.ndarray, key: Key) -> np.ndarray:
        out = images.copy()
        closed = []
        for i, o in enumerate(self.open(images, key)):
            if o.ok:
                out[i] = o.original
            else:
                closed.append(i)
        learned = learned_restore(self.inner)
        if closed and learned is not None:
            ids = [str(i) for i in closed]
            out[closed] = check_output(self.inner.info.name, images[closed], learned(images[closed], key=key), ids, "restore")
        return out


def sealed(method, **kw) -> Sealed:
    """``method`` with its originals sealed into its outputs; a sealed method is returned as it is."""
    return method if isinstance(method, Sealed) else Sealed(method, **kw)
