"""mema-generate end to end with tiny random SD 1.5 / IP-Adapter weights: finetune -> sample -> filter -> review -> card.

The tiny models make noise, so no face is found in the samples; the chain runs with --on_no_face keep.
Leakage itself is tested with faces in test_generation_inputs.py.
"""

import csv
import json

import pytest

from mema.cli.generate import main
from tests.generation_data import check_card, tiny_generation_inputs

RES = "32"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    real = tiny_generation_inputs(root, real_faces=6, seed=7, num_faces=4, real_dir="hospital_private_photos")
    return root, real


def _sd(root):
    return ["--pretrained_model_name_or_path", str(root / "w" / "stable-diffusion")]


def test_chain_finetune_sample_filter_review_card(chain):
    root, real = chain
    lora, samples, filt, review, corpus = (root / x for x in ("lora", "samples", "filter", "review", "corpus"))
    assert main(["finetune", *_sd(root), "--train_data_dir", str(real), "--output_dir", str(lora), "--resolution", RES,
                 "--rank", "4", "--train_batch_size", "2", "--num_train_epochs", "2", "--checkpointing_steps", "2", "--random_flip",
                 "--num_validation_images", "1", "--validation_steps", "2", "--seed", "3"]) == 0
    stage = json.loads((lora / "stage.json").read_text())
    assert stage["global_step"] == 6 and (lora / "pytorch_lora_weights.safetensors").is_file()
    assert sorted(p.name for p in lora.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert (lora / "validation" / "step-2" / "BCC-0.png").is_file()
    assert "LoRA (rank 4)" in (lora / "README.md").read_text()
    # a run stopped after checkpoint-2 (mid-epoch) and resumed ends with the identical LoRA
    import shutil

    from mema.weights import sha256_file

    stopped = root / "lora-stopped"
    shutil.copytree(lora, stopped)
    for name in ("checkpoint-4", "checkpoint-6"):
        shutil.rmtree(stopped / name)
    for name in ("pytorch_lora_weights.safetensors", "stage.json", "README.md"):
        (stopped / name).unlink()
    assert main(["finetune", *_sd(root), "--train_data_dir", str(real), "--output_dir", str(stopped), "--resolution", RES,
                 "--rank", "4", "--train_batch_size", "2", "--num_train_epochs", "2", "--checkpointing_steps", "2", "--random_flip",
                 "--num_validation_images", "1", "--validation_steps", "2", "--seed", "3", "--resume_from_checkpoint", "latest"]) == 0
    assert sha256_file(stopped / "pytorch_lora_weights.safetensors") == sha256_file(lora / "pytorch_lora_weights.safetensors")

    assert main(["sample", *_sd(root), "--lora_dir", str(lora), "--ip_adapter", str(root / "w" / "ip-adapter"),
                 "--reference_faces", str(root / "faces"), "--num_samples", "5", "--output_dir", str(samples),
                 "--resolution", RES, "--num_inference_steps", "2", "--quiet"]) == 0
    recs = [json.loads(line) for line in (samples / "samples.jsonl").read_text().splitlines()]
    assert len(recs) == 5
    for r in recs:
        p = r["provenance"]
        assert 0.2 <= p["adapter_scale"] <= 0.4 and p["reference_face_sha256"] and p["prompt"].startswith("A face, eye with")
        assert set(p["weights"]) == {"base", "lora", "ip_adapter", "image_encoder"}
        assert r["disease"] in ("Ptosis", "BCC", "Normal")  # only classes present in the real set

    assert main(["filter", "--samples", str(samples), "--train_data_dir", str(real), "--output_dir", str(filt),
                 "--on_no_face", "keep"]) == 0
    report = json.loads((filt / "filter.json").read_text())
    assert report["n_kept"] == 5 and set(report["recognisers"]) == {"sface", "dlib-resnet"}

    assert main(["review", "export", "--samples", str(samples), "--filter", str(filt), "--output_dir", str(review)]) == 0
    assert "<img" in (review / "index.html").read_text()
    rows = list(csv.DictReader(open(review / "review.csv")))
    rows[0]["decision"] = "reject"
    for r in rows[1:]:
        r["decision"] = "accept"
    rows[1]["new_disease"], rows[1]["new_severity"] = "Strab", "heavy"
    with open(review / "review.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["review", "import", "--review", str(review)]) == 0
    # exporting again over filled decisions is refused
    assert main(["review", "export", "--samples", str(samples), "--filter", str(filt), "--output_dir", str(review)]) == 2

    assert main(["card", "--samples", str(samples), "--filter", str(filt), "--review", str(review), "--train_data_dir", str(real),
                 "--output_dir", str(corpus), "--name", "mema-gen-test", "--splits", "train=0.5,test=0.5", "--bootstrap", "100"]) == 0
    from mema.corpus.store import load_corpus
    from mema.corpus.verify import verify_corpus

    c = load_corpus(corpus)
    assert c.info.n_images == 4 and c.info.builder["reviewed"] is True
    relabelled = [r for s in ("train", "test") for r in c.split(s) if r.id == rows[1]["id"]][0]
    assert (relabelled.disease, relabelled.severity) == ("Strab", "heavy")
    assert verify_corpus(corpus, progress=False).ok
    # every claim of the card against this run's records; Croissant through mlcroissant
    facts = check_card(corpus, samples, filt, review, real)
    assert facts["backend"] == "diffusion" and facts["face_injection"] == "ip-adapter" and facts["labels"] == "prompted"
    assert facts["research_only"] and any(b.startswith("reference faces (offline DCGAN") for b in facts["research_only_because"])
    assert "CreativeML Open RAIL-M" in facts["licence"] and "Stable Diffusion 1.5 finetuned with a LoRA" in (corpus / "README.md").read_text()
    att = json.loads((corpus / "card" / "attributes.json").read_text())
    assert att["n_generated_without_face"] == 4 and att["age"]["w1"] is None  # tiny random weights make noise, not faces

    # no real patient path, file name or image anywhere in the outputs
    from mema.weights import sha256_file

    real_shas = {sha256_file(p) for p in real.glob("*.png")}
    for folder in (lora, samples, filt, review, corpus):
        for f in folder.rglob("*"):
            if not f.is_file():
                continue
            assert sha256_file(f) not in real_shas, f
            if f.suffix in (".json", ".jsonl", ".md", ".csv", ".html", ".txt"):
                text = f.read_text()
                assert "hospital_private_photos" not in text and "patient_0" not in text, f


def test_missing_weights_name_the_files(chain, tmp_path, capsys):
    root, real = chain
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text("{}")
    assert main(["finetune", "--pretrained_model_name_or_path", str(tmp_path / "sd"), "--train_data_dir", str(real),
                 "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unet/diffusion_pytorch_model.safetensors" in err and "missing:" in err and "huggingface.co" in err
