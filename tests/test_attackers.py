"""The attackers' parts on small synthetic data: each must do what it claims, or the test fails."""

from __future__ import annotations

import numpy as np
import pytest

from mema.attackers.adaptive import choose_lambda, feature_map_attack, ridge_fit
from mema.attackers.linking import median_composites, shared_content
from mema.evaluation.privacy import Identified, identify, strongest
from mema.metrics.identity import rank1_match


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_feature_map_learns_a_method_that_scrambles_embeddings():
    """Outputs whose embeddings are a fixed rotation of the originals' hide from a naive matcher, not from the map."""
    rng = np.random.default_rng(0)
    d, n_id = 32, 60
    centres = _unit(rng.normal(size=(n_id, d)))
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))

    def photos(k):
        ids = np.repeat(np.arange(n_id), k)
        return ids, _unit(centres[ids] + 0.15 * rng.normal(size=(len(ids), d)))

    tr_ids, tr_orig = photos(4)
    tr_out = _unit(tr_orig @ rot)
    te_ids, te_orig = photos(1)
    te_out = _unit(te_orig @ rot)
    gal = _unit(centres + 0.15 * rng.normal(size=centres.shape))
    naive = rank1_match(te_out, te_ids, gal, np.arange(n_id)).mean()
    probe, gallery, rep = feature_map_attack(tr_out, tr_orig, tr_ids, te_out, gal)
    mapped = rank1_match(probe, te_ids, gallery, np.arange(n_id)).mean()
    untouched = rank1_match(te_orig, te_ids, gal, np.arange(n_id)).mean()  # what the photos allow at all
    assert naive < 0.2 and mapped >= untouched - 0.05 and mapped > 0.8
    assert rep["lambda"] in rep["heldout_rank1_by_lambda"]


def test_ridge_strength_is_chosen_on_held_out_identities():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 8))
    ids = np.repeat(np.arange(20), 4)
    lam, scores = choose_lambda(x, x.copy(), ids)
    assert set(scores) and lam in scores
    w = ridge_fit(x, 2 * x, 1e-6)
    assert np.allclose(np.hstack([x, np.ones((80, 1))]) @ w, 2 * x, atol=1e-3)


def test_median_composites_isolate_each_patients_own_pixels():
    """Outputs = one shared virtual face + a patient patch: composites keep the patch on the public face."""
    rng = np.random.default_rng(2)
    virtual = rng.integers(0, 255, (16, 16, 3)).astype(np.float32)
    public = np.full((16, 16, 3), 120, np.float32)
    outs = np.repeat(virtual[None], 40, 0)
    patches = rng.integers(0, 255, (40, 4, 4, 3)).astype(np.float32)
    outs[:, 6:10, 6:10] = patches
    comp = median_composites(outs.astype(np.uint8), public, group=20)
    # Away from the patch the shared face is gone; inside it the patient's pixels stand out from the rest.
    away = comp[:, :4, :4].astype(np.float32)
    assert np.abs(away - 120).max() <= 1
    inside = comp[:, 6:10, 6:10].astype(np.float32)
    corr = np.corrcoef(inside.reshape(40, -1).mean(1), patches.reshape(40, -1).mean(1))[0, 1]
    assert corr > 0.9


def test_shared_content_is_high_for_a_fixed_face_and_low_for_noise():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (32, 32, 3))
    same = np.clip(base[None] + rng.normal(0, 5, (20, 32, 32, 3)), 0, 255).astype(np.uint8)
    noise = rng.integers(0, 255, (20, 32, 32, 3)).astype(np.uint8)
    assert shared_content(same) > 0.9 and abs(shared_content(noise)) < 0.1


def test_identify_excludes_probes_without_a_usable_gallery_photo():
    probe = np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan], [1.0, 0.0]])
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    v = identify(probe, np.array(["a", "b", "a", "z"]), gallery, np.array(["a", "b"]), "t")
    assert v.usable.tolist() == [True, True, False, False]
    assert v.hits.tolist() == [True, True, False, False]


