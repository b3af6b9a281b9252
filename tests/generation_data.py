"""Small inputs for the generation tests: a fake 'real patient set' of offline DCGAN faces and tiny weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REAL_DISEASES = ("Ptosis", "BCC", "Normal", "TAO")


def dcgan_faces(n: int, seed: int, size: int = 128) -> list[np.ndarray]:
    """``n`` DCGAN faces in which the landmark detector finds a face."""
    from mema.faces.landmarks import LandmarkDetector
    from mema.generation.dcgan import FaceGenerator

    gen, rng, out = FaceGenerator(size), np.random.default_rng(seed), []
    with LandmarkDetector() as det:
        while len(out) < n:
            face = gen.generate(rng.standard_normal((1, 100)))[0]
            if det.detect(face) is not None:
                out.append(face)
    return out


def write_real_set(root: Path, faces: list[np.ndarray], extra_rows: list[dict] | None = None) -> Path:
    """A real-set folder: patient_XX.png + metadata.jsonl (two photos per 'patient')."""
    from mema.imageio import write_png

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, face in enumerate(faces):
        name = f"patient_{i:02d}.png"
        write_png(root / name, face)
        rows.append({"file_name": name, "disease": REAL_DISEASES[(i // 2) % 4], "identity": f"patient-{i // 2}",
                     "age": 30 + 5 * i, "gender": ("female", "male")[(i // 2) % 2]})
    rows += extra_rows or []
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def tiny_generation_inputs(root: Path, *, real_faces: int, seed: int, num_faces: int, real_dir: str = "real") -> Path:
    """A real set, tiny random SD 1.5 / IP-Adapter weights (root/w) and public reference faces (root/faces)
    under ``root``, as the generation tests start from; returns the real set's folder."""
    from mema.cli.generate import main

    real = write_real_set(root / real_dir, dcgan_faces(real_faces, seed=seed))
    assert main(["tiny-weights", "--output_dir", str(root / "w")]) == 0
    assert main(["reference-faces", "--output_dir", str(root / "faces"), "--num_faces", str(num_faces), "--size", "64"]) == 0
    return real


# --- checks of a written card against the run's own records ----------------------------------------------------------


