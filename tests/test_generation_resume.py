"""mema-generate sample: kill and resume gives the identical result; shards split one plan; misuse is refused."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mema.cli.generate import main
from tests.generation_data import tiny_generation_inputs

N = "10"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("genres")
    real = tiny_generation_inputs(root, real_faces=4, seed=3, num_faces=3)
    assert main(["finetune", "--pretrained_model_name_or_path", str(root / "w" / "stable-diffusion"), "--train_data_dir", str(real),
                 "--output_dir", str(root / "lora"), "--resolution", "32", "--rank", "4", "--max_train_steps", "1",
                 "--num_validation_images", "1", "--validation_steps", "1"]) == 0
    return root


def _args(root, out, *extra):
    return ["sample", "--pretrained_model_name_or_path", str(root / "w" / "stable-diffusion"), "--lora_dir", str(root / "lora"),
            "--ip_adapter", str(root / "w" / "ip-adapter"), "--reference_faces", str(root / "faces"), "--num_samples", N,
            "--output_dir", str(out), "--resolution", "32", "--num_inference_steps", "25", "--quiet", *extra]


def _result(out):
    recs = (out / "samples.jsonl").read_text()
    return recs, {p.name: p.read_bytes() for p in sorted((out / "images").glob("*.png"))}


@pytest.fixture(scope="module")
def reference(setup):
    out = setup / "ref"
    assert main(_args(setup, out)) == 0
    return _result(out)


def test_killed_sampling_resumes_to_the_identical_result(setup, reference):
    out = setup / "killed"
    env = {**os.environ, "MEMA_TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mema.cli.generate", *_args(setup, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    done = out / "done"
    deadline = time.time() + 120
    while time.time() < deadline and (not done.is_dir() or len(list(done.glob("*.json"))) < 2):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list(done.glob("*.json")))
    assert 2 <= n_done < int(N), "the kill should land mid-run"
    assert not (out / "samples.jsonl").exists()
    assert list((out / "shards").glob("*.lock")), "the killed run leaves its lock behind"
    # a resume with other settings is refused and names them
    assert main(_args(setup, out, "--seed", "1")) == 2
    assert main(_args(setup, out)) == 0  # takes over the dead run's lock, finishes the rest
    assert _result(out) == reference
    assert not list((out / "shards").glob("*.lock"))


def test_shards_split_one_plan_without_duplicates(setup, reference):
    out = setup / "sharded"
    assert main(_args(setup, out, "--shard", "1/3")) == 0
    assert not (out / "samples.jsonl").exists()
    assert main(_args(setup, out, "--shard", "0/3")) == 0
    assert main(_args(setup, out, "--shard", "2/3")) == 0
    assert _result(out) == reference


def test_a_shard_given_twice_is_refused(setup, capsys):
    out = setup / "twice"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "0-of-2.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # a live holder
    assert main(_args(setup, out, "--shard", "0/2")) == 2
    assert "shard 0/2 is already running" in capsys.readouterr().err
    assert main(_args(setup, out, "--shard", "2/2")) == 2


def _dcgan_args(stats, out, *extra):
    return ["sample", "--backend", "dcgan", "--real_stats", str(stats), "--num_samples", "6", "--output_dir", str(out),
            "--resolution", "64", "--seed", "4", "--quiet", *extra]


def test_processes_started_together_on_a_fresh_folder_share_one_plan(tmp_path):
    """Two shards started at the same moment on a folder that does not exist yet: neither refuses the other's
    half-written files, and together they give the single-process result."""
    stats = tmp_path / "real_stats.json"
    stats.write_text(json.dumps({"n_images": 2, "disease": {"BCC": 1, "Ptosis": 1}, "gender": {"female": 1, "male": 1},
                                 "age_bins": [0, 20, 30, 40, 50, 60, 70, 121], "age_hist": [0, 0, 1, 1, 0, 0, 0],
                                 "joint": {"BCC|female|2": 1, "Ptosis|male|3": 1}}))
    single = tmp_path / "single"
    assert main(_dcgan_args(stats, single)) == 0
    out = tmp_path / "fresh" / "samples"
    env = {**os.environ, "MEMA_TORCH_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "mema.cli.generate", *_dcgan_args(stats, out, "--shard", f"{k}/2")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-500:] for r in results]
    assert _result(out) == _result(single)
    assert json.loads((out / "plan.json").read_text()) == json.loads((single / "plan.json").read_text())
    assert not list((out / "shards").glob("*.lock"))


def test_start_run_from_many_threads_writes_one_plan(tmp_path):
    import threading

    from mema.generation.runner import start_run
    from mema.generation.stage import StageError

    out, calls, runs, errors = tmp_path / "job", [], [], []
    barrier = threading.Barrier(6)

    def payload():
        calls.append(1)
        time.sleep(0.2)  # a slow plan widens the window in which another starter looks at the folder
        return {"plan": list(range(5))}

    def start():
        barrier.wait()
        try:
            runs.append(start_run(out, {"seed": 1}, payload))
        except StageError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1 and len(runs) == 6 and all(r.plan == runs[0].plan for r in runs)
    with pytest.raises(StageError, match="differ: seed"):
        start_run(out, {"seed": 2}, payload)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(StageError, match="is not a job folder"):
        start_run(foreign, {"seed": 1}, payload)
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]


def test_one_provenance_writer_gives_the_builders_records():
    """runner.provenance gives, for the procedural renderer, the record mema-data build writes (so porting the
    build to the runner leaves its manifest hash unchanged), and names each backend's generator."""
    from mema.corpus.schema import Provenance
    from mema.generation.runner import provenance

    w = {"dcgan_digiface": "0" * 64}
    assert Provenance(**provenance("procedural", seed=5, attempt=2, weights=w)) == Provenance(
        backend="procedural", generator="dcgan-digiface+signs-v2", seed=5, attempt=2, weights=w)
    assert provenance("dcgan", seed=1, weights=w)["generator"] == "dcgan-digiface"
    assert provenance("diffusion", seed=1, weights=w, adapter_scale=0.3, route="ip-adapter-faceid")["generator"] == "sd15-lora+ip-adapter-faceid"
    assert provenance("diffusion", seed=1, weights=w)["generator"] == "sd15-lora"
