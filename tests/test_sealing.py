"""The seal (mema.sealing): low-bit and byte carriers, the key id it names, the Sealed wrapper, ROFI's use of it,
and the clinic's photo container (mema.photo)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mema.keys import key_from_seed
from mema.methods import MethodError
from mema.sealing import (HEADER_BYTES, LEGACY_MAGIC, LOW_BITS_PURPOSE, MAGIC, Sealed, SealError, capacity_bytes, open_seal, scrub,
                          seal, seal_bytes, seal_magic, sealed, sealed_key_id, unseal)
from tests.toy_methods import KeyedBlend

KEY, OTHER = key_from_seed(1), key_from_seed(2)


def _pair(shape=(128, 128, 3), seed=0):
    rng = np.random.default_rng(seed)
    carrier = rng.integers(0, 256, shape, dtype=np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    original = np.stack([(yy * 2) % 256, (xx * 2) % 256, (yy + xx) % 256], -1).astype(np.uint8)
    return carrier, original


def _photo_like(shape=(128, 128, 3), seed=0):
    """Smooth content with sensor-like noise: a JPEG fits, a lossless copy does not."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = np.stack([100 + 50 * np.sin(xx / 9), 120 + 40 * np.cos(yy / 7), 90 + 30 * np.sin((xx + yy) / 11)], -1)
    return np.clip(base + np.random.default_rng(seed).normal(0, 2, shape), 0, 255).astype(np.uint8)


def test_low_bit_seal_opens_only_with_its_key_and_names_that_key():
    carrier, original = _pair()
    original = _photo_like()
    s = seal(carrier, original, KEY)
    assert np.array_equal(s, seal(carrier, original, KEY))  # deterministic
    assert np.abs(s.astype(int) - carrier).max() <= 3 and np.array_equal(s & 0xFC, carrier & 0xFC)
    assert seal_magic(s) == MAGIC and sealed_key_id(s) == KEY.key_id
    opened = open_seal(s, KEY)
    assert opened.ok and opened.key_id == KEY.key_id and not opened.lossless
    assert np.abs(opened.original.astype(int) - original).mean() < 4
    wrong = open_seal(s, OTHER)
    assert wrong.status == "other-key" and wrong.original is None and wrong.key_id == KEY.key_id
    assert f"sealed with key id {KEY.key_id}; this key is {OTHER.key_id}" == wrong.reason(OTHER)
    assert unseal(s, OTHER) is None and open_seal(carrier, KEY).status == "no-seal" and unseal(carrier, KEY) is None


def test_the_header_says_nothing_about_the_secret_or_the_original():
    carrier, original = _pair()
    a = seal(carrier, original, KEY)
    b = seal(carrier, np.full_like(original, 128), KEY)
    n = HEADER_BYTES * 8 // 2  # values holding MAGIC, key id and length
    assert np.array_equal(a.ravel()[:n] & 3, b.ravel()[:n] & 3)  # the same for every original of this size
    stream_head = bytes(np.packbits(((a.ravel()[:n, None] >> np.array([1, 0])) & 1).astype(np.uint8).ravel()))
    assert stream_head[4:12] == bytes.fromhex(KEY.key_id) and KEY.secret[:8] not in stream_head


@pytest.mark.parametrize("where", ["high bit", "low bit", "key id"])
def test_a_changed_image_does_not_open(where):
    carrier, original = _pair()
    s = seal(carrier, original, KEY)
    if where == "high bit":
        s[60, 60, 1] ^= 0x10  # associated data no longer match
    elif where == "low bit":
        s[20, 0, 0] ^= 0x01  # inside the ciphertext
    else:
        s[0, 6, 2] ^= 0x01  # value 20, inside the key id field: the right key no longer matches it
    o = open_seal(s, KEY)
    assert not o.ok and o.status in ("damaged", "other-key")
    if where != "key id":
        assert o.status == "damaged" and "changed since it was anonymized" in o.reason(KEY)


def test_lossless_when_it_fits_else_the_best_jpeg():
    flat = np.full((64, 64, 3), 77, np.uint8)
    flat[10:20, 10:30] = (200, 10, 30)
    carrier = np.random.default_rng(1).integers(0, 256, flat.shape, dtype=np.uint8)
    o = open_seal(seal(carrier, flat, KEY), KEY)
    assert o.ok and o.lossless and np.array_equal(o.original, flat)
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(SealError):
        seal(carrier, noise, KEY)  # not even a coarse JPEG fits
    with pytest.raises(SealError):
        seal(carrier[:8, :8], flat[:8, :8], KEY)
    with pytest.raises(SealError, match=r"\(H, W, 3\)"):
        seal(carrier[..., 0], flat[..., 0], KEY)
    assert capacity_bytes((128, 128, 3)) == 128 * 128 * 3 * 2 // 8


