import numpy as np
import pytest

from mema.faces.landmarks import LandmarkDetector
from mema.faces.recognisers import DlibResNet, SFace, get_recogniser
from mema.weights import WeightsError


@pytest.fixture(scope="module")
def face_and_landmarks(tiny_corpus):
    from mema.corpus.store import load_corpus

    c = load_corpus(tiny_corpus)
    recs = sorted(c.split("train"), key=lambda r: r.id)
    imgs = [c.load_image(r) for r in recs[:4]]
    with LandmarkDetector() as det:
        lms = [det.detect(i) for i in imgs]
    return recs[:4], imgs, lms


@pytest.mark.parametrize("cls", [SFace, DlibResNet])
def test_builtin_recognisers_give_unit_embeddings_and_separate_people(cls, face_and_landmarks):
    recs, imgs, lms = face_and_landmarks
    rec = cls()
    e = np.stack([rec.embed(i, l) for i, l in zip(imgs, lms)])
    assert e.shape == (4, 128) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    # photos 0/1 are one identity (p0, p1), 2/3 another
    assert recs[0].identity == recs[1].identity != recs[2].identity
    same = np.linalg.norm(e[0] - e[1])
    other = np.linalg.norm(e[0] - e[2])
    assert same < other
    assert rec.record["sha256"] and rec.record["licence"]


def test_optional_recognisers_explain_missing_weights(monkeypatch):
    monkeypatch.delenv("MEMA_ARCFACE_ONNX", raising=False)
    with pytest.raises(WeightsError, match="MEMA_ARCFACE_ONNX") as info:
        get_recogniser("arcface")
    assert "never downloads" in str(info.value)
    with pytest.raises(WeightsError, match="unknown recogniser"):
        get_recogniser("sphereface-2000")


def test_arcface_adapter_runs_a_local_onnx_file(tmp_path, monkeypatch, face_and_landmarks):
    """A tiny randomly initialised network exported to ONNX stands in for real ArcFace weights."""
    from tests.tiny_onnx import tiny_arcface_onnx

    path = tiny_arcface_onnx(tmp_path / "tiny_arcface.onnx")
    monkeypatch.setenv("MEMA_ARCFACE_ONNX", str(path))
    rec = get_recogniser("arcface")
    _, imgs, lms = face_and_landmarks
    e = rec.embed(imgs[0], lms[0])
    assert e.shape == (512,) and np.isclose(np.linalg.norm(e), 1)
    assert rec.record["sha256"] and rec.record["file"] == "tiny_arcface.onnx"


def test_embed_images_marks_images_without_a_face(face_and_landmarks):
    """The one embedding routine of the leakage filter, the cards and verify: NaN rows where no face is found."""
    from mema.faces.recognisers import embed_images

    recs, imgs, lms = face_and_landmarks
    blank = np.full_like(imgs[0], 128)
    emb, found = embed_images(iter([imgs[0], blank, imgs[1]]), {"sface": SFace(), "dlib-resnet": DlibResNet()})
    assert found == [True, False, True]
    for name, e in emb.items():
        assert e.shape == (3, 128) and np.isnan(e[1]).all() and np.isfinite(e[[0, 2]]).all()
    np.testing.assert_array_equal(emb["sface"][0], SFace().embed(imgs[0], lms[0]))


def test_sface_with_folded_weights_is_bit_identical_to_the_quantised_graph(face_and_landmarks):
    """The folded graph is a speed-up only: every embedding must equal the unfolded model's, bit for bit."""
    from mema.faces.align import align_crop, five_points

    _, imgs, lms = face_and_landmarks
    crops = np.stack([align_crop(i, five_points(l)) for i, l in zip(imgs, lms)])
    noise = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3)).astype(np.uint8)
    fast, plain = SFace(), SFace(fold_weights=False)
    for batch in (crops, noise):
        np.testing.assert_array_equal(fast.embed_aligned(batch), plain.embed_aligned(batch))


def test_folding_replaces_every_constant_dequantization():
    import onnx

    from mema.faces.recognisers import fold_dequantized_weights
    from mema.weights import weight_path

    model = onnx.load(str(weight_path("sface_int8")))
    before = sum(n.op_type == "DequantizeLinear" for n in model.graph.node)
    assert before > 0 and fold_dequantized_weights(model) == before
    assert not any(n.op_type == "DequantizeLinear" for n in model.graph.node)
