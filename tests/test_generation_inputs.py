"""mema-generate on bad input: labels, unreadable images, no faces, duplicates; leakage on real faces; review errors."""

import json

import numpy as np
import pytest

from mema.cli.generate import main
from mema.generation.real_set import RealSetError, load_real_set
from tests.generation_data import dcgan_faces, write_real_set


@pytest.fixture(scope="module")
def faces():
    return dcgan_faces(6, seed=11)


def test_unknown_and_missing_labels_are_refused_with_every_row(tmp_path, faces):
    root = write_real_set(tmp_path / "real", faces[:2], extra_rows=[
        {"file_name": "patient_00.png", "disease": "Glaucoma"},
        {"file_name": "patient_01.png"},
        {"file_name": "patient_01.png", "disease": "BCC", "gender": "x"},
    ])
    with pytest.raises(RealSetError) as exc:
        load_real_set(root)
    msg = str(exc.value)
    assert "row 3: unknown disease 'Glaucoma'" in msg and "row 4: no disease label" in msg and "row 5: unknown gender" in msg


def test_unreadable_no_face_and_duplicates_are_recorded_skips(tmp_path, faces):
    from mema.imageio import write_png

    root = write_real_set(tmp_path / "real", faces[:3], extra_rows=[
        {"file_name": "broken.jpg", "disease": "Conj", "age": 40, "gender": "male"},
        {"file_name": "noise.png", "disease": "Conj", "age": 40, "gender": "male"},
        {"file_name": "patient_00.png", "disease": "Ptosis", "age": 30, "gender": "female"},  # same photo again
    ])
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_png(root / "noise.png", np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    real = load_real_set(root)
    assert len(real.images) == 3
    reasons = {s["row"]: s["reason"] for s in real.skipped}
    assert reasons[4].startswith("unreadable") and reasons[5].startswith("no face") and reasons[6] == "duplicate: same bytes as row 1"
    rep = json.dumps(real.report())
    assert "broken" not in rep and "noise.png" not in rep and "patient_" not in rep  # rows and hashes only
    # the stats stage records them and still runs
    assert main(["stats", "--train_data_dir", str(root), "--output_dir", str(tmp_path / "stats")]) == 0
    stats_report = json.loads((tmp_path / "stats" / "real_set_report.json").read_text())
    assert stats_report["n_skipped"] == 3 and stats_report["skipped_by_reason"]["unreadable"] == 1


def test_labels_that_do_not_match_the_photos_are_refused_before_any_work(tmp_path, faces, capsys):
    """A row naming a file that is not there, a photo no row names, a photo labelled twice differently and a
    patient with two genders: each refused, all listed, before any image is read or any output written."""
    from mema.imageio import write_png

    root = write_real_set(tmp_path / "real", faces[:4], extra_rows=[
        {"file_name": "missing.png", "disease": "Conj"},
        {"file_name": "../outside.png", "disease": "Conj"},
        {"file_name": "patient_00.png", "disease": "BCC", "identity": "patient-0"},
        {"file_name": "patient_01.png", "disease": "Ptosis", "identity": "patient-0", "gender": "male"},
    ])
    write_png(root / "sub" / "unlabelled.png", faces[4])
    with pytest.raises(RealSetError) as exc:
        load_real_set(root, detect_faces=False)
    msg = str(exc.value)
    assert "row 5: file_name 'missing.png' is not in the folder" in msg and "row 6: file_name '../outside.png' points outside" in msg
    assert "row 7: 'patient_00.png' is labelled BCC/patient-0 here and Ptosis/patient-0 in row 1" in msg
    assert "row 8: patient 'patient-0' is male here and female in row 1" in msg
    assert "1 photo(s) in the folder have no metadata row" in msg and "sub/unlabelled.png" in msg
    for stage in (["stats"], ["finetune", "--pretrained_model_name_or_path", str(tmp_path)]):
        out = tmp_path / f"out-{stage[0]}"
        capsys.readouterr()
        assert main([*stage, "--train_data_dir", str(root), "--output_dir", str(out)]) == 2
        assert "label problem(s)" in capsys.readouterr().err and not out.exists()


def test_a_folder_without_usable_photos_is_refused_before_any_output(tmp_path, capsys):
    from mema.imageio import write_png

    root = tmp_path / "real"
    write_png(root / "a.png", np.zeros((64, 64, 3), np.uint8))
    (root / "metadata.csv").write_text("file_name,disease\na.png,BCC\n")
    out = tmp_path / "lora"
    assert main(["finetune", "--pretrained_model_name_or_path", str(tmp_path), "--train_data_dir", str(root), "--output_dir", str(out)]) == 2
    assert "none of the 1 images is usable" in capsys.readouterr().err and not out.exists()


def test_sample_flags_that_contradict_the_backend_are_refused_before_anything_loads(tmp_path, capsys):
    stats = tmp_path / "real_stats.json"
    stats.write_text(json.dumps({"n_images": 1, "disease": {"BCC": 1}, "gender": {"female": 1, "male": 0},
                                 "age_bins": [0, 20, 30, 40, 50, 60, 70, 121], "age_hist": [0, 0, 1, 0, 0, 0, 0], "joint": {}}))
    out = tmp_path / "samples"
    base = ["sample", "--real_stats", str(stats), "--num_samples", "2", "--output_dir", str(out), "--quiet"]
    cases = [
        (["--backend", "dcgan", "--lora_dir", str(tmp_path), "--num_inference_steps", "5"], "--backend dcgan does not use --lora_dir, --num_inference_steps"),
        (["--backend", "procedural", "--reference_faces", str(tmp_path)], "--backend procedural does not use --reference_faces"),
        (["--no_face_injection", "--ip_adapter", str(tmp_path)], "--no_face_injection contradicts --ip_adapter"),
        (["--ip_adapter_faceid", str(tmp_path)], "--ip_adapter_faceid given without --face_injection faceid"),
        (["--face_injection", "faceid", "--ip_adapter", str(tmp_path)], "--face_injection faceid does not use --ip_adapter"),
    ]
    for extra, msg in cases:
        capsys.readouterr()
        assert main([*base, *extra]) == 2, extra
        assert msg in capsys.readouterr().err and not out.exists(), extra
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"disease": {}}))
    assert main(["sample", "--backend", "dcgan", "--real_stats", str(bad), "--num_samples", "2", "--output_dir", str(out)]) == 2
    assert "is not a real_stats.json" in capsys.readouterr().err and not out.exists()