def test_strongest_view_is_the_one_with_the_highest_rank1():
    a = Identified(np.array([True, False, False]), np.ones(3, bool), "a")
    b = Identified(np.array([True, True, False]), np.ones(3, bool), "b")
    assert strongest([a, b]).by == "b"


def test_periocular_training_separates_identities():
    """Windows of 12 identities with distinct fixed patterns: after training, rank-1 on held-out photos is high."""
    from mema.attackers.periocular import embed_crops, train_periocular

    rng = np.random.default_rng(4)
    patterns = rng.integers(0, 255, (12, 8, 12, 3)).astype(np.uint8)

    def window(k):
        big = np.kron(patterns[k], np.ones((8, 8, 1), np.uint8))
        return np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)

    ids = np.repeat(np.arange(12), 6)
    crops = np.stack([window(k) for k in ids])
    net, report = train_periocular(crops, ids, epochs=6, batch_size=24, lr=3e-3, progress=False)
    assert report.n_identities == 12 and np.isfinite(report.final_loss)
    probe = embed_crops(net, np.stack([window(k) for k in range(12)]))
    gallery = embed_crops(net, np.stack([window(k) for k in range(12)]))
    assert np.allclose(np.linalg.norm(probe, axis=1), 1, atol=1e-4)
    assert rank1_match(probe, np.arange(12), gallery, np.arange(12)).mean() >= 0.75


def test_deanonymizer_learns_to_undo_a_colour_inversion():
    from mema.attackers.deanon import reconstruct, train_deanon

    rng = np.random.default_rng(5)
    originals = np.stack([np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8) for _ in range(48)])
    outputs = 255 - originals
    net, rep = train_deanon(outputs, originals, epochs=15, batch_size=16, lr=3e-3, progress=False)
    rec = reconstruct(net, outputs)
    before = np.abs(outputs.astype(float) - originals).mean()
    after = np.abs(rec.astype(float) - originals).mean()
    assert rep["steps"] > 0 and after < 0.5 * before


def test_gate_finds_faces_but_not_noise(tiny_corpus):
    from mema.attackers.gate import FacePresenceGate
    from mema.corpus.store import load_corpus

    corpus = load_corpus(tiny_corpus)
    gate = FacePresenceGate()
    faces = gate.scores([corpus.load_image(r) for r in corpus.split("test")])
    noise = gate.scores(list(np.random.default_rng(6).integers(0, 255, (8, 128, 128, 3)).astype(np.uint8)))
    assert (faces > 0).mean() >= 0.9 and (noise == 0).all()
    assert gate.record["sha256"]


def test_worst_case_is_the_minimum_over_attackers_and_is_reported_on_detected_faces():
    from mema.evaluation.privacy import PrivacySuite

    class Ev:
        records = [type("R", (), {"identity": f"i{k}"})() for k in range(4)]

        @staticmethod
        def _ci(stat, idx):
            return None

    suite = PrivacySuite(Ev())
    ok = np.ones(4, bool)
    suite.views = {"sface": Identified(np.array([False, False, False, True]), ok, "sface"),
                   "periocular": Identified(np.array([True, True, False, False]), ok, "periocular")}
    metrics = {}
    suite._worst_case(np.array([True, True, False, False]), metrics)
    assert metrics["privacy.worst_case_protection"].value == pytest.approx(0.5)
    assert "periocular" in metrics["privacy.worst_case_protection"].note
    assert metrics["privacy.worst_case_protection_face"].value == pytest.approx(0.0)


