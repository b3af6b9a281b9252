"""The per-disease kappa behind docs/methods/compare-with-papers.md (scripts/per_disease_kappa.py)."""

import importlib.util
import json
from pathlib import Path

import pytest
from sklearn.metrics import cohen_kappa_score

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows():
    orig = ["BCC", "BCC", "Ptosis", "Ptosis", "Normal", "BCC", "Ptosis", "Normal"]
    out = ["BCC", "Normal", "Ptosis", "Ptosis", "Normal", "Ptosis", "Ptosis", "BCC"]
    return [{"id": f"s{i}", "identity": f"p{i // 2}", "disease": o, "pred_original": o, "pred_output": y}
            for i, (o, y) in enumerate(zip(orig, out))]


def test_kappa_per_disease_is_sklearns_one_vs_rest():
    mod = _script("per_disease_kappa")
    rows = _rows()
    got = mod.kappa_by_disease(rows)
    for d in ("BCC", "Ptosis", "Normal"):
        a = [r["pred_original"] == d for r in rows]
        b = [r["pred_output"] == d for r in rows]
        assert got[d]["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-4)
        assert got[d]["n"] == 8 and got[d]["n_called_on_original"] == sum(a)


def test_kappa_is_undefined_when_neither_rater_ever_calls_the_disease(tmp_path, capsys):
    mod = _script("per_disease_kappa")
    rows = [{**r, "disease": "TAO" if i == 0 else r["disease"]} for i, r in enumerate(_rows())]
    assert mod.kappa_by_disease(rows)["TAO"]["kappa"] is None  # never called on either side: no agreement figure
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.jsonl").write_text("\n".join(json.dumps(r) for r in _rows()))
    (run / "run.json").write_text(json.dumps({"method": "m", "corpus": "c 1"}))
    assert mod.main([str(run)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["m on c 1"]  # named by method and corpus, never by the folder path
    assert mod.main([str(tmp_path / "missing")]) == 2