def check_croissant(corpus: Path, *, allowed_warnings: tuple[str, ...] = ()) -> None:
    """croissant.json loads with mlcroissant (no error, no warning but ``allowed_warnings``), and its records
    iterate and match the files: every metadata line, every image's name and pixels."""
    import mlcroissant as mlc

    from mema.corpus.store import load_info
    from mema.imageio import read_rgb
    from mema.weights import sha256_file

    ds = mlc.Dataset(jsonld=str(corpus / "croissant.json"))
    warnings = [w for w in ds.metadata.ctx.issues.warnings if not any(a in w for a in allowed_warnings)]
    assert not warnings and not ds.metadata.ctx.issues.errors, warnings
    info = load_info(corpus)
    cro = json.loads((corpus / "croissant.json").read_text())
    assert next(d for d in cro["distribution"] if d["@id"] == "dataset.json")["sha256"] == sha256_file(corpus / "dataset.json")
    assert {rs.uuid for rs in ds.metadata.record_sets} == {x for s in info.splits for x in (s, f"{s}-image-files")}
    for split, counts in info.splits.items():
        lines = [json.loads(line) for line in (corpus / split / "metadata.jsonl").read_text().splitlines()]
        recs = list(ds.records(split))
        assert len(recs) == len(lines) == counts.images
        for rec, line in zip(recs, lines):
            for key in ("id", "file_name", "split", "identity", "disease", "severity", "gender", "sha256"):
                assert rec[f"{split}/{key}"].decode() == line[key]
            for key in ("age", "width", "height"):
                assert rec[f"{split}/{key}"] == line[key]
            assert sha256_file(corpus / split / line["file_name"]) == line["sha256"]
        files = {r[f"{split}-image-files/file_name"].decode(): np.asarray(r[f"{split}-image-files/image"]) for r in ds.records(f"{split}-image-files")}
        assert set(files) == {line["file_name"] for line in lines}
        for name, pixels in files.items():
            assert np.array_equal(pixels, read_rgb(corpus / split / name)[0])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_card(corpus: Path, samples: Path, filt: Path, review: Path | None = None, real: Path | None = None, *,
               labels: str = "auto", licence: str | None = None, classifier: Path | None = None) -> dict:
    """Every claim of a `mema-generate card` corpus, checked against the records of the run that made it.

    The README is rendered only from dataset.json and card/*.json (checked by re-rendering); each of those
    facts is checked here against samples/, filter/, review/ and the weights manifest. Returns run.json."""
    from scipy.stats import wasserstein_distance

    from mema.corpus.schema import DISEASES, GENDERS
    from mema.corpus.store import CARD, hf_card_header, load_corpus
    from mema.generation.card_facts import DIFFUSION_WEIGHTS
    from mema.generation.datacard import describe, render_card
    from mema.generation.card_facts import load_facts
    from mema.weights import entry
    from mema.weights.local import local_inputs

    c = load_corpus(corpus)
    facts = load_facts(corpus)
    f = facts.model_dump(mode="json")
    stage = json.loads((samples / "stage.json").read_text())
    plan = json.loads((samples / "plan.json").read_text())
    by_id = {s["id"]: s for s in _jsonl(samples / "samples.jsonl")}
    fstage = json.loads((filt / "stage.json").read_text())
    freport = json.loads((filt / "filter.json").read_text())
    per = _jsonl(filt / "per_sample.jsonl")
    released = sorted(r.id for r in c.records)
    kept = [p["id"] for p in per if p["decision"] == "keep"]

    # the card says only what its files say
    text = (corpus / CARD).read_text()
    assert text == hf_card_header([s for s in ("train", "val", "test") if s in c.info.splits]) + render_card(corpus)
    # backend, generators, what the labels mean
    backend = stage["args"]["backend"]
    assert f["backend"] == backend and c.info.builder["backend"] == backend
    assert f["generators"] == sorted({by_id[i]["provenance"]["generator"] for i in released})
    assert f["signs"] == {"procedural": "drawn", "diffusion": "prompted", "dcgan": "none"}[backend]
    assert f["labels"] == ("intended" if labels == "intended" else {"procedural": "drawn", "diffusion": "prompted"}[backend])
    assert f["age_gender_labels"] == ("estimated" if backend == "procedural" else "planned")
    assert c.info.description == describe(facts) and c.info.builder["labels"] == f["labels"]
    if backend != "diffusion":
        assert "Stable Diffusion" not in text and "LoRA" not in text and "prompted" not in text
    if backend == "dcgan":
        assert "draws no disease signs" in text and "intended, not shown" in text
    # sampling settings and seeds, from the plan
    s = plan["settings"]
    assert (f["sampling"], f["num_samples"], f["sample_seed"], f["resolution"]) == (s["sampling"], s["num_samples"], s["seed"], s["resolution"])
    if backend == "diffusion":
        assert (f["num_inference_steps"], f["guidance_scale"], f["adapter_scale_range"]) == (
            s["num_inference_steps"], s["guidance_scale"], s["adapter_scale_range"])
        ft = json.loads((Path(stage["args"]["lora_dir"]) / "stage.json").read_text())
        assert f["finetune"]["global_step"] == ft["global_step"] and f["finetune"]["rank"] == ft["args"]["rank"]
        assert f["finetune"]["n_real_images"] == ft["n_real_images"]
    else:
        assert f["num_inference_steps"] is None and f["finetune"] is None and f["face_injection"] == "none"
    # weights and their licences, from the sample record and the weights manifest
    assert {w["key"]: w["sha256"] for w in f["weights"]} == stage["weights_sha256"]
    assert all(by_id[i]["provenance"]["weights"] == stage["weights_sha256"] for i in released)
    local = local_inputs()
    for w in f["weights"]:
        if w["key"] == "lora":
            assert not w["released"]
        elif w["key"] in DIFFUSION_WEIGHTS:
            e = local[DIFFUSION_WEIGHTS[w["key"]][1]]
            assert (w["licence"], w["research_only"]) == (e["licence"], e["research_only"])
        else:
            e = entry(w["key"])
            assert (w["licence"], w["research_only"], w["sha256"]) == (e.licence, e.research_only, e.sha256)
        assert f"`{w['sha256'][:12]}`" in text
    # the licence follows from the inputs
    ref_research = f["reference_faces"] is not None and f["reference_faces"]["research_only"]
    assert f["research_only"] == (any(w["research_only"] for w in f["weights"]) or ref_research) == c.info.research_only
    if backend in ("procedural", "dcgan"):
        assert f["research_only"] and any("DigiFace-1M" in b for b in f["research_only_because"])
    assert c.info.licence == f["licence"] and (licence is None or f["licence"].startswith(licence))
    assert json.loads((corpus / "croissant.json").read_text())["license"] == f["licence"]
    # the filter: recognisers, roles and thresholds, counts
    assert json.loads((corpus / "card" / "leakage.json").read_text()) == freport
    assert f["filter"]["filtered_by"] == fstage["args"]["recognisers"] and f["filter"]["held_out"] == fstage["args"]["holdout"]
    for name, t in f["filter"]["thresholds"].items():
        r = freport["recognisers"][name]
        assert (t["l2"], t["source"]) == (r["threshold_l2"], r["threshold_source"])
        assert t["role"] == ("held-out" if name in fstage["args"]["holdout"] else "filter")
    assert (f["filter"]["n_samples"], f["filter"]["n_kept"]) == (len(per), len(kept))
    # the review, from its decisions
    if review is None:
        assert not f["review"]["reviewed"] and "Not physician-reviewed" in text
        assert released == sorted(kept)
    else:
        dec = json.loads((review / "decisions.json").read_text())
        acc = sorted(i for i, d in dec.items() if d["decision"] == "accept")
        assert f["review"]["reviewed"] and released == acc
        assert (f["review"]["n_accepted"], f["review"]["n_rejected"]) == (len(acc), len(dec) - len(acc))
        assert f["review"]["n_relabelled"] == sum(d["relabelled"] for d in dec.values())
        for r in c.records:
            assert (r.disease, r.severity) == (dec[r.id]["disease"], dec[r.id]["severity"])
    assert f["n_released"] == len(released) == c.info.n_images
    assert f["splits"] == {k: v.images for k, v in c.info.splits.items()}
    # the plan-vs-real figure: the plan's labels of the released samples, recomputed with scipy
    pvr = json.loads((corpus / "card" / "plan_vs_real.json").read_text())
    mine = [p for p in plan["plan"] if p["id"] in set(released)]
    st = plan["real_stats"]
    dv = [i / 7 for i in range(8)]
    ref = wasserstein_distance(dv, dv, [st["disease"][d] for d in DISEASES], [sum(p["disease"] == d for p in mine) for d in DISEASES])
    assert abs(pvr["disease"] - ref) < 1e-4 and pvr["n_planned"] == len(mine)
    ref = wasserstein_distance([0, 1], [0, 1], [st["gender"][g] for g in GENDERS], [sum(p["gender"] == g for p in mine) for g in GENDERS])
    assert abs(pvr["gender"] - ref) < 1e-4
    if real is not None:
        check_attributes(corpus, real, classifier)
    else:
        assert not json.loads((corpus / "card" / "attributes.json").read_text())["measured"] and "Not measured" in text
    check_croissant(corpus)
    return f


