"""Builder determinism, caching, resume after a kill, and refusal of foreign folders."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mema.corpus.store import load_info
from mema.generation.build import BuildError, build_corpus
from mema.generation.presets import PRESETS
from mema.generation.sampling_plan import identity_plan


def test_same_seed_same_manifest_and_cached_reuse(tiny_corpus, tmp_path):
    again = build_corpus(PRESETS["tiny"], tmp_path / "again", workers=1, progress=False)
    assert load_info(again).manifest_sha256 == load_info(tiny_corpus).manifest_sha256
    mtime = (again / "dataset.json").stat().st_mtime_ns
    build_corpus(PRESETS["tiny"], again, workers=1, progress=False)  # cached: nothing rewritten
    assert (again / "dataset.json").stat().st_mtime_ns == mtime


def test_other_seed_other_manifest(tiny_corpus, tmp_path):
    cfg = PRESETS["tiny"].model_copy(update={"seed": 1, "identities_per_class": {"train": 1, "val": 0, "test": 0}})
    other = build_corpus(cfg, tmp_path / "seed1", workers=1, progress=False)
    assert load_info(other).manifest_sha256 != load_info(tiny_corpus).manifest_sha256


def test_refuses_foreign_or_mismatched_folders(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="not a MeMa build folder"):
        build_corpus(PRESETS["tiny"], tmp_path / "foreign", workers=1, progress=False)


def test_killed_build_resumes_to_the_same_corpus(tiny_corpus, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mema.cli.data", "build", "tiny", "--out", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    done = out / ".build" / "done"
    deadline = time.time() + 120
    while time.time() < deadline and (not done.exists() or len(list(done.glob("*.json"))) < 5):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list(done.glob("*.json")))
    assert 5 <= n_done < len(identity_plan(PRESETS["tiny"])), "the kill should land mid-build"
    assert not (out / "dataset.json").exists()
    # a changed config must not silently mix with the partial build
    with pytest.raises(BuildError, match="partial build with other settings"):
        build_corpus(PRESETS["tiny"].model_copy(update={"seed": 5}), out, workers=1, progress=False)
    build_corpus(PRESETS["tiny"], out, workers=1, progress=False)
    assert load_info(out).manifest_sha256 == load_info(tiny_corpus).manifest_sha256
    assert not list(out.rglob(".*.tmp"))
    records = [json.loads(l) for s in ("train", "val", "test", "gallery") for l in (out / s / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == len({r["id"] for r in records}) == 96
