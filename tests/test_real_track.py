"""The real-face track: built offline from the vendored crops to its registered bytes, with signs drawn on real eyes."""

from __future__ import annotations

import numpy as np
import pytest

from mema.corpus.registry import registered_hash
from mema.corpus.schema import DISEASES
from mema.corpus.store import load_corpus
from mema.faces.landmarks import FaceLandmarks
from mema.generation.real_signs import draw_real_sign
from mema.generation.real_track import NAME, VENDORED, VERSION, build_real_faces, sign_training_set, vendored_sources
from mema.imageio import read_rgb


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    return build_real_faces(tmp_path_factory.mktemp("real") / "track", progress=False)


def test_builds_offline_to_the_registered_hash_and_verifies(track):
    from mema.corpus.verify import verify_corpus

    corpus = load_corpus(track)
    assert corpus.info.manifest_sha256 == registered_hash(NAME, VERSION)
    assert corpus.info.research_only and "Research only" in corpus.info.licence
    report = verify_corpus(track, embedding_sample=0, progress=False)
    assert report.ok, report.errors[:3]


def test_splits_by_identity_with_an_untouched_gallery_photo_each(track):
    corpus = load_corpus(track)
    ids = {s: {r.identity for r in corpus.split(s)} for s in ("dev", "val", "test", "gallery")}
    assert not ids["dev"] & ids["test"] and not ids["dev"] & ids["val"] and not ids["val"] & ids["test"]
    assert len(ids["test"]) == 16 and len(ids["dev"]) == 12
    gallery = corpus.split("gallery")
    assert len(gallery) == len({g.identity for g in gallery}) == 34  # one ID photo per person with two or more photos
    assert all(g.disease == "Normal" for g in gallery)
    assert ids["gallery"] == ids["dev"] | ids["test"] | (ids["val"] & ids["gallery"])
    impostors = ids["val"] - ids["gallery"]
    assert len(impostors) == 9  # the single-photo people: calibration impostors, never probes
    # Every probe split holds every class (balanced within the split).
    for split in ("dev", "test"):
        assert {r.disease for r in corpus.split(split)} == set(DISEASES)
    assert all((r.mask_file is not None) == (r.disease in ("BCC", "SCC")) for r in corpus.records)


def test_card_lists_every_file_with_its_origin_and_licence(track):
    card = (track / "README.md").read_text()
    sources = vendored_sources()
    for c in sources["crops"]:
        assert c["id"] in card and c["source_sha256"][:16] in card
    for key, licence in sources["licences"].items():
        assert licence in card
    assert "kit_harington__1.jpg" in card  # the skipped photo is named, with its reason


def _face(crop_id: str):
    data = np.load(VENDORED / "landmarks.npz")
    points = dict(zip(data["ids"].tolist(), data["points"]))
    img, _ = read_rgb(VENDORED / f"{crop_id}.png")
    return img, FaceLandmarks(points=points[crop_id])


@pytest.mark.parametrize("disease", [d for d in DISEASES if d != "Normal"])
def test_signs_change_only_the_eye_region(disease):
    img, lm = _face(vendored_sources()["crops"][0]["id"])
    out, mask = draw_real_sign(img, lm, disease, "heavy", np.random.default_rng(0))
    changed = np.abs(out.astype(int) - img).max(-1) > 0
    assert changed.sum() > 10, f"{disease} drew nothing"
    ys, xs = np.nonzero(changed)
    iod = lm.inter_ocular()
    centre = (lm.eye_center("left") + lm.eye_center("right")) / 2
    # Everything a sign touches lies within about one inter-ocular distance of the eyes' midpoint.
    assert np.hypot(xs - centre[0], ys - centre[1]).max() < 1.3 * iod
    assert (mask is not None) == (disease in ("BCC", "SCC"))
    if mask is not None:
        assert mask.sum() >= 4 and changed[mask > 0].mean() > 0.9


def test_normal_is_untouched_and_drawing_is_deterministic():
    img, lm = _face(vendored_sources()["crops"][3]["id"])
    out, mask = draw_real_sign(img, lm, "Normal", "none", np.random.default_rng(0))
    assert np.array_equal(out, img) and mask is None
    a, _ = draw_real_sign(img, lm, "Conj", "mid", np.random.default_rng(5))
    b, _ = draw_real_sign(img, lm, "Conj", "mid", np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_ptosis_lowers_the_lid_over_the_iris():
    """Less of the eye opening stays bright (sclera) once the lid covers more of it."""
    from mema.generation.real_signs import _frame, opening_mask

    img, lm = _face("barack_obama__1")
    out, _ = draw_real_sign(img, lm, "Ptosis", "heavy", np.random.default_rng(1))
    changed_side = None
    for side in ("left", "right"):
        region, _, _, open_ = opening_mask(img, lm, side, _frame(lm, side))
        before = img[region].astype(float).mean(-1)[open_ > 0.9].mean()
        after = out[region].astype(float).mean(-1)[open_ > 0.9].mean()
        if abs(after - before) > 1:
            changed_side = (before, after)
    assert changed_side is not None and changed_side[1] < changed_side[0]


def test_evaluator_training_views_come_from_dev_identities_only(track):
    corpus = load_corpus(track)
    images, labels, masks, points = sign_training_set(corpus, variants=1)
    test_ids = {r.identity for r in corpus.split("test")}
    dev_crops = [c for c in vendored_sources()["crops"] if c["identity"] in {r.identity for r in corpus.split("dev")}]
    assert not {c["identity"] for c in dev_crops} & test_ids
    per_crop = 3 + 7 * 3  # Normal x3, every other class at three severities
    assert len(images) == len(labels) == len(points) == per_crop * len(dev_crops)
    assert set(labels.tolist()) == set(range(len(DISEASES)))
    assert all((m is not None) == (DISEASES[k] in ("BCC", "SCC")) for m, k in zip(masks, labels))
    # every view's landmarks are those of a dev crop, in crop order: no test photo entered
    lm_data = np.load(VENDORED / "landmarks.npz")
    by_crop = dict(zip(lm_data["ids"].tolist(), lm_data["points"]))
    expected = np.concatenate([np.repeat(by_crop[c["id"]][None], per_crop, 0) for c in sorted(dev_crops, key=lambda c: c["id"])])
    np.testing.assert_array_equal(points, expected)