def check_attributes(corpus: Path, real: Path, classifier: Path | None = None) -> dict:
    """attributes.json against an independent measurement: the estimator and classifier run here on each image."""
    from scipy.stats import wasserstein_distance

    from mema.corpus.schema import DISEASES
    from mema.corpus.store import load_corpus
    from mema.faces.eyecrop import apply_eye_crop, eye_crop_matrix
    from mema.faces.landmarks import LandmarkDetector
    from mema.generation.age_gender import OfflineEstimator
    from mema.imageio import read_rgb

    att = json.loads((corpus / "card" / "attributes.json").read_text())
    assert att["measured"]
    c = load_corpus(corpus)
    rows = _jsonl(real / "metadata.jsonl")
    est = OfflineEstimator()
    clf = None
    assert (att["classifier"] is None) == (classifier is None)
    if classifier is not None:
        import torch

        from mema.evaluators.classifier import EyeCropCNN, predict_proba
        from mema.weights import sha256_file

        folder = Path(classifier)
        assert att["classifier"]["sha256"] == sha256_file(folder / "classifier.pt")
        clf = EyeCropCNN(width=json.loads((folder / "classifier.json").read_text())["width"])
        clf.load_state_dict(torch.load(folder / "classifier.pt", weights_only=True))

    def measure(images, labels):
        age, male, agree, pred = [], [], [], []
        with LandmarkDetector() as det:
            for img, lab in zip(images, labels):
                lm = det.detect(img)
                if lm is None:
                    continue
                a, g = est.predict(img)
                age.append(a)
                male.append(g == "male")
                if clf is not None:
                    k = int(predict_proba(clf, apply_eye_crop(img, eye_crop_matrix(lm))[None]).argmax())
                    pred.append(k / 7)
                    agree.append(DISEASES[k] == lab)
        return np.array(age, float), np.array(male, float), np.array(agree, float), np.array(pred, float)

    gen = measure([c.load_image(r) for r in c.records], [r.disease for r in c.records])
    rl = measure([read_rgb(real / r["file_name"])[0] for r in rows], [r["disease"] for r in rows])
    assert att["n_generated"] == c.info.n_images and att["n_generated_without_face"] == c.info.n_images - len(gen[0])
    assert att["n_real"] == len(rows) and att["n_real_without_face"] == len(rows) - len(rl[0])
    for key, k in (("age", 0), ("gender", 1)):
        if len(gen[k]) and len(rl[k]):
            assert abs(att[key]["w1"] - wasserstein_distance(gen[k], rl[k])) < 1e-3, key
            lo, hi = att[key]["ci95"]
            assert 0 <= lo <= hi
        else:
            assert att[key]["w1"] is None
    if clf is not None and len(gen[0]):
        sg = att["sign"]
        assert abs(sg["agreement_generated"]["rate"] - gen[2].mean()) < 1e-4 and abs(sg["agreement_real"]["rate"] - rl[2].mean()) < 1e-4
        assert abs(sg["predicted_class_w1"]["w1"] - wasserstein_distance(gen[3], rl[3])) < 1e-3
    return att
