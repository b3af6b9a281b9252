"""The shipped reference evaluators: installed only as verified copies (mema/evaluators/bundle.py)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from mema.corpus.registry import registered_hash
from mema.evaluators import bundle


def _info():
    return SimpleNamespace(name="mema-real-faces", version="1.0", manifest_sha256=registered_hash("mema-real-faces", "1.0"))


def test_install_replaces_a_cached_evaluator_that_was_edited(tmp_path):
    record = bundle.install(tmp_path, _info())
    assert record is not None and record["sha256"] == bundle.shipped_bundle_sha256("mema-real-faces", "1.0")
    rel, want = next(iter(record["files"].items()))
    (tmp_path / rel).write_bytes(b"not an evaluator")
    bundle.install(tmp_path, _info())
    assert bundle._sha(tmp_path / rel) == want
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_shipped_file_that_differs_from_its_bundle_is_refused(tmp_path, monkeypatch):
    src = bundle.shipped_dir("mema-real-faces", "1.0")
    copy = tmp_path / "shipped"
    shutil.copytree(src, copy)
    rel = next(iter(bundle.load_shipped(_info())[1]["files"]))
    (copy / rel).write_bytes(b"tampered")
    monkeypatch.setattr(bundle, "shipped_dir", lambda name, version: copy)
    with pytest.raises(bundle.BundleError, match="differs from bundle.json"):
        bundle.install(tmp_path / "cache", _info())
