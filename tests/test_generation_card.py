"""mema-generate card says what the run made: every claim checked against the run's records, per backend;
attributes measured on the images; held-out leakage; Croissant validated with mlcroissant.

Pipeline sizes: 4 'real' DCGAN faces, 6 samples, a reference classifier trained on the tiny procedural corpus
(too small to be accurate; the tests check that its predictions are what the card reports, not its quality).
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mema.corpus.schema import SPLITS
from mema.cli.generate import main
from tests.generation_data import check_card, check_croissant, dcgan_faces, write_real_set
from tests.tiny_onnx import tiny_arcface_onnx

THRESHOLDS = {"sface": 0.3, "dlib-resnet": 0.3, "arcface": 0.3}  # DCGAN faces are less distinct than people


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("gencard")
    real = write_real_set(root / "hospital_private_photos", dcgan_faces(4, seed=31))
    assert main(["stats", "--train_data_dir", str(real), "--output_dir", str(root / "stats")]) == 0
    (root / "thr.json").write_text(json.dumps(THRESHOLDS))
    return root, real


def _sample_and_filter(root, real, backend, *, holdout=None):
    samples, filt = root / f"samples-{backend}", root / f"filter-{backend}"
    assert main(["sample", "--backend", backend, "--real_stats", str(root / "stats" / "real_stats.json"), "--num_samples", "6",
                 "--output_dir", str(samples), "--resolution", "128", "--seed", "2", "--quiet"]) == 0
    extra = ["--holdout", holdout] if holdout else []
    assert main(["filter", "--samples", str(samples), "--train_data_dir", str(real), "--output_dir", str(filt), "--on_no_face", "keep",
                 "--thresholds", str(root / "thr.json"), *extra]) == 0
    return samples, filt


@pytest.fixture(scope="module")
def classifier(tiny_corpus):
    """The eye-crop reference classifier, trained (tiny) on the tiny procedural corpus as mema-eval trains it."""
    from mema.corpus.store import load_corpus
    from mema.evaluators.reference import ReferenceEvaluators

    ev = ReferenceEvaluators(load_corpus(tiny_corpus), progress=False)
    ev.classifier()
    return ev.folder


def test_procedural_card_with_review_measured_attributes_and_held_out_leakage(base, classifier, tmp_path):
    root, real = base
    onnx = tiny_arcface_onnx(tmp_path / "tiny_arcface.onnx")
    samples, filt = _sample_and_filter(root, real, "procedural", holdout=f"arcface={onnx}")
    review, corpus = root / "review-proc", root / "corpus-proc"
    assert main(["review", "export", "--samples", str(samples), "--filter", str(filt), "--output_dir", str(review)]) == 0
    rows = list(csv.DictReader(open(review / "review.csv")))
    assert len(rows) >= 3
    rows[0]["decision"] = "reject"
    for r in rows[1:]:
        r["decision"] = "accept"
    rows[1]["new_disease"], rows[1]["new_severity"] = "Strab", "heavy"
    with open(review / "review.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["review", "import", "--review", str(review)]) == 0
    assert main(["card", "--samples", str(samples), "--filter", str(filt), "--review", str(review), "--output_dir", str(corpus),
                 "--name", "mema-proc-card", "--splits", "train=0.5,test=0.5", "--train_data_dir", str(real),
                 "--classifier", str(classifier), "--bootstrap", "200", "--licence", "CC BY-NC 4.0"]) == 0
    facts = check_card(corpus, samples, filt, review, real, licence="CC BY-NC 4.0", classifier=classifier)
    assert facts["review"]["n_rejected"] == 1 and facts["review"]["n_relabelled"] == 1
    text = (corpus / "README.md").read_text()
    assert "measured after filtering by the held-out arcface, which did not filter" in text
    assert "| arcface | held-out |" in text and "| sface | filter |" in text
    att = json.loads((corpus / "card" / "attributes.json").read_text())
    assert att["sign"]["agreement_generated"]["n"] == len(rows) - 1
    # no real patient path, file name or image anywhere in the outputs
    from mema.weights import sha256_file

    real_shas = {sha256_file(p) for p in real.glob("*.png")}
    for f in corpus.rglob("*"):
        if f.is_file():
            assert sha256_file(f) not in real_shas, f
            if f.suffix in (".json", ".jsonl", ".md", ".csv", ".html", ".txt"):
                assert "hospital_private_photos" not in f.read_text() and "patient_0" not in f.read_text(), f


def test_held_out_recogniser_measures_but_never_decides(base, tmp_path):
    """The same samples filtered with and without a held-out recogniser keep the same samples; the held-out
    figure after filtering is its own leak rate over the kept samples (recomputed from per_sample.jsonl)."""
    root, real = base
    onnx = tiny_arcface_onnx(tmp_path / "tiny_arcface.onnx")
    samples, filt = root / "samples-procedural", root / "filter-procedural"  # made by the test above, or here
    if not (filt / "filter.json").is_file():
        samples, filt = _sample_and_filter(root, real, "procedural", holdout=f"arcface={onnx}")
    plain = tmp_path / "plain"
    assert main(["filter", "--samples", str(samples), "--train_data_dir", str(real), "--output_dir", str(plain), "--on_no_face", "keep",
                 "--thresholds", str(root / "thr.json")]) == 0
    read = lambda f: {json.loads(x)["id"]: json.loads(x) for x in (f / "per_sample.jsonl").read_text().splitlines()}  # noqa: E731
    with_h, without = read(filt), read(plain)
    assert {k: v["decision"] for k, v in with_h.items()} == {k: v["decision"] for k, v in without.items()}
    rep = json.loads((filt / "filter.json").read_text())
    assert rep["filtered_by"] == ["sface", "dlib-resnet"] and rep["held_out"] == ["arcface"]
    h = rep["recognisers"]["arcface"]
    assert h["role"] == "held-out" and h["threshold_l2"] == 0.3
    kept = [p for p in with_h.values() if p["decision"] == "keep" and p["face_found"]]
    leaks = [p["recognisers"]["arcface"]["min_image_l2"] < 0.3 or p["recognisers"]["arcface"]["min_centroid_l2"] < 0.3 for p in kept]
    assert h["n_measured_after"] == len(kept) and h["leakage_rate_after"] == round(float(np.mean(leaks)), 4)
    assert rep["leakage_rate_after_held_out"] == {"arcface": h["leakage_rate_after"]}
    # a recogniser that filters cannot also be the held-out one; refused before anything is written
    assert main(["filter", "--samples", str(samples), "--train_data_dir", str(real), "--output_dir", str(tmp_path / "bad"),
                 "--holdout", "sface"]) == 2
    assert not (tmp_path / "bad").exists()


def test_dcgan_card_refuses_labels_as_shown_and_marks_them_intended(base, capsys):
    root, real = base
    samples, filt = _sample_and_filter(root, real, "dcgan")
    corpus = root / "corpus-dcgan"
    capsys.readouterr()
    assert main(["card", "--samples", str(samples), "--filter", str(filt), "--output_dir", str(corpus), "--name", "mema-dcgan-card"]) == 2
    assert "draws no disease signs" in capsys.readouterr().err and not corpus.exists()
    assert main(["card", "--samples", str(samples), "--filter", str(filt), "--output_dir", str(corpus), "--name", "mema-dcgan-card",
                 "--splits", "train=1", "--labels", "intended"]) == 0
    facts = check_card(corpus, samples, filt, labels="intended")
    assert facts["labels"] == "intended" and facts["signs"] == "none"
    cro = json.loads((corpus / "croissant.json").read_text())
    disease = next(f for rs in cro["recordSet"] if rs["@id"] == "train" for f in rs["field"] if f["name"] == "disease")
    assert "not shown" in disease["description"]


def test_card_refuses_contradicting_inputs_before_writing(base, tmp_path, capsys):
    root, real = base
    samples, filt = root / "samples-dcgan", root / "filter-dcgan"
    if not (filt / "filter.json").is_file():
        samples, filt = _sample_and_filter(root, real, "dcgan")
    out = tmp_path / "c"
    common = ["card", "--samples", str(samples), "--filter", str(filt), "--output_dir", str(out), "--labels", "intended"]
    for extra, msg in ((["--classifier", str(tmp_path)], "pass --train_data_dir"), (["--splits", "train=1,holdout=1"], "unknown split"),
                       (["--name", "Bad Name"], "--name"), (["--train_data_dir", str(tmp_path / "nowhere")], "not a folder")):
        capsys.readouterr()
        assert main([*common, *extra]) == 2
        assert msg in capsys.readouterr().err and not out.exists(), extra
    # a filter folder made from other samples
    other = root / "samples-procedural" if (root / "samples-procedural").is_dir() else None
    if other is not None:
        assert main(["card", "--samples", str(other), "--filter", str(filt), "--output_dir", str(out)]) == 2 and not out.exists()


def test_w1_matches_scipy_and_its_bootstrap_interval_covers_the_truth():
    from scipy.stats import wasserstein_distance

    from mema.generation.attributes import bootstrap_rate, bootstrap_w1, w1

    rng = np.random.default_rng(0)
    for n, m in ((1, 1), (5, 9), (50, 20)):
        u, v = rng.normal(size=n), rng.normal(1, 2, size=m)
        assert abs(w1(u, v) - wasserstein_distance(u, v)) < 1e-12
    u, v = rng.integers(0, 3, 40), rng.integers(0, 5, 30)  # ties
    assert abs(w1(u, v) - wasserstein_distance(u, v)) < 1e-12
    r = bootstrap_w1(rng.normal(0, 1, 300), rng.normal(3, 1, 300), n_boot=300, seed=1)
    assert r["ci95"][0] < 3 < r["ci95"][1] and r["ci95"][0] > 2
    assert bootstrap_w1([], [1.0])["w1"] is None
    rate = bootstrap_rate(rng.random(400) < 0.3, n_boot=300)
    assert rate["ci95"][0] < 0.3 < rate["ci95"][1] and rate["n"] == 400


def test_procedural_build_croissant_loads_and_matches_its_files(tiny_corpus):
    check_croissant(tiny_corpus, allowed_warnings=("datePublished",))


def test_shipped_mema_mini_croissant_is_current_and_valid():
    """The shipped card is what the current writer makes from the shipped dataset.json, and mlcroissant loads it.
    (Its records are not iterated: the images are not shipped; test_procedural_build_croissant does that for a build.)"""
    import mlcroissant as mlc

    from mema.corpus.store import load_info
    from mema.generation.card import procedural_croissant

    root = Path(__file__).parents[1] / "data_cards" / "mema-mini"
    assert json.loads((root / "croissant.json").read_text()) == procedural_croissant(root, load_info(root))
    ds = mlc.Dataset(jsonld=str(root / "croissant.json"))
    assert not ds.metadata.ctx.issues.errors
    assert [w for w in ds.metadata.ctx.issues.warnings if "datePublished" not in w] == []
    assert {rs.uuid for rs in ds.metadata.record_sets} == {x for s in SPLITS for x in (s, f"{s}-image-files")}