def test_any_height_and_width():
    carrier, original = _pair()
    original = _photo_like()
    for shape in ((127, 127, 3), (101, 102, 3), (63, 65, 3)):
        c, o = carrier[: shape[0], : shape[1]], original[: shape[0], : shape[1]]
        back = unseal(seal(c, o, KEY), KEY)
        assert back is not None and back.shape == shape and np.abs(back.astype(int) - o).mean() < 4


def _legacy_seal(carrier, original, key):
    """ROFI 0.1's format (MRS1: no key id, JPEG only), as it was written, to check old files still open."""
    from mema.sealing import _carrier_digest, _to_symbols

    room = capacity_bytes(carrier.shape) - 8 - 16
    buf = io.BytesIO()
    Image.fromarray(original).save(buf, "JPEG", quality=60, subsampling=0)
    jpeg = buf.getvalue()
    ct = seal_bytes(jpeg + bytes(room - len(jpeg)), key, [LEGACY_MAGIC, _carrier_digest(carrier)], LOW_BITS_PURPOSE)
    stream = LEGACY_MAGIC + len(ct).to_bytes(4, "big") + ct
    stream += bytes(-(-carrier.size * 2 // 8) - len(stream))
    return (carrier & 0xFC) | _to_symbols(stream)[: carrier.size].reshape(carrier.shape)


def test_legacy_seals_still_open():
    carrier, original = _pair()
    original = _photo_like()
    s = _legacy_seal(carrier, original, KEY)
    o = open_seal(s, KEY)
    assert o.ok and o.key_id is None and np.abs(o.original.astype(int) - original).mean() < 6
    w = open_seal(s, OTHER)
    assert w.status == "damaged" and "another key, or the file changed" in w.reason(OTHER)


def test_scrub_removes_the_seal_and_nothing_else():
    carrier, original = _pair()
    s = seal(carrier, original, KEY)
    clean = scrub(s)
    assert seal_magic(clean) is None and open_seal(clean, KEY).status == "no-seal"
    assert np.array_equal(clean & 0xFC, s & 0xFC) and np.array_equal(clean, scrub(s))
    assert scrub(carrier) is carrier  # an image without a seal is left as it is


# --- the wrapper -------------------------------------------------------------------------------------------

class Blur:
    from mema.methods import MethodInfo as _MI

    info = _MI(name="toy-blur", version="1", licence="Apache-2.0", description="Box blur.", params={"k": 5})

    def anonymize(self, images, key=None):
        import cv2

        return np.stack([cv2.blur(im, (9, 9)) for im in images])


def test_sealed_wrapper_info_says_where_reversibility_comes_from():
    s = sealed(Blur())
    assert s.info.name == "toy-blur-sealed" and s.info.reversible and s.info.key_scheme == "mema-key-v1"
    assert s.info.params["reversibility"] == "sealed" and s.info.params["fallback"] == "none" and s.info.params["k"] == 5
    assert "sealed with AES-SIV" in s.info.description and s.info.description.startswith("Box blur")
    assert sealed(s) is s
    with pytest.raises(MethodError, match="sealed already"):
        Sealed(s)
    learned = sealed(KeyedBlend(), name="blend")
    assert learned.info.name == "blend" and learned.info.params["fallback"] == "learned"
    assert callable(learned.restore_tensor)  # the wrapped method's differentiable routes stay reachable


def test_sealed_wrapper_restores_with_the_key_and_falls_back_only_to_a_learned_restore():
    images = np.stack([_photo_like(seed=i) for i in range(3)])
    s = sealed(Blur())
    with pytest.raises(MethodError, match="needs a key"):
        s.anonymize(images)
    y = s.anonymize(images, key=KEY)
    assert np.array_equal(y & 0xFC, Blur().anonymize(images) & 0xFC)
    assert all(o.ok for o in s.open(y, KEY)) and np.abs(s.restore(y, KEY).astype(int) - images).mean() < 4
    assert np.array_equal(s.restore(y, OTHER), y)  # nothing else restores a blur: the input comes back unchanged
    b = sealed(KeyedBlend())
    yb = b.anonymize(images, key=KEY)
    wrong = b.restore(yb, OTHER)
    assert np.array_equal(wrong, KeyedBlend().restore(yb, OTHER))  # the learned restore, with the key given
    assert [o.status for o in b.open(yb, OTHER)] == ["other-key"] * 3


def test_rofi_is_sealed_and_its_networks_alone_are_learned():
    from mema.methods import available, get_method

    rofi = get_method("rofi")
    assert isinstance(rofi, Sealed) and rofi.info.name == "rofi"
    assert rofi.info.params["reversibility"] == "sealed" and rofi.info.params["fallback"] == "learned"
    assert rofi.inner.info.name == "rofi-unsealed" and rofi.inner.info.params["reversibility"] == "learned"
    assert "rofi-unsealed" in available() and rofi.info.params["image_size"] == 128
    faces = np.stack([_photo_like(seed=i) for i in range(2)])
    y = rofi.anonymize(faces, key=KEY)
    assert [o.status for o in rofi.open(y, KEY)] == ["opened"] * 2 and sealed_key_id(y[0]) == KEY.key_id
    assert np.array_equal(rofi.restore(y, OTHER), rofi.inner.restore(y, OTHER))


# --- the photo container -------------------------------------------------------------------------------------

def test_photo_container_is_bit_exact_bound_to_every_pixel_and_names_its_key():
    from mema.photo import PhotoError, Region, container_chunk, open_container, read_container
    from mema.imageio import png_bytes
    from mema.photo import CHUNK

    original = _photo_like((90, 120, 3))
    protected = original.copy()
    regions = [Region((1.0, 0.0, -10.0, 0.0, 1.0, -5.0), (5, 10, 60, 70)), Region((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (40, 50, 90, 120))]
    for y0, x0, y1, x1 in (r.box for r in regions):
        protected[y0:y1, x0:x1] = 255 - protected[y0:y1, x0:x1]
    chunk = container_chunk(protected, original, regions, method=("toy", "1"), key=KEY, seal=True)
    assert chunk == container_chunk(protected, original, regions, method=("toy", "1"), key=KEY, seal=True)
    c = read_container(png_bytes(protected, [(CHUNK, chunk)]))
    assert c.key_id == KEY.key_id and c.sealed and c.header.faces == 2 and c.method == ("toy", "1")
    assert np.array_equal(open_container(protected, c, KEY), original)
    with pytest.raises(PhotoError, match=f"sealed with key id {KEY.key_id}; this key is {OTHER.key_id}"):
        open_container(protected, c, OTHER)
    edited = protected.copy()
    edited[0, 0, 0] ^= 1  # a pixel outside every region
    with pytest.raises(PhotoError, match="changed since it was anonymized"):
        open_container(edited, c, KEY)
    forged = read_container(png_bytes(protected, [(CHUNK, chunk.replace(KEY.key_id.encode(), OTHER.key_id.encode()))]))
    with pytest.raises(PhotoError, match="changed since it was anonymized"):
        open_container(protected, forged, OTHER)  # the clear header is bound to the ciphertext too
    # the ciphertext's length follows from the regions only
    other = container_chunk(protected, np.zeros_like(original), regions, method=("toy", "1"), key=KEY, seal=True)
    assert len(other) == len(chunk)
    data = bytearray(png_bytes(protected, [(CHUNK, chunk)]))
    data[data.index(CHUNK) + 60] ^= 1
    with pytest.raises(PhotoError, match="damaged"):
        read_container(bytes(data))


def test_paste_touches_only_the_regions():
    from mema.photo import TEMPLATE, crop, paste, region_for

    photo = _photo_like((200, 300, 3))
    pts = TEMPLATE * 80 + np.array([100, 50])  # a face 80 px wide at (100, 50), tilted by nothing
    r = region_for(pts, 128, photo.shape[:2])
    c = crop(photo, r, 128)
    assert c.shape == (128, 128, 3) and np.abs(c.astype(int) - np.asarray(Image.fromarray(photo[50:130, 100:180]).resize((128, 128)))).mean() < 12
    out = paste(photo, np.zeros((1, 128, 128, 3), np.uint8), [r])
    y0, x0, y1, x1 = r.box
    inside = np.zeros(photo.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    assert np.array_equal(out[~inside], photo[~inside]) and out[90, 140].max() < 5  # the face centre is the new crop
    big = paste(photo, np.zeros((1, 128, 128, 3), np.uint8), [region_for(TEMPLATE * 30 + np.array([10, 10]), 128, photo.shape[:2])])
    assert big.shape == photo.shape  # a face smaller than the crop
