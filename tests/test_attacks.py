"""Key-security attacks on toy reversible methods: each attack must pass a keyed method and catch a weak one.

The tiny corpus is a pipeline-test size; figures here only need to separate strong from weak toys.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from mema.corpus.store import load_corpus
from mema.evaluation.attacks import (
    KeySecurityConfig,
    brute_force,
    bim,
    diversity,
    face_set,
    key_security_on_corpus,
    run_key_security,
    universal_key,
)
from mema.evaluation.harness import TASKS, EvalConfig, Evaluation
from mema.evaluation.judge import SamePersonJudge
from mema.evaluators.reference import ReferenceEvaluators
from mema.keys import key_from_seed
from mema.methods import get_method
from tests.toy_methods import FixedBlend, FragileBlend, KeyedBlend, KeyedShuffle

KEY = key_from_seed(42)


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
    assert weak.seeds == (8_000_000, 8_000_009)


def test_universal_key_recovers_a_smooth_key_from_plaintext_pairs_but_not_a_key_for_any_image(setup):
    _, judge, faces, train = setup
    held = faces.take(range(8))
    cfg = KeySecurityConfig(universal_steps=60, universal_lr=0.1, universal_keys="shared")
    weak = universal_key(FixedBlend(), KEY, train, held, judge, cfg, progress=False)
    assert not weak.key_has_effect and weak.protection_rate == 0.0
    shared = universal_key(KeyedBlend(), KEY, train, held, judge, cfg, progress=False)
    assert shared.final_train_l1 < shared.initial_train_l1 / 5 and shared.protection_rate <= 0.25
    any_image = universal_key(KeyedBlend(), KEY, train, held, judge, cfg.model_copy(update={"universal_keys": "per_image"}), progress=False)
    assert any_image.protection_rate >= 0.75 and any_image.psnr < 15


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
    delta = np.abs(spy.inputs[0].astype(int) - y8)
    assert 0 < delta.max() <= int(0.02 * 255)  # 8-bit adversarial image inside the L_inf ball


def test_diversity_is_zero_for_a_key_independent_method(setup):
    _, judge, faces, _ = setup
    four = faces.take(range(4))
    flat = diversity(FixedBlend(), four, judge, n_keys=4, progress=False)
    assert flat.pixel_std == 0.0 and flat.identity_cosine_distance == pytest.approx(0.0, abs=1e-9)
    keyed = diversity(KeyedBlend(), four, judge, n_keys=4, progress=False)
    assert keyed.pixel_std > 10 and keyed.identity_cosine_distance > 0.01


def test_skips_are_reported_with_their_reason(setup, tiny_corpus):
    corpus, judge, faces, train = setup
    cfg = KeySecurityConfig(attacks=["universal_key", "bim"])
    res = run_key_security(KeyedShuffle(), KEY, faces, train, judge, cfg, progress=False)
    assert set(res.skipped) == {"universal_key", "bim"} and all("restore_tensor" in v for v in res.skipped.values())
    m = res.metrics()
    assert m["key_security.universal_key.protection_rate"].n == 0 and "skipped" in m["key_security.universal_key.protection_rate"].note
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


SMALL = KeySecurityConfig(brute_force_keys=5, brute_force_images=4, universal_steps=10, universal_train_images=4, universal_heldout_images=4,
                          bim_images=4, bim_eps=[0.05], bim_steps=3, diversity_keys=3, diversity_images=4)


def test_harness_task_metrics_pass_the_leaderboard_ranges(tiny_corpus, tmp_path):
    from mema.leaderboard.schema import check_metric

    assert "key-security" not in TASKS  # optional: minutes per method at full size
    out = tmp_path / "run"
    cfg = EvalConfig(tasks=["identity", "key-security"], recognisers=["sface"], key_security=SMALL)
    res = Evaluation(load_corpus(tiny_corpus), KeyedBlend(), out, cfg, KEY, progress=False).run()
    m = res.metrics
    for name in ("key_security.brute_force.keys_succeeded", "key_security.brute_force.pairs_succeeded", "key_security.universal_key.protection_rate",
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