def test_near_duplicate_photos_are_recorded_skips(tmp_path, faces):
    """A re-encoded or resized copy has other bytes but the same picture: skipped and recorded, never silently."""
    import cv2

    from mema.generation.phash import NEAR_DUPLICATE_BITS, phash
    from mema.imageio import write_png

    root = write_real_set(tmp_path / "real", faces[:3], extra_rows=[
        {"file_name": "copy.jpg", "disease": "Ptosis", "age": 30, "gender": "female"},
        {"file_name": "small.png", "disease": "BCC", "age": 30, "gender": "female", "identity": "someone-else"},
    ])
    cv2.imwrite(str(root / "copy.jpg"), faces[0][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
    write_png(root / "small.png", cv2.resize(faces[1], (96, 96), interpolation=cv2.INTER_AREA))
    real = load_real_set(root)
    assert [i.row for i in real.images] == [1, 2, 3]
    reasons = {s["row"]: s["reason"] for s in real.skipped}
    assert reasons[4].startswith("near-duplicate: looks like row 1 (") and reasons[5].startswith("near-duplicate: looks like row 2 (")
    assert real.report()["skipped_by_reason"] == {"near-duplicate": 2}
    # distinct faces stay well apart
    bits = [phash(f) for f in faces]
    assert min((a != b).sum() for i, a in enumerate(bits) for b in bits[i + 1:]) > NEAR_DUPLICATE_BITS


def test_no_usable_image_is_an_error(tmp_path):
    from mema.imageio import write_png

    root = tmp_path / "real"
    root.mkdir()
    write_png(root / "a.png", np.zeros((64, 64, 3), np.uint8))
    (root / "metadata.csv").write_text("file_name,disease\na.png,BCC\n")
    with pytest.raises(RealSetError, match="none of the 1 images is usable"):
        load_real_set(root)


def test_leakage_filter_drops_a_sample_that_is_a_real_patient(tmp_path):
    """dcgan backend: samples are DCGAN faces from per-sample seeds. The 'real set' holds the exact face of
    sample 0 (a leak by construction) plus unrelated faces; the filter must drop sample 0 by both recognisers."""
    from mema.generation.dcgan import FaceGenerator
    from mema.generation.diffusion.sample import dcgan_face
    from mema.generation.real_set import distribution_stats

    other = dcgan_faces(4, seed=23)
    stats_root = write_real_set(tmp_path / "stats_src", other)
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "real_stats.json").write_text(json.dumps(distribution_stats(load_real_set(stats_root).images)))
    out = tmp_path / "samples"
    assert main(["sample", "--backend", "dcgan", "--real_stats", str(tmp_path / "stats" / "real_stats.json"),
                 "--num_samples", "4", "--output_dir", str(out), "--resolution", "128", "--seed", "5", "--quiet"]) == 0
    plan = json.loads((out / "plan.json").read_text())["plan"]
    leaked = dcgan_face(FaceGenerator(128), plan[0]["seed"])
    real = write_real_set(tmp_path / "real", [leaked, *other])
    thresholds = tmp_path / "thr.json"
    thresholds.write_text(json.dumps({"sface": 0.3, "dlib-resnet": 0.3}))  # DCGAN faces are less distinct than people
    filt = tmp_path / "filter"
    assert main(["filter", "--samples", str(out), "--train_data_dir", str(real), "--output_dir", str(filt),
                 "--thresholds", str(thresholds), "--top_k", "3"]) == 0
    per = {json.loads(line)["id"]: json.loads(line) for line in (filt / "per_sample.jsonl").read_text().splitlines()}
    s0 = per[plan[0]["id"]]
    assert s0["decision"] == "drop" and s0["reason"].startswith("leak")
    for name in ("sface", "dlib-resnet"):
        r = s0["recognisers"][name]
        assert r["leak"] and r["min_image_l2"] < 0.05 and len(r["top_k"]) == 3
        assert len(r["top_k"][0]["real_sha256"]) == 64  # nearest real image named by hash only
    report = json.loads((filt / "filter.json").read_text())
    for name in ("sface", "dlib-resnet"):
        rec = report["recognisers"][name]
        assert rec["leakage_rate_before"] >= 0.25 - 1e-9 and rec["leakage_rate_after"] == 0.0
        assert rec["threshold_source"] == "thr.json" and sum(rec["min_l2_histogram"]["counts"]) == report["n_faces_found"]
    assert "patient_" not in (filt / "per_sample.jsonl").read_text()
    dist = np.load(filt / "distances_sface.npz")
    assert dist["l2"].shape == (report["n_faces_found"], 5) and s0["recognisers"]["sface"]["top_k"][0]["real_sha256"] in set(dist["real_sha256"])
    # without --thresholds: calibrated on the real set's impostor pairs when there are enough of them
    assert main(["filter", "--samples", str(out), "--train_data_dir", str(real), "--output_dir", str(tmp_path / "fcal"),
                 "--calibrate_far", "0.2"]) == 0
    cal = json.loads((tmp_path / "fcal" / "filter.json").read_text())["recognisers"]["sface"]
    assert cal["threshold_source"].startswith("calibrated on the real set at FAR 0.2 (8 impostor pairs")
    # one recogniser is not enough unless asked for
    assert main(["filter", "--samples", str(out), "--train_data_dir", str(real), "--output_dir", str(tmp_path / "f1"),
                 "--recognisers", "sface"]) == 2


def test_review_import_refuses_bad_rows_and_undecided(tmp_path):
    import csv

    from mema.generation import review
    from mema.generation.stage import StageError, write_stage
    from mema.imageio import write_png

    folder = tmp_path / "review"
    for sid in ("s000000", "s000001"):
        write_png(folder / "images" / f"{sid}.png", np.zeros((32, 32, 3), np.uint8))
    write_stage(folder, "review", {}, extra={"imported": False})
    rows = [
        {"id": "s000000", "disease": "BCC", "severity": "mid", "decision": "maybe", "new_disease": "", "new_severity": ""},
        {"id": "s000001", "disease": "BCC", "severity": "mid", "decision": "accept", "new_disease": "Normal", "new_severity": "heavy"},
        {"id": "s999999", "disease": "BCC", "severity": "mid", "decision": "accept", "new_disease": "", "new_severity": ""},
    ]
    with open(folder / "review.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    args = type("A", (), {"review": str(folder), "decisions": None, "undecided": "error"})()
    with pytest.raises(StageError) as exc:
        review.import_decisions(args)
    msg = str(exc.value)
    assert "decision 'maybe'" in msg and "does not fit Normal" in msg and "unknown sample id 's999999'" in msg
    with pytest.raises(StageError, match="no decisions were imported"):
        review.load_decisions(folder)


def test_procedural_backend_runs_through_the_same_plan_filter_and_card(tmp_path):
    """MeMa-mini's renderer as a sampling backend: real-guided plan -> leakage filter -> card, with lesion masks."""
    from mema.corpus.store import load_corpus
    from mema.corpus.verify import verify_corpus

    stats = {"n_images": 4, "disease": {d: 0 for d in ("Normal", "BCC", "Conj", "Uveitis", "Ptosis", "SCC", "Strab", "TAO")},
             "gender": {"female": 2, "male": 2}, "age_bins": [0, 20, 30, 40, 50, 60, 70, 121], "age_hist": [0, 0, 2, 2, 0, 0, 0],
             "joint": {"BCC|female|2": 1, "Ptosis|male|3": 1, "SCC|female|2": 1, "Normal|male|3": 1}}
    stats["disease"].update({"BCC": 1, "Ptosis": 1, "SCC": 1, "Normal": 1})
    (tmp_path / "real_stats.json").write_text(json.dumps(stats))
    real = write_real_set(tmp_path / "real", dcgan_faces(2, seed=31))
    samples, filt, corpus = tmp_path / "samples", tmp_path / "filter", tmp_path / "corpus"
    assert main(["sample", "--backend", "procedural", "--real_stats", str(tmp_path / "real_stats.json"), "--num_samples", "4",
                 "--output_dir", str(samples), "--resolution", "128", "--seed", "2", "--quiet"]) == 0
    recs = [json.loads(line) for line in (samples / "samples.jsonl").read_text().splitlines()]
    assert {r["provenance"]["generator"] for r in recs} == {"dcgan-digiface+signs-v2"}
    assert all(("mask_file" in r) == (r["disease"] in ("BCC", "SCC")) for r in recs)
    # Under the published thresholds DCGAN faces 'leak' into each other (they are less distinct than people)
    (tmp_path / "thr.json").write_text(json.dumps({"sface": 0.3, "dlib-resnet": 0.3}))
    assert main(["filter", "--samples", str(samples), "--train_data_dir", str(real), "--output_dir", str(filt),
                 "--on_no_face", "keep", "--thresholds", str(tmp_path / "thr.json")]) == 0
    assert main(["card", "--samples", str(samples), "--filter", str(filt), "--output_dir", str(corpus), "--name", "mema-proc-test",
                 "--splits", "train=1"]) == 0
    c = load_corpus(corpus)
    kept = json.loads((filt / "filter.json").read_text())["n_kept"]
    assert kept >= 1 and c.info.n_images == kept and "Not physician-reviewed" in (corpus / "README.md").read_text()
    assert all((r.mask_file is not None) == (r.disease in ("BCC", "SCC")) for r in c.split("train"))
    assert verify_corpus(corpus, progress=False).ok
    stats = json.loads((corpus / "card" / "stats.json").read_text())["embedding_disjointness"]
    assert stats["n_without_face"] == 0 and "Split disjointness" in (corpus / "README.md").read_text()
