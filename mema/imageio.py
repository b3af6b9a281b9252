"""Reading and writing images: one place for format rules and for atomic writes.

``read_rgb`` turns anything Pillow reads (PNG, JPEG, WebP, TIFF, BMP, ...; grayscale, RGBA, CMYK,
16-bit, palette) into upright 8-bit RGB and says what it converted: EXIF orientation is applied, so a
photo taken sideways is processed the way it is shown. Files it cannot use (zero bytes, corrupt,
truncated, tiny, huge, several frames) raise :class:`ImageFileError` naming the file. ``write_png``
writes through a temporary file and a rename, so a killed process never leaves a torn image behind;
it can add private PNG chunks, which :func:`png_chunk` reads back.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_SIDE = 32
MAX_PIXELS = 64_000_000  # ~8k x 8k; larger is refused before decoding (decompression bombs)
TMP_PREFIX = ".mema-tmp-"  # temporary files of atomic writes: hidden, and removable after a kill
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT = "mema_16_bit_rgb"
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}  # as ImageOps.exif_transpose


class ImageFileError(ValueError):
    """An image file that cannot be used, with the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    mode = img.mode
    if mode == "RGB":
        # Pillow decodes 16-bit-per-channel RGB (48-bit PNG, TIFF) to its high bytes; say so.
        return img, ("16-bit RGB reduced to 8-bit" if img.info.get(_SIXTEEN_BIT) else None)
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB"), f"{mode} (high bit depth) scaled to 8-bit RGB"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels go on mid grey, not black, so a detector still sees a face outline.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB"), f"{mode} alpha composited on grey"
    if mode == "CMYK":
        return img.convert("RGB"), "CMYK converted to RGB"
    if mode in ("L", "1", "P"):
        return img.convert("RGB"), f"{mode} converted to RGB"
    if mode.startswith("I;16") or mode == "RGB;16":
        return img.convert("RGB"), f"{mode} converted to RGB"
    return img.convert("RGB"), f"{mode} converted to RGB"


def _frames(img: Image.Image) -> int:
    return int(getattr(img, "n_frames", 1) or 1)


def open_image(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Open and fully decode an image (from ``data`` when given, else the file), raising
    :class:`ImageFileError` on anything unusable. EXIF orientation is not applied here (see read_rgb)."""
    path = Path(path)
    if data is None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageFileError(path, "file does not exist") from None
    else:
        size = len(data)
    if size == 0:
        raise ImageFileError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data) if data is not None else path)
            if img.width * img.height > MAX_PIXELS:
                raise ImageFileError(path, f"image is {img.width}x{img.height}, over the {MAX_PIXELS} pixel limit")
            # Several frames may be several photos (multi-page TIFF, animation): refuse rather than drop
            # some. MPO (camera JPEGs with a preview or depth frame) is one photo: its first frame.
            if _frames(img) > 1 and img.format != "MPO":
                raise ImageFileError(path, f"{img.format} file with {_frames(img)} frames (pages); give one image per file")
            raw = img.tile[0].args if img.tile else None  # the decoder's raw mode, gone after load()
            raw = raw[0] if isinstance(raw, tuple) and raw else raw
            img.load()
            if isinstance(raw, str) and ";16" in raw:
                img.info[_SIXTEEN_BIT] = True
    except ImageFileError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageFileError(path, f"not an image Pillow can read ({type(exc).__name__})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise ImageFileError(path, f"corrupt or truncated image ({exc})") from None
    if min(img.size) < MIN_SIDE:
        raise ImageFileError(path, f"image is {img.width}x{img.height}; the smallest side must be >= {MIN_SIDE} px")
    return img


def read_rgb(path: str | Path, data: bytes | None = None) -> tuple[np.ndarray, str | None]:
    """Upright image as HxWx3 uint8 RGB, plus a note on any conversion made (None when there was none)."""
    img = open_image(path, data)
    try:
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except (OSError, ValueError, TypeError, SyntaxError):  # unreadable EXIF: the pixels as stored
        orientation = 1
    try:
        rgb, note = _to_rgb(img)
    except (OSError, ValueError) as exc:
        raise ImageFileError(path, f"cannot convert {img.mode} to RGB ({exc})") from None
    turn = _ORIENTATIONS.get(orientation)
    if turn is not None:
        rgb = rgb.transpose(turn)
    notes = [n for n in (f"EXIF orientation {orientation} applied" if turn is not None else None, note) if n]
    return np.asarray(rgb, dtype=np.uint8).copy(), "; ".join(notes) or None


def png_bytes(array: np.ndarray, chunks: list[tuple[bytes, bytes]] | None = None, compress_level: int = 6) -> bytes:
    """Lossless PNG of a uint8 HxW or HxWx3 array (fixed settings, so bytes are deterministic), with
    ``chunks`` (type, data) placed before the image data."""
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8, got {array.dtype}")
    info = None
    if chunks:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for ctype, data in chunks:
            info.add(ctype, data)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level, pnginfo=info)
    return buf.getvalue()


def png_chunk(data: bytes, ctype: bytes) -> bytes | None:
    """The data of the first ``ctype`` chunk of PNG file bytes ``data``; None when it is not a PNG or has
    no such chunk. ValueError when that chunk is cut short or fails its CRC."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == ctype:
            body = data[pos + 8 : pos + 8 + length]
            crc = data[pos + 8 + length : pos + 12 + length]
            if len(body) != length or len(crc) != 4 or zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
                raise ValueError(f"the {ctype.decode()} chunk is damaged")
            return body
        if kind in (b"IDAT", b"IEND"):
            return None  # ours sit before the image data
        pos += 12 + length
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write via a temporary file and rename. Files get 0666 & ~umask (mkstemp alone would give 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | Path, array: np.ndarray, chunks: list[tuple[bytes, bytes]] | None = None) -> str:
    """Write ``array`` as PNG atomically; returns the sha256 of the bytes written."""
    data = png_bytes(array, chunks)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()
