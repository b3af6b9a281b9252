"""Key-security attacks on toy reversible methods: each attack must pass a keyed method and catch a weak
one, and an attack whose controls fail (the differentiable path is not restore(), no gradient, the right
key does not restore) is reported as invalid, never as protection.

The tiny corpus is a pipeline-test size; figures here only need to separate strong from weak toys.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from mema.corpus.store import load_corpus
from mema.evaluation.attacks import (
    AttackInvalid,
    KeySecurityConfig,
    bim,
    bim_black_box,
    brute_force,
    diversity,
    face_set,
    key_security_on_corpus,
    run_key_security,
    universal_key,
    universal_key_black_box,
)
from mema.evaluation.harness import TASKS, EvalConfig, Evaluation
from mema.evaluation.judge import SamePersonJudge
from mema.evaluators.reference import ReferenceEvaluators
from mema.keys import key_from_seed
from mema.methods import get_method
from mema.keys import key_vector
from mema.methods import MethodInfo
from tests.toy_methods import FixedBlend, FragileBlend, KeyedBlend, KeyedShuffle

KEY = key_from_seed(42)


def _info(name):
    return MethodInfo(name=name, version="0", reversible=True, key_scheme="mema-key-v1", licence="Apache-2.0")


class SealedBlend(KeyedBlend):
    """Like ROFI: restore() hands back a sealed copy of the original to the right key (here a lookup by
    output and key), while restore_tensor is a different, learned-style restorer that is not exact."""

    info = _info("sealed-blend")

    def __init__(self):
        self.sealed = {}

    def anonymize(self, images, key=None):
        out = super().anonymize(images, key)
        for x, y in zip(images, out):
            self.sealed[(y.tobytes(), key.key_id)] = x.copy()
        return out

    def restore_tensor(self, y, key_vectors):
        pattern = self._pattern(key_vectors, *y.shape[2:])
        return ((y - 0.5 * pattern) / 0.5).clamp(0, 1)  # a restorer that misjudges the blend

    def restore(self, images, key):
        fallback = super()._numpy(self.restore_tensor, images, key)
        return np.stack([self.sealed.get((y.tobytes(), key.key_id), f) for y, f in zip(images, fallback)])


class DetachedBlend(KeyedBlend):
    """restore_tensor reproduces restore() exactly but passes no gradient (a numpy round trip inside)."""

    info = _info("detached-blend")

    def restore_tensor(self, y, key_vectors):
        return super().restore_tensor(y.detach(), key_vectors.detach())

    def restore(self, images, key):
        return self._numpy(KeyedBlend.restore_tensor.__get__(self), images, key)


class TwoKeyBlend(KeyedBlend):
    """A key space of two keys: the pattern depends on the sign of the first key component only. The
    sign has no gradient, so only a black-box search can find that half of all keys open every image."""

    info = _info("two-key-blend")

    def _pattern(self, kv, h, w):
        import torch

        return super()._pattern(torch.where(kv[:, :1] > 0, 1.0, -1.0).expand(-1, self.n_fields), h, w)


class FragileNoTensor(FragileBlend):
    """FragileBlend without differentiable access: only the black-box spoofing can attack it."""

    info = _info("fragile-no-tensor")
    restore_tensor = None

    def anonymize(self, images, key=None):
        return self._numpy(KeyedBlend.anonymize_tensor.__get__(self), images, key)

    def restore(self, images, key):
        return self._numpy(KeyedBlend.restore_tensor.__get__(self), images, key)


class NoRestore(KeyedBlend):
    """Claims to be reversible, but restore() returns its input: even the right key fails."""

    info = _info("no-restore")

    def restore(self, images, key):
        return images.copy()


@pytest.fixture(scope="module")
def setup(tiny_corpus):
    corpus = load_corpus(tiny_corpus)
    ref = ReferenceEvaluators(corpus, progress=False)
    judge = SamePersonJudge.from_reference(ref, "sface", 0.01)
    faces = face_set(corpus, ref, judge, sorted(corpus.split("test"), key=lambda r: r.id))
    train = np.stack([corpus.load_image(r) for r in sorted(corpus.split("train"), key=lambda r: r.id)[:8]])
    return corpus, judge, faces, train


def test_brute_force_passes_keyed_methods_and_catches_a_key_independent_one(setup):
    _, judge, faces, _ = setup
    four = faces.take(range(4))
    for method in (KeyedBlend(), KeyedShuffle()):
        r = brute_force(method, KEY, four, judge, n_keys=10, progress=False)
        assert r.pairs_succeeded == 0 and r.keys_succeeded == 0 and r.closest_distance > judge.threshold
    weak = brute_force(FixedBlend(), KEY, four, judge, n_keys=10, progress=False)
    assert weak.keys_succeeded == 10 and weak.success_rate == 1.0
    assert weak.seeds == (8_000_000, 8_000_009) and weak.control.same_person_rate == 1.0
    two = brute_force(TwoKeyBlend(), KEY, four, judge, n_keys=20, progress=False)
    assert 4 <= two.keys_succeeded <= 16  # about half of all keys open every image


def test_an_attack_whose_right_key_fails_is_invalid(setup):
    _, judge, faces, _ = setup
    with pytest.raises(AttackInvalid, match="the right key restores only 0%") as exc:
        brute_force(NoRestore(), KEY, faces.take(range(4)), judge, n_keys=3, progress=False)
    assert exc.value.record.control.same_person_rate == 0.0


def test_universal_key_recovers_a_smooth_key_from_plaintext_pairs_but_not_a_key_for_any_image(setup):
    _, judge, faces, train = setup
    held = faces.take(range(8))
    cfg = KeySecurityConfig(universal_steps=60, universal_lr=0.1, universal_keys="shared")
    shared = universal_key(KeyedBlend(), KEY, train, held, judge, cfg, progress=False)
    assert shared.control.tensor_images_matching == 8 and shared.gradient.norm > 0
    assert shared.final_train_l1 < shared.initial_train_l1 / 5 and shared.protection_rate <= 0.25
    any_image = universal_key(KeyedBlend(), KEY, train, held, judge, cfg.model_copy(update={"universal_keys": "per_image"}), progress=False)
    assert any_image.protection_rate >= 0.75 and any_image.psnr < 15


def test_a_key_independent_restorer_makes_the_gradient_attack_invalid_and_the_black_box_one_breaks_it(setup):
    _, judge, faces, train = setup
    held = faces.take(range(8))
    cfg = KeySecurityConfig(universal_steps=5, universal_keys="shared", universal_black_box_keys=5)
    with pytest.raises(AttackInvalid, match="gradient of the attack's loss in the key is None") as exc:
        universal_key(FixedBlend(), KEY, train, held, judge, cfg, progress=False)
    assert exc.value.record.mode == "gradient" and exc.value.record.control.tensor_images_matching == 8
    weak = universal_key_black_box(FixedBlend(), KEY, train, held, judge, cfg, progress=False)
    assert weak.mode == "black_box" and weak.protection_rate == 0.0
    strong = universal_key_black_box(KeyedBlend(), KEY, train, held, judge, cfg.model_copy(update={"universal_keys": "per_image"}), progress=False)
    assert strong.protection_rate >= 0.75 and strong.control.same_person_rate == 1.0


def test_the_black_box_universal_key_finds_a_small_key_space(setup):
    _, judge, faces, train = setup
    held = faces.take(range(8))
    cfg = KeySecurityConfig(universal_keys="shared", universal_black_box_keys=8, universal_steps=5)
    with pytest.raises(AttackInvalid, match="in the key is None"):  # the sign has no gradient
        universal_key(TwoKeyBlend(), KEY, train, held, judge, cfg, progress=False)
    found = universal_key_black_box(TwoKeyBlend(), KEY, train, held, judge, cfg, progress=False)
    assert found.protection_rate == 0.0 and found.final_train_l1 < 0.01


class _SpyRestore(FragileBlend):
    def __init__(self):
        self.inputs = []

    def restore(self, images, key):
        self.inputs.append(images.copy())
        return super().restore(images, key)


def test_bim_spoofs_a_fragile_restorer_within_its_budget_and_noise_defends(setup):
    _, judge, faces, _ = setup
    eight = faces.take(range(8))
    r = bim(FragileBlend(), KEY, eight, judge, KeySecurityConfig(bim_eps=[0.05]), progress=False)
    level = r.levels[0]
    assert level.success_rate >= 0.5 and level.defended_success_rate < level.success_rate
    spy = _SpyRestore()
    bim(spy, KEY, eight, judge, KeySecurityConfig(bim_eps=[0.02], bim_steps=3), progress=False)
    y8 = spy.anonymize(eight.images, KEY).astype(int)
    assert np.array_equal(spy.inputs[0], y8)  # the right-key control comes first, on the unattacked images
    adversarial = next(x for x in spy.inputs if not np.array_equal(x, y8))
    delta = np.abs(adversarial.astype(int) - y8)
    assert 0 < delta.max() <= int(0.02 * 255)  # 8-bit adversarial image inside the L_inf ball


def test_bim_through_a_restorer_that_is_not_restore_is_invalid(setup):
    _, judge, faces, _ = setup
    eight = faces.take(range(8))
    with pytest.raises(AttackInvalid, match="restore_tensor does not reproduce restore") as exc:
        bim(SealedBlend(), KEY, eight, judge, KeySecurityConfig(bim_eps=[0.05], bim_steps=2), progress=False)
    assert exc.value.record.control.tensor_images_matching == 0 and exc.value.record.control.same_person_rate == 1.0
    with pytest.raises(AttackInvalid, match="in the image is None"):
        bim(DetachedBlend(), KEY, eight, judge, KeySecurityConfig(bim_eps=[0.05], bim_steps=2), progress=False)


def test_black_box_spoofing_moves_a_fragile_restorer_towards_its_target(setup):
    _, judge, faces, _ = setup
    eight = faces.take(range(8))
    r = bim_black_box(FragileNoTensor(), KEY, eight, judge, KeySecurityConfig(bim_eps=[0.05], bim_queries=31), progress=False)
    level = r.levels[0]
    assert r.mode == "black_box" and r.gradient is None and r.control.same_person_rate == 1.0
    assert level.mean_l1_to_target < 0.5 * level.initial_l1_to_target and level.success_rate >= 0.5, level


def test_diversity_is_zero_for_a_key_independent_method(setup):
    _, judge, faces, _ = setup
    four = faces.take(range(4))
    flat = diversity(FixedBlend(), four, judge, n_keys=4, progress=False)
    assert flat.pixel_std == 0.0 and flat.identity_cosine_distance == pytest.approx(0.0, abs=1e-9) and flat.repeat_pixel_diff == 0.0
    keyed = diversity(KeyedBlend(), four, judge, n_keys=4, progress=False)
    assert keyed.pixel_std > 10 and keyed.identity_cosine_distance > 0.01


SMALL = KeySecurityConfig(brute_force_keys=5, brute_force_images=4, universal_steps=10, universal_train_images=4, universal_heldout_images=4,
                          universal_black_box_keys=4, bim_images=4, bim_eps=[0.05], bim_steps=3, bim_queries=4, diversity_keys=3,
                          diversity_images=4)


def test_a_sealed_restore_is_attacked_black_box_and_the_gradient_attacks_are_reported_invalid(setup):
    _, judge, faces, train = setup
    res = run_key_security(SealedBlend(), KEY, faces, train, judge, SMALL.model_copy(update={"attacks": ["universal_key", "bim"]}), progress=False)
    assert set(res.invalid) == {"universal_key", "bim"} and res.universal_key is None and res.bim is None
    assert all("does not reproduce restore()" in inv.reason and inv.mode == "gradient" for inv in res.invalid.values())
    assert res.universal_key_black_box.protection_rate == 1.0 and res.bim_black_box.mode == "black_box"
    m = res.metrics()
    for name in ("universal_key", "bim"):
        assert m[f"key_security.{name}.valid"].value == 0.0 and m[f"key_security.{name}.valid"].note.startswith("invalid (gradient)")
    head = m["key_security.universal_key.protection_rate"]
    assert head.value is None and head.n == 0 and head.note.startswith("invalid: ") and "not a protection figure" in head.note
    assert m["key_security.bim.eps_0.05.success_rate"].value is None
    assert m["key_security.universal_key_black_box.valid"].value == 1.0
    assert m["key_security.universal_key_black_box.protection_rate"].value == 1.0
    saved = type(res).model_validate_json(res.model_dump_json())  # typed and round-trips
    assert saved.invalid["bim"].control.tensor_images_matching == 0


def test_rofi_restore_tensor_is_not_its_restore_so_its_gradient_attacks_are_invalid(setup):
    """ROFI's restore() opens the sealed original; restore_tensor is the restorer network. The gradient
    attacks would measure the network, which the right key never uses: invalid, and black-box instead."""
    _, judge, faces, train = setup
    cfg = SMALL.model_copy(update={"attacks": ["universal_key", "bim"], "universal_keys": "shared"})
    res = run_key_security(get_method("rofi"), KEY, faces, train, judge, cfg, progress=False)
    assert set(res.invalid) == {"universal_key", "bim"}, res.invalid
    assert all("restore_tensor does not reproduce restore()" in inv.reason for inv in res.invalid.values())
    assert res.invalid["bim"].control.same_person_rate == 1.0  # the sealed original does come back
    assert res.universal_key_black_box is not None and res.bim_black_box is not None
    assert res.metrics()["key_security.universal_key.protection_rate"].value is None


def test_skips_are_reported_with_their_reason(setup, tiny_corpus):
    corpus, judge, faces, train = setup
    cfg = SMALL.model_copy(update={"attacks": ["universal_key", "bim"]})
    res = run_key_security(KeyedShuffle(), KEY, faces, train, judge, cfg, progress=False)
    assert set(res.skipped) == {"universal_key", "bim"} and all("restore_tensor" in v and "black-box" in v for v in res.skipped.values())
    assert res.universal_key_black_box is not None and res.bim_black_box is not None and not res.invalid
    m = res.metrics()
    assert m["key_security.universal_key.protection_rate"].n == 0 and "skipped" in m["key_security.universal_key.protection_rate"].note
    assert m["key_security.universal_key_black_box.protection_rate"].value == 1.0
    irreversible = key_security_on_corpus(corpus, get_method("blur"), None, progress=False)
    assert set(irreversible.skipped) == {"brute_force", "universal_key", "bim", "diversity"}
    assert "not reversible" in irreversible.skipped["bim"]


def test_config_refuses_mistakes():
    with pytest.raises(ValueError, match="bim_eps"):
        KeySecurityConfig(bim_eps=[0.0])
    with pytest.raises(ValueError):
        KeySecurityConfig(brute_force_kyes=10)
    with pytest.raises(ValueError):
        KeySecurityConfig(attacks=["telepathy"])


def test_harness_task_metrics_pass_the_leaderboard_ranges(tiny_corpus, tmp_path):
    from mema.leaderboard.schema import check_metric

    assert "key-security" not in TASKS  # optional: minutes per method at full size
    out = tmp_path / "run"
    cfg = EvalConfig(tasks=["identity", "key-security"], recognisers=["sface"], key_security=SMALL)
    res = Evaluation(load_corpus(tiny_corpus), KeyedBlend(), out, cfg, KEY, progress=False).run()
    m = res.metrics
    for name in ("key_security.brute_force.valid", "key_security.universal_key.valid", "key_security.bim.valid",
                 "key_security.brute_force.keys_succeeded", "key_security.brute_force.pairs_succeeded", "key_security.universal_key.protection_rate",
                 "key_security.universal_key.psnr", "key_security.bim.eps_0.05.success_rate", "key_security.bim_defended.eps_0.05.success_rate",
                 "key_security.diversity.pixel_std", "key_security.diversity.identity_cosine_distance"):
        assert m[name].n > 0 and m[name].value is not None, name
    for name, metric in m.items():
        check_metric(name, metric)
    assert m["key_security.brute_force.keys_succeeded"].value == 0
    assert res.seeds["brute_force_keys"] == 8_000_000 and "key_security" in res.timings
    saved = json.loads((out / "key_security.json").read_text())
    assert saved["judge"]["threshold"] == res.evaluators["recognisers"]["sface"]["threshold"]  # one calibration for both
    text = (out / "key_security.json").read_text() + (out / "results.json").read_text()
    assert KEY.secret.hex() not in text and str(tiny_corpus) not in text


def test_cli_mentions_the_task_and_refuses_a_bad_config(tiny_corpus, tmp_path):
    h = subprocess.run([sys.executable, "-m", "mema.cli.eval", "--help"], capture_output=True, text=True)
    assert "key-security" in h.stdout and "--key-security-config" in h.stdout
    bad = tmp_path / "ks.json"
    bad.write_text('{"brute_force_keys": 0}')
    r = subprocess.run([sys.executable, "-m", "mema.cli.eval", "--quiet", "--method", "tests.toy_methods:KeyedBlend", "--dataset", str(tiny_corpus),
                        "--out", str(tmp_path / "o"), "--tasks", "key-security", "--key-security-config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "brute_force_keys" in r.stderr and "Traceback" not in r.stderr, r.stderr