def test_worst_case_ci_takes_the_minimum_inside_each_resample():
    """Two attackers that each catch half the probes, different halves: in any resample one of them does at
    least as well as on the full set, so the minimum's CI cannot rise above 0.5 (one attacker's CI would)."""
    from mema.evaluation.privacy import PrivacySuite
    from mema.metrics.stats import bootstrap_ci

    n = 40

    class Ev:
        records = [type("R", (), {"identity": f"i{k}"})() for k in range(n)]

        @staticmethod
        def _ci(stat, idx):
            return bootstrap_ci(lambda b: stat(idx[b]), len(idx), seed=0)

    suite = PrivacySuite(Ev())
    ok = np.ones(n, bool)
    first = np.arange(n) < n // 2
    suite.views = {"a": Identified(first, ok, "a"), "b": Identified(~first, ok, "b")}
    metrics = {}
    suite._worst_case(ok, metrics)
    m = metrics["privacy.worst_case_protection"]
    assert m.value == pytest.approx(0.5)
    assert m.ci95[1] <= 0.5 + 1e-9 and m.ci95[0] < 0.45


def test_attacker_identities_never_include_an_evaluated_identity():
    from mema.evaluation.privacy import attacker_records

    def rec(split, ident, k):
        return type("R", (), {"split": split, "identity": ident, "id": f"{split}-{ident}-{k}"})()

    rows = {"train": [rec("train", f"t{i}", k) for i in range(6) for k in range(2)] + [rec("train", "shared", k) for k in range(2)],
            "test": [rec("test", "shared", 0)], "dev": [], "gallery": []}

    class Corpus:
        @staticmethod
        def split(name):
            return rows[name]

    split, recs = attacker_records(Corpus(), "test")
    assert split == "train" and recs
    assert "shared" not in {r.identity for r in recs}


def test_zoo_embeds_the_same_side_by_side_as_one_after_another():
    """Recognisers run in parallel threads; each embedding must equal its one-thread value, in the right column."""
    import threading

    from mema.evaluation.privacy import Zoo

    class Rec:
        def __init__(self, scale):
            self.scale, self.threads = scale, set()
            self.info = type("Info", (), {"dim": 3})()

        def embed(self, img, lm):
            self.threads.add(threading.get_ident())
            return np.array([img.mean(), img.std(), self.scale])

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (8, 8, 3)).astype(np.uint8) for _ in range(6)]
    lms = [object(), None, object(), object(), object(), object()]
    names = {"a": Rec(1.0), "dlib-resnet": Rec(2.0), "c": Rec(3.0)}
    serial = Zoo(names, progress=False, workers=1).embed(images, lms, "t")
    parallel = Zoo(names, progress=False, workers=2).embed(images, lms, "t")
    assert list(parallel) == list(serial) == ["a", "dlib-resnet", "c"]
    for n in names:
        np.testing.assert_array_equal(parallel[n], serial[n])
        assert np.isnan(parallel[n][1]).all() and parallel[n][0, 2] == names[n].scale
    assert len(set().union(*(r.threads for r in names.values()))) >= 2  # really ran on more than one thread


def test_judge_values_on_originals_are_cached_per_judge(tmp_path):
    """Method-independent values are computed once per record and judge; another judge recomputes them."""
    from types import SimpleNamespace

    from mema.evaluators.reference import ReferenceEvaluators

    ref = ReferenceEvaluators.__new__(ReferenceEvaluators)
    ref.folder = tmp_path
    recs = [SimpleNamespace(id=f"r{i}") for i in range(4)]
    calls = []

    def compute(todo):
        calls.append([r.id for r in todo])
        return np.array([[int(r.id[1:]), 10.0] for r in todo])

    first = ref.on_originals("seg", {"sha256": "a"}, recs[:2], compute)
    again = ref.on_originals("seg", {"sha256": "a"}, recs, compute)
    assert calls == [["r0", "r1"], ["r2", "r3"]]
    np.testing.assert_array_equal(again[:2], first)
    np.testing.assert_array_equal(again[:, 0], [0, 1, 2, 3])
    ref.on_originals("seg", {"sha256": "b"}, recs[:1], compute)
    assert calls[-1] == ["r0"]  # another judge: nothing reused
