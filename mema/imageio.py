"""Reading and writing images: one place for format rules and for atomic writes.

``read_rgb`` turns anything a user may hand us (grayscale, RGBA, CMYK, 16-bit, palette) into 8-bit
RGB and says what it converted; files it cannot use (zero bytes, corrupt, tiny, huge) raise
:class:`ImageFileError` naming the file. ``write_png`` writes through a temporary file and a rename,
so a killed process never leaves a torn image behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_SIDE = 32
MAX_PIXELS = 64_000_000  # ~8k x 8k; larger is refused before decoding (decompression bombs)


class ImageFileError(ValueError):
    """An image file that cannot be used, with the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    mode = img.mode
    if mode == "RGB":
        return img, None
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


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image, raising :class:`ImageFileError` on anything unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageFileError(path, "file does not exist") from None
    if size == 0:
        raise ImageFileError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                raise ImageFileError(path, f"image is {img.width}x{img.height}, over the {MAX_PIXELS} pixel limit")
            img.load()
    except ImageFileError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageFileError(path, f"not a readable image ({type(exc).__name__})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageFileError(path, f"corrupt or truncated image ({exc})") from None
    if min(img.size) < MIN_SIDE:
        raise ImageFileError(path, f"image is {img.width}x{img.height}; the smallest side must be >= {MIN_SIDE} px")
    return img


def read_rgb(path: str | Path) -> tuple[np.ndarray, str | None]:
    """Image as HxWx3 uint8 RGB, plus a note on any conversion made (None when it was RGB already)."""
    img = open_image(path)
    rgb, note = _to_rgb(img)
    return np.asarray(rgb, dtype=np.uint8).copy(), note


def png_bytes(array: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 HxW or HxWx3 array (fixed settings, so bytes are deterministic)."""
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8, got {array.dtype}")
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write via a temporary file and rename. Files get 0666 & ~umask (mkstemp alone would give 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | Path, array: np.ndarray) -> str:
    """Write ``array`` as PNG atomically; returns the sha256 of the bytes written."""
    data = png_bytes(array)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()
