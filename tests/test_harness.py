"""mema-eval end to end on the tiny corpus (a pipeline-test size: figures here mean nothing)."""

import json
import subprocess
import sys

import pytest

from mema.corpus.store import load_corpus
from mema.evaluation.harness import EvalConfig, Evaluation
from mema.evaluation.report import write_report
from mema.evaluation.results import Results
from mema.keys import generate_key, write_key
from mema.methods import get_method


@pytest.fixture(scope="module")
def identity_run(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "identity"
    ev = Evaluation(load_corpus(tiny_corpus), get_method("identity"), out, EvalConfig(), progress=False)
    res = ev.run()
    write_report(out, res, ev)
    return out, res


def test_results_json_is_typed_and_complete(identity_run):
    out, res = identity_run
    loaded = Results.model_validate_json((out / "results.json").read_text())
    assert loaded.corpus.n_samples == 16 and loaded.method["name"] == "identity"
    for name in ("sface", "dlib-resnet", "periocular"):
        assert loaded.evaluators["recognisers"][name]["sha256"]
        assert loaded.metrics[f"identity.{name}.id_dis"].n > 0
    assert loaded.evaluators["classifier"]["sha256"]
    assert {"anonymize", "measure"} <= set(loaded.timings)
    shares = [t for t in loaded.timings if t.startswith("measure.")]  # each task's share of the measure stage
    assert {"measure.classification", "measure.gate", "measure.identity", "measure.segmentation", "measure.geometry"} <= set(shares)
    assert sum(loaded.timings[t].seconds for t in shares) <= loaded.timings["measure"].seconds + 0.01
    assert loaded.evaluators["recognisers"]["seconds"]["embed_outputs"] >= 0
    assert all(m.n >= 0 for m in loaded.metrics.values())
    with pytest.raises(Exception):
        Results.model_validate({**json.loads((out / "results.json").read_text()), "extra": 1})


def test_torch_runs_on_the_pinned_thread_count_during_a_run_and_is_restored_after(tiny_corpus, tmp_path):
    """Figures must not depend on the machine's cores: the method runs on the pinned count, the run records it,
    and torch is left as it was."""
    import numpy as np
    import torch

    from mema.evaluation.harness import EVAL_TORCH_THREADS
    from mema.methods import MethodInfo

    seen = []

    class Probe:
        info = MethodInfo(name="thread-probe", version="0", licence="none")

        def anonymize(self, images, key=None):
            seen.append(torch.get_num_threads())
            return np.ascontiguousarray(images[:, ::-1])

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = Evaluation(load_corpus(tiny_corpus), Probe(), tmp_path / "probe", EvalConfig(tasks=["classification"]), progress=False).run()
        assert seen and set(seen) == {EVAL_TORCH_THREADS} and res.environment["torch_threads"] == EVAL_TORCH_THREADS
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_identity_method_is_the_no_protection_reference(identity_run):
    _, res = identity_run
    m = res.metrics
    for name in ("sface", "dlib-resnet"):
        assert m[f"identity.{name}.id_dis"].value == pytest.approx(0.0, abs=1e-5)
        assert m[f"identity.{name}.same_person_rate"].value == 1.0
        assert m[f"identity.{name}.rank1_match"].value == m[f"identity.{name}.rank1_match_original"].value
    assert m["classification.kappa_vs_original"].value == pytest.approx(1.0)
    assert m["classification.top1"].value == m["classification.top1_original"].value
    assert m["geometry.landmark_error_eye"].value == pytest.approx(0.0, abs=1e-6)
    assert m["segmentation.dice"].value == m["segmentation.dice_original"].value  # same pixels, same masks
    assert m["segmentation.dice"].note.startswith("n_ref=4")


def test_samples_jsonl_and_report(identity_run, tiny_corpus):
    out, _ = identity_run
    rows = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(r["input_sha256"] == r["output_sha256"] for r in rows)  # identity: same bytes
    text = json.dumps(rows) + (out / "results.json").read_text()
    assert str(tiny_corpus) not in text  # no local paths in results
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 16 and "protection" in page and 'class="privacy-utility"' in page  # plot: inline SVG


def test_reversible_method_restore_and_key(tiny_corpus, tmp_path):
    key_file = tmp_path / "k.key"
    key = generate_key()
    write_key(key_file, key)
    out = tmp_path / "shuffle"
    r = subprocess.run(
        [sys.executable, "-m", "mema.cli.eval", "--method", "tests.toy_methods:KeyedShuffle", "--dataset", str(tiny_corpus),
         "--out", str(out), "--key", str(key_file), "--quiet", "--tasks", "identity,reversibility", "--recognisers", "sface"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    res = Results.model_validate_json((out / "results.json").read_text())
    assert res.key_id == key.key_id
    assert res.metrics["reversibility.psnr"].value == 100.0 and res.metrics["reversibility.ssim"].value == pytest.approx(1.0)
    assert res.metrics["reversibility.sface.same_person_rate_restored"].value == 1.0
    assert res.metrics["identity.sface.protection_rate"].value > 0.5
    logs = r.stdout + r.stderr + (out / "results.json").read_text() + (out / "samples.jsonl").read_text()
    assert key.secret.hex() not in logs and json.loads(key_file.read_text())["secret"] not in logs


def test_reversible_method_without_a_key_uses_the_fixed_evaluation_key(tiny_corpus, tmp_path):
    """Re-runs (leaderboard verification) must see the same outputs, so the default key is fixed."""
    from mema.evaluation.harness import EVAL_KEY_SEED
    from mema.keys import key_from_seed

    ids = []
    for run in ("a", "b"):
        r = subprocess.run(
            [sys.executable, "-m", "mema.cli.eval", "--method", "tests.toy_methods:KeyedShuffle", "--dataset", str(tiny_corpus),
             "--out", str(tmp_path / run), "--quiet", "--tasks", "reversibility", "--limit", "4"],
            capture_output=True, text=True,
        )
        assert r.returncode == 0, r.stderr
        res = Results.model_validate_json((tmp_path / run / "results.json").read_text())
        ids.append((res.key_id, res.seeds.get("key")))
    assert ids[0] == ids[1] == (key_from_seed(EVAL_KEY_SEED).key_id, EVAL_KEY_SEED)
    rows = [(tmp_path / run / "samples.jsonl").read_text() for run in ("a", "b")]
    assert rows[0] == rows[1]


def test_resume_redoes_only_missing_samples(tiny_corpus, tmp_path):
    corpus = load_corpus(tiny_corpus)
    out = tmp_path / "blur"
    cfg = EvalConfig(tasks=["classification"])
    first = Evaluation(corpus, get_method("blur"), out, cfg, progress=False).run()
    victim = sorted((out / "outputs").glob("*.png"))[3]
    victim.unlink()
    with open(out / "outputs.jsonl", "a") as fh:
        fh.write('{"id": "torn')  # a torn line from a kill
    second = Evaluation(corpus, get_method("blur"), out, cfg, progress=False).run()
    assert victim.exists()
    assert second.metrics["classification.top1"] == first.metrics["classification.top1"]


@pytest.mark.parametrize(
    "args,match",
    [
        (["--method", "nope"], "unknown method"),
        (["--method", "tests.toy_methods:WrongShape"], "wrong-shape.outputs returned images of shape"),
        (["--method", "identity", "--key", "/nonexistent.key"], "does not exist"),
        (["--method", "identity", "--dataset", "/nonexistent-corpus"], "dataset.json: missing"),
        (["--method", "identity", "--tasks", "identity,telepathy"], "unknown task"),
    ],
)
def test_cli_errors_are_clear(tiny_corpus, tmp_path, args, match):
    cmd = [sys.executable, "-m", "mema.cli.eval", "--quiet", "--out", str(tmp_path / "o")]
    if "--dataset" not in args:
        cmd += ["--dataset", str(tiny_corpus)]
    r = subprocess.run(cmd + args, capture_output=True, text=True)
    assert r.returncode == 2 and match in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_cli_ls_and_help():
    r = subprocess.run([sys.executable, "-m", "mema.cli.eval", "ls"], capture_output=True, text=True)
    assert r.returncode == 0 and all(n in r.stdout for n in ("identity", "mosaic", "dp-pix"))
    h = subprocess.run([sys.executable, "-m", "mema.cli.eval", "--help"], capture_output=True, text=True)
    assert "protection rate" in h.stdout and "--key" in h.stdout


def test_limit_takes_whole_identities_in_a_seeded_order(tiny_corpus):
    from collections import Counter

    from mema.evaluation.harness import limited

    records = load_corpus(tiny_corpus).split("test")
    subset = limited(records, 8, seed=0)
    assert len(subset) == 8 and [r.id for r in subset] == sorted(r.id for r in subset)
    per_identity = Counter(r.identity for r in subset)
    assert all(per_identity[i] == sum(r.identity == i for r in records) for i in per_identity)  # no identity split
    assert [r.id for r in limited(records, 8, seed=0)] == [r.id for r in subset]  # deterministic
    assert len({r.disease for r in subset}) == 4  # the tiny test split has one two-photo identity per class
    assert limited(records, None, 0) == sorted(records, key=lambda r: r.id)


def test_a_corpus_without_gallery_is_refused_for_face_matching_only(corpus_copy, tmp_path):
    """Generated corpora may hold one photo per identity: the identity task says what it needs, others still run."""
    import shutil

    from mema.corpus.store import load_info, write_index
    from mema.evaluation.harness import EvalError

    corpus = load_corpus(corpus_copy)
    shutil.rmtree(corpus_copy / "gallery")
    info = load_info(corpus_copy)
    write_index(corpus_copy, [r for r in corpus.records if r.split != "gallery"], name="my-generated", version="0",
                description=info.description, licence=info.licence, research_only=True, builder={})
    corpus = load_corpus(corpus_copy)
    with pytest.raises(EvalError, match="no gallery split, which the identity, adaptive-attack task"):
        Evaluation(corpus, get_method("identity"), tmp_path / "o", EvalConfig(tasks=["identity", "adaptive-attack", "classification"]))
    with pytest.raises(EvalError, match="--tasks classification"):
        Evaluation(corpus, get_method("identity"), tmp_path / "o", EvalConfig(tasks=["identity", "classification"]))
    ev = Evaluation(corpus, get_method("identity"), tmp_path / "o", EvalConfig(tasks=["classification"]))  # accepted
    assert not ev.integrity.registered  # scored under its own hash, marked unofficial


def test_adaptive_attack_needs_the_identity_task_and_a_recogniser_it_can_learn_with(tiny_corpus, tmp_path):
    from mema.evaluation.harness import EvalError

    corpus = load_corpus(tiny_corpus)
    with pytest.raises(EvalError, match="builds on the identity task"):
        Evaluation(corpus, get_method("identity"), tmp_path / "o", EvalConfig(tasks=["adaptive-attack"]))
    with pytest.raises(EvalError, match="needs one of the recognisers"):
        Evaluation(corpus, get_method("identity"), tmp_path / "o",
                   EvalConfig(tasks=["identity", "adaptive-attack"], recognisers=["dlib-resnet"]))


# --- trustworthy re-runs: stale outputs, tampered corpora, splits, method failures -----------------------


def test_an_output_folder_of_another_run_is_refused(tiny_corpus, tmp_path):
    from mema.evaluation.harness import EvalError

    corpus = load_corpus(tiny_corpus)
    out = tmp_path / "x"
    cfg = EvalConfig(tasks=["classification"], limit=4)
    Evaluation(corpus, get_method("blur"), out, cfg, progress=False).run()
    with pytest.raises(EvalError, match="holds outputs of another run.*method: folder has 'blur', this run 'identity'"):
        Evaluation(corpus, get_method("identity"), out, cfg, progress=False).run()


def test_log_rows_of_another_input_are_redone(tiny_corpus, tmp_path):
    corpus = load_corpus(tiny_corpus)
    out = tmp_path / "y"
    cfg = EvalConfig(tasks=["classification"], limit=4)
    Evaluation(corpus, get_method("blur"), out, cfg, progress=False).run()
    rows = [json.loads(l) for l in (out / "outputs.jsonl").read_text().splitlines()]
    rows[0]["input_sha256"] = "0" * 64  # as if that photo had changed since
    (out / "outputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = Evaluation(corpus, get_method("blur"), out, cfg, progress=False)
    res = ev.run()
    assert res.timings["anonymize"].images == 1  # only that sample was redone, and timed


def test_a_tampered_corpus_is_refused(corpus_copy, tmp_path):
    from mema.evaluation.integrity import IntegrityError

    corpus = load_corpus(corpus_copy)
    victim = corpus.image_path(corpus.split("test")[0])
    data = bytearray(victim.read_bytes())
    data[-20] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="differs from its record"):
        Evaluation(load_corpus(corpus_copy), get_method("identity"), tmp_path / "o", EvalConfig(), progress=False)


def test_edited_metadata_is_refused_and_never_reported_under_the_registered_name(corpus_copy, tmp_path):
    from mema.corpus.store import write_index, load_info
    from mema.evaluation.integrity import IntegrityError

    meta = corpus_copy / "test" / "metadata.jsonl"
    lines = meta.read_text().splitlines()
    row = json.loads(lines[0])
    row["age"] = (row["age"] or 30) + 1
    meta.write_text("\n".join([json.dumps(row)] + lines[1:]) + "\n")
    with pytest.raises(IntegrityError, match="metadata was edited"):
        Evaluation(load_corpus(corpus_copy), get_method("identity"), tmp_path / "o", EvalConfig(), progress=False)
    # Consistently re-indexed under the registered name: still refused.
    from mema.corpus.store import parse_metadata

    records = [r for s in ("train", "dev", "val", "test", "gallery") for r in parse_metadata(corpus_copy / s / "metadata.jsonl")[0]]
    info = load_info(corpus_copy)
    write_index(corpus_copy, records, name=info.name, version=info.version, description=info.description, licence=info.licence,
                research_only=True, builder=info.builder)
    with pytest.raises(IntegrityError, match="not the registered"):
        Evaluation(load_corpus(corpus_copy), get_method("identity"), tmp_path / "o2", EvalConfig(), progress=False)


def test_val_is_never_scored(tiny_corpus, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mema.cli.eval", "--method", "identity", "--dataset", str(tiny_corpus), "--split", "val",
                        "--quiet", "--out", str(tmp_path / "v")], capture_output=True, text=True)
    assert r.returncode == 2 and "val" in r.stderr and "calibrat" in r.stderr and "Traceback" not in r.stderr


def test_a_method_failure_is_one_line_and_the_run_resumes(tiny_corpus, tmp_path):
    out = tmp_path / "crash"
    cmd = [sys.executable, "-m", "mema.cli.eval", "--method", "tests.toy_methods:Crashes", "--dataset", str(tiny_corpus),
           "--quiet", "--out", str(out), "--tasks", "classification", "--batch-size", "4"]
    import os

    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MEMA_TEST_CRASH": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "method 'crashes' failed in outputs on the batch of 4 samples" in r.stderr and "out of cheese" in r.stderr
    assert len((out / "outputs.jsonl").read_text().splitlines()) == 4  # the first batch was kept
    r = subprocess.run(cmd, capture_output=True, text=True)  # the method works again; the run resumes
    assert r.returncode == 0, r.stderr


def test_noise_protects_but_the_gate_says_it_is_no_face(tiny_corpus, tmp_path):
    corpus = load_corpus(tiny_corpus)
    res = Evaluation(corpus, get_method("tests.toy_methods:Noise"), tmp_path / "n", EvalConfig(tasks=["identity"]), progress=False).run()
    m = res.metrics
    assert m["gate.face_detected_rate"].value == 0.0 and "originals: 16 of 16" in m["gate.face_detected_rate"].note
    assert m["privacy.worst_case_protection_face"].value is None


def test_every_attacker_runs_and_the_worst_case_is_their_minimum(identity_run):
    _, res = identity_run
    m = res.metrics
    attackers = {k.split(".", 2)[2]: v.value for k, v in m.items() if k.startswith("privacy.protection.") and v.value is not None}
    assert {"sface", "dlib-resnet", "periocular", "periocular-sface", "linkability", "same-key", "adaptive", "deanon"} <= set(attackers)
    assert m["privacy.worst_case_protection"].value == pytest.approx(min(attackers.values()))
    assert m["gate.face_detected_rate"].value == 1.0  # the identity method keeps every face
    assert res.evaluators["recognisers"]["attacker_set"]["split"] == "train"
