"""ROFI: architecture facts from the paper, training (tiny schedules; far too short to learn), resume, the method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mema.baselines.rofi.config import ROFIConfig
from mema.baselines.rofi.networks import ROFI, DecNet, ResBlock, sign_mask
from mema.keys import key_from_seed, key_vector


def _perturbed(model: ROFI) -> ROFI:
    from mema.generation.dcgan import load_generator

    model.virtual.net.load_state_dict(load_generator().state_dict())
    # Dec-Net's last conv starts near zero (near the identity map); give it weights so outputs depend on inputs.
    torch.manual_seed(0)
    for dec in (model.protector.decode, model.restorer.decode):
        torch.nn.init.normal_(dec.to_rgb.weight, std=0.05)
    return model.eval()


def test_architecture_follows_the_paper():
    cfg = ROFIConfig()
    model = ROFI(cfg)
    x = torch.rand(2, 3, 128, 128)
    assert model.virtual(torch.randn(2, 512)).shape == x.shape  # the key's virtual face, full size
    scores = model.detector(x)
    assert scores.shape == (2, 1, 16, 16)  # regions at H/8 x W/8
    t, b, l, r = (v // 8 for v in cfg.detector_window)
    outside = scores.clone()
    outside[:, :, t:b, l:r] = 0
    assert outside.abs().max() == 0 and scores[:, :, t:b, l:r].min() > 0  # only the eye window is scored
    assert len(model.protector.translate.blocks.layers) == 6
    assert len(model.protector.daformer.blocks.layers) == 2
    body = list(DecNet(cfg).body)
    kinds = ["R" if isinstance(m, ResBlock) else "U" if type(m).__name__ == "Upsample" else "-" for m in body]
    assert "".join(kinds) == "-RRRRURRURU"  # 4 res, up, 2 res, up, 1 res, up
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.protector.decode.modules())
    assert model.restorer.translate.mode is not None and model.protector.translate.mode is None


def test_sign_regions_keep_original_features_and_the_key_matters():
    model = _perturbed(ROFI(ROFIConfig()))
    x = torch.rand(2, 3, 128, 128)
    k1, k2 = (torch.from_numpy(key_vector(key_from_seed(s))).expand(2, -1) for s in (1, 2))
    full, empty = torch.ones(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    with torch.no_grad():
        v1, v2 = model.virtual(k1), model.virtual(k2)
        # All regions are signs: the translated features and the virtual face are discarded, so the key has no effect.
        assert torch.equal(model.protector(x, k1, full, v1), model.protector(x, k2, full, v2))
        # No signs: the output is built on the key's virtual face.
        assert (model.protector(x, k1, empty, v1) - model.protector(x, k2, empty, v2)).abs().mean() > 0.02
        # Sign regions of the original are where the output starts from.
        half = torch.zeros(2, 1, 16, 16)
        half[:, :, 4:8, 4:12] = 1
        y = model.protector(x, k1, half, v1)
        assert (y[:, :, 32:64, 32:96] - x[:, :, 32:64, 32:96]).abs().mean() < (y[:, :, 96:, :] - x[:, :, 96:, :]).abs().mean()


def test_sign_mask_threshold_and_dilation():
    scores = torch.zeros(1, 1, 16, 16)
    scores[0, 0, 5, 6] = 0.9
    assert sign_mask(scores, 0.5, 0).sum() == 1
    assert sign_mask(scores, 0.5, 1).sum() == 9  # grown by one cell on each side
    assert sign_mask(scores, 0.95, 1).sum() == 0


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    from mema.cli.train import main

    out = tmp_path_factory.mktemp("rofi")
    args = ["rofi", "--dataset", str(tiny_corpus), "--output_dir", str(out), "--identity_steps", "3",
            "--detector_steps", "2", "--translator_steps", "4", "--checkpointing_steps", "2", "--quiet"]
    assert main(args) == 0
    return out, args


def test_train_writes_a_self_contained_folder(trained):
    out, _ = trained
    for name in ("config.json", "train_log.jsonl", "detector_eval.json", "train_report.json", "rofi.pt"):
        assert (out / name).is_file(), name
    assert (out / "rofi.pt").stat().st_size < 20e6


def test_translator_resume_is_exact(tiny_corpus, tmp_path):
    """A run stopped at step 2 and resumed to 4 ends with the same weights as an uninterrupted run."""
    from mema.baselines.rofi import train as T
    from mema.baselines.rofi.data import load_split
    from mema.baselines.rofi.identity import IdentityNet
    from mema.corpus.store import load_corpus

    data = load_split(load_corpus(tiny_corpus), "train", progress=False)
    scores = torch.rand(len(data.images), 1, 16, 16)
    idnet = IdentityNet().eval()
    cfg = T.TrainConfig(translator_steps=4, checkpointing_steps=2, translator_batch_size=2)
    whole, _ = T.train_translator(data, scores, idnet, cfg, tmp_path / "a", progress=False)
    T.train_translator(data, scores, idnet, cfg.model_copy(update={"translator_steps": 2}), tmp_path / "b", progress=False)
    resumed, _ = T.train_translator(data, scores, idnet, cfg, tmp_path / "b", progress=False)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_train_refuses_a_changed_config_and_bad_input(trained, tmp_path, capsys):
    from mema.cli.train import main

    out, args = trained
    changed = [a if a != "4" else "5" for a in args]
    assert main(changed) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["rofi", "--dataset", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "o"), "--quiet"]) == 2
    assert "dataset.json" in capsys.readouterr().err


def test_method_round_trip_determinism_and_errors(trained, tiny_corpus, monkeypatch, tmp_path):
    from mema.baselines.rofi.method import ROFIMethod
    from mema.corpus.store import load_corpus
    from mema.methods import MethodError

    out, _ = trained
    corpus = load_corpus(tiny_corpus)
    images = np.stack([corpus.load_image(r) for r in corpus.split("test")[:4]])
    method = ROFIMethod(weights=out / "rofi.pt")
    assert method.info.reversible and method.info.key_scheme == "mema-key-v1"
    key = key_from_seed(3)
    y1, y2 = method.anonymize(images, key=key), method.anonymize(images, key=key)
    assert y1.shape == images.shape and y1.dtype == np.uint8 and np.array_equal(y1, y2)
    assert method.restore(y1, key=key).shape == images.shape
    with pytest.raises(MethodError, match="needs a key"):
        method.anonymize(images)
    with pytest.raises(MethodError, match="face crops"):
        method.anonymize(images[:, :64], key=key)
    bogus = tmp_path / "bogus.pt"
    torch.save({"format": "other"}, bogus)
    with pytest.raises(MethodError, match="not a ROFI weights file"):
        ROFIMethod(weights=bogus)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(MethodError, match="cannot be read"):
        ROFIMethod(weights=tmp_path / "junk.pt")
    # The differentiable routes the key-security attacks use give the same images as the numpy route.
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    kv = torch.from_numpy(key_vector(key)).expand(len(x), -1)
    with torch.no_grad():
        yt = (method.anonymize_tensor(x, kv) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(yt & 0xFC, y1 & 0xFC)  # the numpy route adds the sealed original in the two low bits


def test_restore_opens_the_sealed_original_only_with_the_right_key(trained, tiny_corpus):
    from PIL import Image
    import io

    from mema.baselines.rofi.method import ROFIMethod
    from mema.corpus.store import load_corpus
    from mema.metrics.image import psnr

    out, _ = trained
    corpus = load_corpus(tiny_corpus)
    images = np.stack([corpus.load_image(r) for r in corpus.split("test")[:4]])
    method = ROFIMethod(weights=out / "rofi.pt")
    key, wrong = key_from_seed(3), key_from_seed(4)
    protected = method.anonymize(images, key=key)
    restored = method.restore(protected, key=key)
    assert min(psnr(a, b) for a, b in zip(images, restored)) >= 32.0  # the restoration target
    assert all(o is not None for o in method.opened(protected, key))
    # A wrong key opens nothing and gets the neural restorer's face: deterministic, not the original.
    assert all(o is None for o in method.opened(protected, wrong))
    w1, w2 = method.restore(protected, key=wrong), method.restore(protected, key=wrong)
    # The restorer here is trained at pipeline-test size; its faces sit near 20 dB from the originals (20.0004 on
    # one AMD EPYC machine), well below the >= 32 dB of the right key's restore.
    assert np.array_equal(w1, w2) and max(psnr(a, b) for a, b in zip(images, w1)) < 25.0
    # A protected photo re-encoded as JPEG no longer carries an openable original.
    buf = io.BytesIO()
    Image.fromarray(protected[0]).save(buf, "JPEG", quality=98)
    assert method.opened(np.asarray(Image.open(buf))[None], key) == [None]
    assert method.opened(images[:1], key) == [None]  # never anonymized
    # An original too detailed for the carrier (uniform noise) is left unsealed, not a failed batch.
    noise = np.random.default_rng(0).integers(0, 256, images[:1].shape, dtype=np.uint8)
    both = method.anonymize(np.concatenate([images[:1], noise]), key=key)
    assert method.opened(both, key)[0] is not None and method.opened(both, key)[1] is None


def test_sealed_channel_properties():
    from mema.baselines.rofi.sealed import SealError, capacity_bytes, seal, unseal

    rng = np.random.default_rng(0)
    carrier = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:128, :128]
    original = np.stack([(yy * 2) % 256, (xx * 2) % 256, (yy + xx) % 256], -1).astype(np.uint8)
    key = key_from_seed(1)
    sealed = seal(carrier, original, key)
    assert np.array_equal(sealed, seal(carrier, original, key))  # deterministic
    assert np.abs(sealed.astype(int) - carrier).max() <= 3 and np.array_equal(sealed & 0xFC, carrier & 0xFC)
    assert capacity_bytes(sealed.shape) == 128 * 128 * 3 * 2 // 8
    opened = unseal(sealed, key)
    assert opened is not None and np.abs(opened.astype(int) - original).mean() < 2
    assert unseal(sealed, key_from_seed(2)) is None
    edited = sealed.copy()
    edited[60, 60, 1] ^= 0x10  # a high bit of the carrier: the associated data no longer match
    assert unseal(edited, key) is None
    flipped = sealed.copy()
    flipped[2, 0, 0] ^= 0x01  # a low bit inside the ciphertext (stream byte 192)
    assert unseal(flipped, key) is None
    with pytest.raises(SealError):
        seal(carrier[:8, :8], rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), key)  # 48 bytes cannot hold a JPEG
    with pytest.raises(SealError, match=r"\(H, W, 3\)"):
        seal(carrier[..., 0], original[..., 0], key)
    # The length field is the same whatever the original: it tells nothing about the photo.
    other = seal(carrier, np.full_like(original, 128), key)
    assert np.array_equal(sealed.ravel()[:32] & 3, other.ravel()[:32] & 3)  # MAGIC and length: 8 bytes = 32 values
    for shape in ((127, 127, 3), (101, 102, 3), (63, 65, 3)):  # H x W x 3 not a multiple of 4
        c, o = carrier[: shape[0], : shape[1]], original[: shape[0], : shape[1]]
        back = unseal(seal(c, o, key), key)
        assert back is not None and back.shape == shape and np.abs(back.astype(int) - o).mean() < 3
