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
        ("text.jpg", lambda p: p.write_text("hello"), "not an image Pillow can read"),
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


def test_exif_orientation_is_applied_and_said(tmp_path):
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:5, :5] = 255  # a mark in the stored top-left corner
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out, note = read_rgb(tmp_path / "r.jpg")
    assert out.shape == (60, 40, 3) and "EXIF orientation 6 applied" in note
    assert out[:5, -5:].mean() > 200 and out[:5, :5].mean() < 50  # the mark is now top-right


@pytest.mark.parametrize("suffix,kw", [(".webp", {"lossless": True}), (".tif", {}), (".bmp", {}), (".gif", {})])
def test_other_pillow_formats_are_read(tmp_path, suffix, kw):
    arr = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    path = _save(tmp_path / f"x{suffix}", Image.fromarray(arr), **kw)
    out, _ = read_rgb(path)
    assert out.shape == (40, 50, 3)
    if suffix != ".gif":  # GIF is a palette format
        assert np.array_equal(out, arr)


def test_sixteen_bit_rgb_is_noted(tmp_path):
    import cv2

    arr = np.random.default_rng(4).integers(0, 65536, (40, 40, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), arr)
    out, note = read_rgb(tmp_path / "d.png")
    assert "16-bit RGB reduced to 8-bit" in note and np.array_equal(out, (arr[..., ::-1] >> 8).astype(np.uint8))


def test_several_frames_are_refused_not_dropped(tmp_path):
    frames = [Image.fromarray(np.full((40, 40, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "p.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageFileError, match="2 frames"):
        read_rgb(tmp_path / "p.tif")


def test_read_from_bytes_and_png_chunks(tmp_path):
    from mema.imageio import png_bytes, png_chunk

    arr = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    data = png_bytes(arr, [(b"teST", b"hello")])
    assert data == png_bytes(arr, [(b"teST", b"hello")])  # deterministic
    assert np.array_equal(read_rgb("mem.png", data)[0], arr)
    assert png_chunk(data, b"teST") == b"hello" and png_chunk(data, b"abCD") is None and png_chunk(b"GIF89a", b"teST") is None
    i = data.index(b"hello")
    with pytest.raises(ValueError, match="damaged"):
        png_chunk(data[:i] + b"jello" + data[i + 5 :], b"teST")  # CRC mismatch


def test_atomic_write_leaves_only_hidden_temporaries(tmp_path):
    from mema.imageio import TMP_PREFIX

    write_png(tmp_path / "a.png", np.zeros((40, 40, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"] and TMP_PREFIX.startswith(".")
