import numpy as np
import pytest
from PIL import Image

from mema.imageio import ImageFileError, read_rgb, write_png


def _save(path, img, **kw):
    img.save(path, **kw)
    return path


def test_rgb_png_round_trip_is_lossless(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    sha = write_png(tmp_path / "a.png", arr)
    out, note = read_rgb(tmp_path / "a.png")
    assert note is None and np.array_equal(out, arr) and len(sha) == 64
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


@pytest.mark.parametrize(
    "mode,expect",
    [("L", "L converted"), ("RGBA", "alpha composited"), ("CMYK", "CMYK converted"), ("I;16", "high bit depth"), ("P", "P converted")],
)
def test_conversions_are_reported(tmp_path, mode, expect):
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 15).astype(np.uint16))
    else:
        img = base.convert(mode)
    path = _save(tmp_path / ("x.tif" if mode == "CMYK" else "x.png"), img)
    out, note = read_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert expect in note


def test_sixteen_bit_scaled_not_clipped(tmp_path):
    img = Image.fromarray(np.full((40, 40), 65535, np.uint16))
    out, _ = read_rgb(_save(tmp_path / "w.png", img))
    assert out.min() == 255


@pytest.mark.parametrize(
    "name,make,reason",
    [
        ("empty.png", lambda p: p.write_bytes(b""), "0 bytes"),
        ("corrupt.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nnot really"), "corrupt"),
        ("text.jpg", lambda p: p.write_text("hello"), "not a readable image"),
        ("tiny.png", lambda p: Image.new("RGB", (8, 8)).save(p), "smallest side"),
        ("missing.png", lambda p: None, "does not exist"),
    ],
)
def test_unusable_files_name_the_file(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageFileError) as info:
        read_rgb(path)
    assert name in str(info.value) and reason in str(info.value)


def test_truncated_png(tmp_path):
    path = tmp_path / "t.png"
    write_png(path, np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageFileError, match="t.png"):
        read_rgb(path)


def test_huge_image_refused_before_decoding(tmp_path, monkeypatch):
    import mema.imageio as mi

    monkeypatch.setattr(mi, "MAX_PIXELS", 100 * 100)
    path = _save(tmp_path / "big.png", Image.new("RGB", (200, 200)))
    with pytest.raises(ImageFileError, match="pixel limit"):
        read_rgb(path)
