"""Shared fixtures. The corpus used here is the 'tiny' preset: a pipeline test size, too small to learn from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MEMA_TORCH_THREADS", "1")
# Tiny nnU-Net schedule: the tests check the pipeline, not the segmenter's quality.
os.environ.setdefault("MEMA_NNUNET_EPOCHS", "1")
os.environ.setdefault("MEMA_NNUNET_ITERATIONS", "3")
# The same for the trained attackers (periocular recogniser, its per-method fine-tune, the de-anonymizer).
os.environ.setdefault("MEMA_PERIOCULAR_EPOCHS", "2")
os.environ.setdefault("MEMA_ATTACK_FINETUNE_EPOCHS", "1")
os.environ.setdefault("MEMA_DEANON_EPOCHS", "1")

import mema  # noqa: E402  (sets hub-offline variables)

mema.runtime.set_torch_threads()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from mema.generation.build import build_corpus
    from mema.generation.presets import PRESETS

    root = tmp_path_factory.mktemp("corpora") / "tiny"
    build_corpus(PRESETS["tiny"], root, workers=2, progress=False)
    return root


@pytest.fixture
def corpus_copy(tiny_corpus, tmp_path) -> Path:
    """A private copy of the tiny corpus that a test may damage."""
    dest = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, dest, ignore=shutil.ignore_patterns(".build"))
    return dest


@pytest.fixture(scope="session", autouse=True)
def _private_mema_home(tmp_path_factory):
    """Caches (evaluators, corpora) go to a per-session folder, never the user's ~/.cache/mema."""
    home = tmp_path_factory.mktemp("mema_home")
    old = os.environ.get("MEMA_HOME")
    os.environ["MEMA_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MEMA_HOME", None)
    else:
        os.environ["MEMA_HOME"] = old
