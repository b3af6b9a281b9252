"""Load Stable Diffusion 1.5 and IP-Adapter from local paths only (see ``mema/weights/local.py``)."""

from __future__ import annotations

from pathlib import Path

from mema.weights.local import combined_hash, hash_files, require_local

LORA_FILE = "pytorch_lora_weights.safetensors"
IP_ADAPTER_FILE = "ip-adapter_sd15.safetensors"


def base_pipeline(path: str | Path, *, config_dir: str | Path | None = None, dtype=None):
    """A StableDiffusionPipeline from a diffusers folder or a single .safetensors (with ``config_dir``)."""
    from diffusers import StableDiffusionPipeline

    path, layout = require_local("stable_diffusion_15", path)
    kwargs = {"local_files_only": True, "safety_checker": None, "requires_safety_checker": False}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if layout == "single_file":
        if config_dir is None:
            from mema.weights import WeightsError

            raise WeightsError(f"{path} is a single-file checkpoint: also pass --original_config_dir, a diffusers SD 1.5 folder"
                               " holding the config files (model_index.json, */config.json, tokenizer/, scheduler/), so nothing is downloaded")
        return StableDiffusionPipeline.from_single_file(str(path), config=str(config_dir), **kwargs)
    return StableDiffusionPipeline.from_pretrained(str(path), **kwargs)


def base_weights_hash(path: str | Path) -> str:
    path, _ = require_local("stable_diffusion_15", path)
    return combined_hash(hash_files(path))


def attach_ip_adapter(pipe, folder: str | Path, weight_name: str = IP_ADAPTER_FILE) -> dict[str, str]:
    """Load ``<folder>/models/<weight_name>`` and its image encoder into ``pipe``; return their hashes."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    folder, _ = require_local("ip_adapter_sd15", folder)
    enc_dir = folder / "models" / "image_encoder"
    pipe.image_encoder = CLIPVisionModelWithProjection.from_pretrained(str(enc_dir), local_files_only=True).to(pipe.device, pipe.unet.dtype)
    if (enc_dir / "preprocessor_config.json").is_file():
        pipe.feature_extractor = CLIPImageProcessor.from_pretrained(str(enc_dir), local_files_only=True)
    else:  # the h94 folder ships no preprocessor config; these are CLIP ViT-H/14's
        pipe.feature_extractor = CLIPImageProcessor()
    pipe.load_ip_adapter(str(folder), subfolder="models", weight_name=weight_name, image_encoder_folder=None, local_files_only=True)
    return {"ip_adapter": hash_files(folder / "models" / weight_name)[weight_name], "image_encoder": combined_hash(hash_files(enc_dir))}
