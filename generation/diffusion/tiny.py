"""Tiny, randomly initialised Stable Diffusion + IP-Adapter (+ FaceID) weights built from configs.

They have the exact on-disk layout of the real ones (a diffusers folder; ``models/ip-adapter_sd15.safetensors``
and ``models/image_encoder/``; ``ip-adapter-faceid_sd15.bin``), so every stage runs through the same local-path loaders in tests and on a
CPU, the way diffusers' own tests build their pipelines. The images they make are noise.

The tokenizer is a real ``CLIPTokenizer`` over a byte-level vocabulary with no merges (every character is
a token): no download, and the prompt still reaches the text encoder token by token.
"""

from __future__ import annotations

import json
from pathlib import Path

TEXT_DIM = 32
IMAGE_EMBED_DIM = 32
FACE_ID_DIM = 512  # ArcFace embeddings: the real FaceID projection takes 512-d input


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_tokenizer(folder: Path) -> None:
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = _bytes_to_unicode()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(folder))


def build_tiny_pipeline(seed: int = 0):
    """A StableDiffusionPipeline with tiny random components (diffusers' test sizes)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2, sample_size=64,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=TEXT_DIM, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=1000,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return unet, vae, text_encoder, scheduler


def write_tiny_weights(out: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write a tiny SD 1.5-shaped diffusers folder and IP-Adapter files under ``out``; return their paths."""
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

    out = Path(out)
    tok_dir = out / "tokenizer-src"
    write_tiny_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    unet, vae, text_encoder, scheduler = build_tiny_pipeline(seed)
    # The byte vocabulary has 514 entries; the text encoder's table must cover them.
    text_encoder.resize_token_embeddings(len(tokenizer))
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    sd = out / "stable-diffusion"
    pipe.save_pretrained(str(sd), safe_serialization=True)
    import shutil

    shutil.rmtree(tok_dir)

    ip = out / "ip-adapter"
    enc_dir = ip / "models" / "image_encoder"
    torch.manual_seed(seed + 1)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=IMAGE_EMBED_DIM, projection_dim=IMAGE_EMBED_DIM, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, intermediate_size=37, patch_size=8,
    ))
    encoder.save_pretrained(str(enc_dir), safe_serialization=True)
    CLIPImageProcessor(crop_size=32, size=32).save_pretrained(str(enc_dir))
    save_file(ip_adapter_state_dict(unet, IMAGE_EMBED_DIM, seed), str(ip / "models" / "ip-adapter_sd15.safetensors"))
    faceid = out / "ip-adapter-faceid"
    faceid.mkdir(parents=True, exist_ok=True)
    # h94 ships a pickled torch state dict {"image_proj": ..., "ip_adapter": ...}; so does this
    torch.save(faceid_state_dict(unet, seed), str(faceid / "ip-adapter-faceid_sd15.bin"))
    return {"pretrained_model_name_or_path": sd, "ip_adapter": ip, "ip_adapter_faceid": faceid}


def ip_adapter_state_dict(unet, image_embed_dim: int, seed: int = 0, tokens: int = 4) -> dict:
    """Random IP-Adapter weights in the flat safetensors layout of ``ip-adapter_sd15.safetensors``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    state = {
        "image_proj.proj.weight": torch.randn(cross * tokens, image_embed_dim, generator=g) * 0.02,
        "image_proj.proj.bias": torch.zeros(cross * tokens),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    return state | {f"ip_adapter.{k}": v for k, v in _ip_layers(unet, g).items()}


def faceid_state_dict(unet, seed: int = 0, tokens: int = 4, mult: int = 2, rank: int = 4) -> dict:
    """Random IP-Adapter FaceID weights in the layout of ``ip-adapter-faceid_sd15.bin``.

    ``image_proj``: an MLP from the 512-d face ID embedding to ``tokens`` cross-attention tokens
    (``proj.0``, ``proj.2``, ``norm``; the real file has mult 2, 4 tokens). ``ip_adapter``: the per-layer
    ``to_k_ip``/``to_v_ip`` of the plain IP-Adapter plus a LoRA (``to_{q,k,v,out}_lora.{down,up}``) on every
    attention processor, numbered 0, 1, 2, ... in ``unet.attn_processors`` order (the real rank is 128).
    """
    import torch

    g = torch.Generator().manual_seed(seed + 2)
    cross = unet.config.cross_attention_dim
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.02  # noqa: E731
    image_proj = {
        "proj.0.weight": rand(FACE_ID_DIM * mult, FACE_ID_DIM), "proj.0.bias": torch.zeros(FACE_ID_DIM * mult),
        "proj.2.weight": rand(cross * tokens, FACE_ID_DIM * mult), "proj.2.bias": torch.zeros(cross * tokens),
        "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross),
    }
    layers = _ip_layers(unet, g)
    for key, name in enumerate(unet.attn_processors):
        hidden = _hidden_size(unet, name)
        kv_in = cross if name.endswith("attn2.processor") else hidden
        for proj, fan_in in (("to_q", hidden), ("to_k", kv_in), ("to_v", kv_in), ("to_out", hidden)):
            layers[f"{key}.{proj}_lora.down.weight"] = rand(rank, fan_in)
            layers[f"{key}.{proj}_lora.up.weight"] = rand(hidden, rank)
    return {"image_proj": image_proj, "ip_adapter": layers}


def _ip_layers(unet, g) -> dict:
    """Random ``to_k_ip``/``to_v_ip`` of every cross-attention layer, keyed ``<n>.to_k_ip.weight``."""
    import torch

    cross = unet.config.cross_attention_dim
    state = {}
    key = 1  # the original checkpoints number cross-attention layers 1, 3, 5, ... (diffusers' loader does too)
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            hidden = _hidden_size(unet, name)
            state[f"{key}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.02
            state[f"{key}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=g) * 0.02
            key += 2
    return state


def _hidden_size(unet, name: str) -> int:
    channels = unet.config.block_out_channels
    if name.startswith("mid_block"):
        return channels[-1]
    if name.startswith("up_blocks"):
        return list(reversed(channels))[int(name[len("up_blocks.")])]
    return channels[int(name[len("down_blocks.")])]
