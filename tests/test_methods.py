import numpy as np
import pytest

from mema.methods import MethodError, available, check_output, get_method

BUILTINS = ("identity", "mosaic", "blur", "mask-out", "eye-crop", "dp-pix")


@pytest.fixture(scope="module")
def faces(tiny_corpus):
    from mema.corpus.store import load_corpus

    c = load_corpus(tiny_corpus)
    return np.stack([c.load_image(r) for r in c.split("test")[:6]])


def test_registry_lists_builtins():
    names = available()
    assert all(n in names for n in BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_keep_shape_and_dtype(name, faces):
    m = get_method(name)
    out = check_output(name, faces, m.anonymize(faces), [str(i) for i in range(len(faces))])
    assert out.shape == faces.shape and out.dtype == np.uint8
    assert m.info.name == name and not m.info.reversible


def test_identity_is_exact_and_blur_mosaic_change_pixels(faces):
    assert np.array_equal(get_method("identity").anonymize(faces), faces)
    mos = get_method("mosaic").anonymize(faces)
    assert (mos[:, :8, :8] == mos[:, :1, :1]).all()  # constant 8x8 blocks
    assert np.abs(get_method("blur").anonymize(faces).astype(int) - faces).mean() > 2


def test_mask_out_and_eye_crop_regions(faces):
    from mema.faces.landmarks import LandmarkDetector

    with LandmarkDetector() as det:
        lm = det.detect(faces[0])
    masked = get_method("mask-out").anonymize(faces[:1])[0]
    x, y = np.round(lm.points[1]).astype(int)  # nose tip lies inside the face hull
    assert (masked[y, x] == 0).all()
    crop = get_method("eye-crop").anonymize(faces[:1])[0]
    cx, cy = np.round(lm.eye_center("left")).astype(int)
    assert np.array_equal(crop[cy, cx], faces[0][cy, cx])
    assert (crop[y + 8, x] == 0).all() and (crop[-1, -1] == 0).all()


def test_dp_pix_noise_follows_the_laplace_scale(faces):
    from mema.baselines.classic import DPPix, pixelate

    m = DPPix(epsilon=0.5, block=8, m=16)
    out = m.anonymize(faces).astype(float)
    again = m.anonymize(faces[::-1]).astype(float)[::-1]
    assert np.array_equal(out, again)  # depends on the image, not on batch order
    flat = np.stack([pixelate(f, 8) for f in faces]).astype(float)
    resid = (out - flat)[:, ::8, ::8]  # one value per block
    scale = 255 * 16 / (64 * 0.5)
    inner = resid[np.abs(resid) < 100]  # away from clipping at 0/255
    assert 0.5 * scale < np.abs(inner).mean() * 1.5 and np.abs(inner).mean() < 1.5 * scale
    with pytest.raises(ValueError):
        DPPix(epsilon=0)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("tests.toy_methods:WrongShape", "returned images of shape"),
        ("tests.toy_methods:FewerImages", "fewer images than given; first missing: s3"),
        ("tests.toy_methods:NaNFloats", "NaN/inf for sample s3"),
    ],
)
def test_broken_outputs_name_method_and_sample(spec, match):
    m = get_method(spec)
    x = np.zeros((4, 64, 64, 3), np.uint8)
    with pytest.raises(MethodError, match=match) as info:
        check_output(m.info.name, x, m.anonymize(x), ["s0", "s1", "s2", "s3"])
    assert m.info.name in str(info.value)


def test_unknown_and_non_protocol_methods():
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(MethodError, match="cannot load"):
        get_method("tests.toy_methods:Missing")
    with pytest.raises(MethodError, match="does not follow the method protocol"):
        get_method("tests.toy_methods:NoProtocol")
