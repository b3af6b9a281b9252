"""The one sampling plan: MeMa-mini's balanced identity plan and the sample plans of `mema-generate sample`."""

from collections import Counter

import pytest

from mema.corpus.schema import DISEASES
from mema.generation.presets import PRESETS
from mema.generation.sampling_plan import identity_plan, make_sample_plan

STATS = {"n_images": 4, "disease": {d: 0 for d in DISEASES} | {"BCC": 1, "Ptosis": 1, "SCC": 1, "Normal": 1},
         "gender": {"female": 2, "male": 2}, "age_bins": [0, 20, 30, 40, 50, 60, 70, 121], "age_hist": [0, 0, 2, 2, 0, 0, 0],
         "joint": {"BCC|female|2": 1, "Ptosis|male|3": 1, "SCC|female|2": 1, "Normal|male|3": 1}}


def test_identity_plan_is_balanced_and_cycles_severity():
    plan = identity_plan(PRESETS["mini"])
    train = [p for p in plan if p.split == "train"]
    assert len(train) == 8 * 250 and sum(len(p.photos) for p in train) == 8000
    ptosis = [p.severity for p in train if p.disease == "Ptosis"]
    assert {s: ptosis.count(s) for s in set(ptosis)} == {"slight": 84, "mid": 83, "heavy": 83}
    assert len({p.identity for p in plan}) == len(plan)
    evaluation = [p for p in plan if p.split in ("val", "test")]
    assert all([ph.split for ph in p.photos].count("gallery") == 1 for p in evaluation)


def test_balanced_sample_plan_uses_the_same_class_and_severity_rule():
    all_classes = STATS | {"disease": {d: 1 for d in DISEASES}}
    plan = make_sample_plan(all_classes, [], num_samples=48, seed=0, sampling="balanced", scale_range=None)
    assert Counter(s.disease for s in plan) == {d: 6 for d in DISEASES}
    ptosis = Counter(s.severity for s in plan if s.disease == "Ptosis")
    assert ptosis == {"slight": 2, "mid": 2, "heavy": 2}
    assert {s.severity for s in plan if s.disease == "Normal"} == {"none"}
    # only the classes the real set has: a model finetuned on it never saw the others
    assert {s.disease for s in make_sample_plan(STATS, [], num_samples=12, seed=0, sampling="balanced", scale_range=None)} == {
        "Normal", "BCC", "Ptosis", "SCC"}


@pytest.mark.parametrize("sampling", ["real-guided", "random", "balanced"])
def test_entry_i_depends_only_on_seed_and_i(sampling):
    short = make_sample_plan(STATS, [], num_samples=5, seed=3, sampling=sampling, scale_range=None)
    longer = make_sample_plan(STATS, [], num_samples=9, seed=3, sampling=sampling, scale_range=None)
    assert longer[:5] == short
    assert make_sample_plan(STATS, [], num_samples=5, seed=4, sampling=sampling, scale_range=None) != short


def test_a_sample_is_a_one_photo_identity_seeded_by_its_own_seed():
    spec = make_sample_plan(STATS, [], num_samples=1, seed=0, scale_range=None)[0]
    ident = spec.as_identity()
    assert (ident.index, ident.identity, ident.disease, ident.severity) == (spec.seed, spec.id, spec.disease, spec.severity)
    assert [p.id for p in ident.photos] == [spec.id]


def test_unknown_sampling_is_refused():
    with pytest.raises(ValueError, match="balanced"):
        make_sample_plan(STATS, [], num_samples=1, seed=0, sampling="stratified")
