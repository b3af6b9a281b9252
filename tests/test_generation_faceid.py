"""`mema-generate sample --face_injection faceid` end to end with tiny random SD 1.5 / IP-Adapter FaceID / ArcFace weights.

The images are noise; what is checked is that the reference face's embedding reaches the UNet, that the
finetuned LoRA stays active beside FaceID's own, that every sample records its provenance, and that missing
weights are named.
"""

import json

import numpy as np
import pytest

from mema.cli.generate import main
from tests.generation_data import check_card, tiny_generation_inputs
from tests.tiny_onnx import tiny_arcface_onnx

RES = "32"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faceid")
    real = tiny_generation_inputs(root, real_faces=4, seed=5, num_faces=3)
    assert main(["finetune", "--pretrained_model_name_or_path", str(root / "w" / "stable-diffusion"), "--train_data_dir", str(real),
                 "--output_dir", str(root / "lora"), "--resolution", RES, "--rank", "4", "--train_batch_size", "2",
                 "--max_train_steps", "1", "--num_validation_images", "0", "--seed", "1"]) == 0
    return root, tiny_arcface_onnx(root / "tiny_arcface.onnx")


def _sample(root, out, *extra):
    return main(["sample", "--pretrained_model_name_or_path", str(root / "w" / "stable-diffusion"), "--lora_dir", str(root / "lora"),
                 "--reference_faces", str(root / "faces"), "--num_samples", "3", "--output_dir", str(out),
                 "--resolution", RES, "--num_inference_steps", "2", "--quiet", "--face_injection", "faceid", *extra])


def test_faceid_sampling_records_provenance(setup, tmp_path, monkeypatch):
    from mema.weights import sha256_file

    root, onnx = setup
    monkeypatch.delenv("MEMA_ARCFACE_ONNX", raising=False)
    faceid = root / "w" / "ip-adapter-faceid"
    assert _sample(root, tmp_path / "s", "--ip_adapter_faceid", str(faceid), "--arcface_onnx", str(onnx)) == 0
    recs = [json.loads(line) for line in (tmp_path / "s" / "samples.jsonl").read_text().splitlines()]
    ref_shas = {sha256_file(p) for p in (root / "faces").glob("*.png")}
    assert len(recs) == 3
    for r in recs:
        p = r["provenance"]
        assert p["generator"] == "sd15-lora+ip-adapter-faceid" and 0.2 <= p["adapter_scale"] <= 0.4
        assert p["reference_face_sha256"] in ref_shas
        assert p["weights"]["ip_adapter_faceid"] == sha256_file(faceid / "ip-adapter-faceid_sd15.bin")
        assert p["weights"]["arcface"] == sha256_file(onnx)
        assert set(p["weights"]) == {"base", "lora", "ip_adapter_faceid", "arcface"}
    assert json.loads((tmp_path / "s" / "plan.json").read_text())["settings"]["face_injection_route"] == "faceid"
    # the recogniser may also come from the environment variable; same settings, so the finished run is accepted as is
    monkeypatch.setenv("MEMA_ARCFACE_ONNX", str(onnx))
    assert _sample(root, tmp_path / "s", "--ip_adapter_faceid", str(faceid)) == 0
    # the data card names the route and its research-only terms
    assert main(["filter", "--samples", str(tmp_path / "s"), "--train_data_dir", str(root / "real"), "--output_dir", str(tmp_path / "f"),
                 "--on_no_face", "keep"]) == 0
    assert main(["card", "--samples", str(tmp_path / "s"), "--filter", str(tmp_path / "f"), "--output_dir", str(tmp_path / "c"),
                 "--name", "faceid-test", "--splits", "train=1"]) == 0
    card = (tmp_path / "c" / "README.md").read_text()
    assert "IP-Adapter FaceID public-face injection" in card
    assert "| ArcFace recogniser (FaceID embedding of the reference face) |" in card and "insightface pretrained models" in card
    facts = check_card(tmp_path / "c", tmp_path / "s", tmp_path / "f")
    assert facts["face_injection"] == "faceid" and facts["research_only"]
    assert {w["key"] for w in facts["weights"] if w["research_only"]} == {"ip_adapter_faceid", "arcface"}


