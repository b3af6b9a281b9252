"""Age/gender estimation: offline models by default; deepface only when importable with local weights."""

import importlib.util

import pytest

from mema.generation import age_gender
from mema.generation.age_gender import OFFLINE, OfflineEstimator, age_gender_estimator


def test_offline_models_are_the_default(monkeypatch, capsys):
    monkeypatch.delenv("MEMA_AGE_GENDER", raising=False)
    assert isinstance(age_gender_estimator(), OfflineEstimator)
    assert f"age/gender: {OFFLINE}" in capsys.readouterr().err


def test_deepface_asked_for_but_not_installed_falls_back_and_says_so(monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepface" else real_find_spec(name, *a))
    monkeypatch.setenv("MEMA_AGE_GENDER", "deepface")
    est = age_gender_estimator()
    assert isinstance(est, OfflineEstimator) and est.name == OFFLINE
    assert "deepface asked for but deepface is not installed; using offline" in capsys.readouterr().err


def test_deepface_without_local_weights_is_never_downloaded(monkeypatch, tmp_path, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "deepface" else real_find_spec(name, *a))
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    assert isinstance(age_gender_estimator("deepface"), OfflineEstimator)
    err = capsys.readouterr().err
    assert "would download age_model_weights.h5, gender_model_weights.h5" in err and "using offline" in err
    # with both weight files on disk the deepface route is taken (its import happens only when predicting)
    (tmp_path / ".deepface" / "weights").mkdir(parents=True)
    for name in age_gender.DEEPFACE_WEIGHTS:
        (tmp_path / ".deepface" / "weights" / name).write_bytes(b"")
    assert isinstance(age_gender_estimator("deepface"), age_gender.DeepFaceEstimator)


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="offline, deepface"):
        age_gender_estimator("insightface")


def test_real_set_report_names_the_estimator(tmp_path, monkeypatch):
    import json

    from mema.generation.real_set import load_real_set
    from tests.generation_data import dcgan_faces, write_real_set

    monkeypatch.setenv("MEMA_AGE_GENDER", "deepface")
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path / "nothing"))  # no local weights: the offline models answer
    root = write_real_set(tmp_path / "real", dcgan_faces(2, seed=3))
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    (root / "metadata.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "age"}) + "\n" for r in rows))
    real = load_real_set(root)
    assert real.report()["age_gender_estimator"] == OFFLINE and all(i.age is not None for i in real.images)