def test_face_embedding_reaches_the_unet(setup):
    """Same seed and prompt: two faces give two images at scale > 0 and one image at scale 0, and the LoRA stays on."""
    import torch

    from mema.faces.landmarks import LandmarkDetector
    from mema.generation.diffusion.faceid import FaceIdInjection, id_embeds
    from mema.generation.diffusion.loading import LORA_FILE, base_pipeline
    from mema.imageio import read_rgb

    root, onnx = setup
    faceid = FaceIdInjection(root / "w" / "ip-adapter-faceid", onnx)
    faces = sorted((root / "faces").glob("*.png"))[:2]
    embs = faceid.embed_references(root / "faces", {str(i): p.name for i, p in enumerate(faces)})
    assert all(e.shape == (512,) and np.isclose(np.linalg.norm(e), 1) for e in embs.values())
    assert not np.allclose(embs["0"], embs["1"])
    with LandmarkDetector() as det:  # the embedding is the ArcFace adapter's, on the aligned face
        rgb = read_rgb(faces[0])[0]
        np.testing.assert_allclose(embs["0"], faceid.recogniser.embed(rgb, det.detect(rgb)), rtol=1e-6)

    pipe = base_pipeline(root / "w" / "stable-diffusion")
    pipe.load_lora_weights(str(root / "lora"), weight_name=LORA_FILE)
    faceid.attach(pipe)
    active = pipe.get_active_adapters()
    assert len(active) == 2 and any(a.startswith("faceid_") for a in active)  # finetuned LoRA + FaceID's LoRA
    pipe.set_progress_bar_config(disable=True)

    def image(key, scale, guidance=7.5):
        pipe.set_ip_adapter_scale(scale)
        embeds = id_embeds(embs[key], guidance > 1, pipe.device, pipe.unet.dtype)
        out = pipe("A face, eye with ptosis", num_inference_steps=2, guidance_scale=guidance, height=32, width=32, output_type="np",
                   generator=torch.Generator().manual_seed(3), ip_adapter_image_embeds=[embeds])
        return out.images[0]

    assert np.abs(image("0", 1.0) - image("1", 1.0)).max() > 1e-4
    np.testing.assert_array_equal(image("0", 0.0), image("1", 0.0))
    assert np.abs(image("0", 1.0, guidance=1.0) - image("1", 1.0, guidance=1.0)).max() > 1e-4  # without guidance too


def test_missing_faceid_weights_name_the_files(setup, tmp_path, capsys):
    root, onnx = setup
    assert _sample(root, tmp_path / "a", "--arcface_onnx", str(onnx)) == 2
    err = capsys.readouterr().err
    assert "ip-adapter-faceid_sd15.bin" in err and "--ip_adapter_faceid" in err
    assert "huggingface.co/h94/IP-Adapter-FaceID" in err and "non-commercial" in err
    (tmp_path / "empty").mkdir()
    assert _sample(root, tmp_path / "b", "--arcface_onnx", str(onnx), "--ip_adapter_faceid", str(tmp_path / "empty")) == 2
    assert "missing: ip-adapter-faceid_sd15.bin" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything is written


def test_missing_recogniser_names_the_file(setup, tmp_path, capsys, monkeypatch):
    root, _ = setup
    monkeypatch.delenv("MEMA_ARCFACE_ONNX", raising=False)
    assert _sample(root, tmp_path / "a", "--ip_adapter_faceid", str(root / "w" / "ip-adapter-faceid")) == 2
    err = capsys.readouterr().err
    assert "--arcface_onnx" in err and "MEMA_ARCFACE_ONNX" in err and ".onnx" in err and "512-d" in err
    assert "insightface" in err and "non-commercial research only" in err
    assert _sample(root, tmp_path / "b", "--ip_adapter_faceid", str(root / "w" / "ip-adapter-faceid"),
                   "--arcface_onnx", str(tmp_path / "nope.onnx")) == 2
    assert "not found at" in capsys.readouterr().err
