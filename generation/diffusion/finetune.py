"""Step 1: LoRA finetuning of the SD 1.5 UNet on (real photo, "A face, eye with {disease}") pairs.

Follows diffusers' ``examples/text_to_image/train_text_to_image_lora.py`` (same flags, same loop:
frozen VAE and text encoder, LoRA on the UNet attention projections, epsilon-prediction MSE, accelerate
for devices and mixed precision, ``checkpoint-<step>`` folders via ``accelerator.save_state``). Additions:
the real set is read and checked by :mod:`mema.generation.real_set` (skips recorded, label errors refused),
validation images per checkpoint, aggregate real-set statistics for real-guided sampling, a model card.

Output folder: pytorch_lora_weights.safetensors, checkpoint-*/, validation/step-*/, real_stats.json,
real_set_report.json, stage.json, README.md. No real image or path is written to it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from mema.generation.prompts import caption
from mema.generation.real_set import distribution_stats, load_real_set
from mema.generation.stage import write_stage
from mema.imageio import atomic_write_bytes, read_rgb, write_png


def add_arguments(p) -> None:
    # diffusers train_text_to_image_lora.py names
    p.add_argument("--pretrained_model_name_or_path", required=True, help="local SD 1.5 diffusers folder or .safetensors file")
    p.add_argument("--original_config_dir", default=None, help="with a single .safetensors: a diffusers folder holding the configs")
    p.add_argument("--train_data_dir", required=True, help="real set: images + metadata.jsonl/csv (file_name, disease, ...)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--center_crop", action="store_true")
    p.add_argument("--random_flip", action="store_true")
    p.add_argument("--rank", type=int, default=64, help="LoRA rank (MeMa: 64)")
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--lr_scheduler", default="cosine")
    p.add_argument("--lr_warmup_steps", type=int, default=0)
    p.add_argument("--train_batch_size", type=int, default=1)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--num_train_epochs", type=int, default=100)
    p.add_argument("--max_train_steps", type=int, default=None)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpointing_steps", type=int, default=500)
    p.add_argument("--checkpoints_total_limit", type=int, default=None)
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint-<step> folder")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--num_validation_images", type=int, default=2, help="per disease present, at each checkpoint")
    p.add_argument("--validation_steps", type=int, default=20, help="inference steps for validation images")
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--no_face_check", action="store_true", help="do not skip real images where no face is found")


class _RealPairs:
    """torch Dataset of (pixel_values in [-1, 1], input_ids) from checked real images."""

    def __init__(self, images, tokenizer, resolution: int, center_crop: bool, random_flip: bool, sampler: "EpochShuffle"):
        self.images, self.tokenizer, self.sampler = images, tokenizer, sampler
        self.resolution, self.center_crop, self.random_flip = resolution, center_crop, random_flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        item = self.images[i]
        img = Image.fromarray(read_rgb(item.path)[0])
        w, h = img.size
        scale = self.resolution / min(w, h)
        img = img.resize((max(self.resolution, round(w * scale)), max(self.resolution, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        # Crops and flips depend on (seed, epoch, index) only, not on the global RNG: data loading runs ahead of
        # training (prefetch), so a global-RNG draw here would differ between a run and its resume.
        rng = np.random.default_rng([self.sampler.seed, self.sampler.epoch, i])
        if self.center_crop:
            left, top = (w - self.resolution) // 2, (h - self.resolution) // 2
        else:
            left, top = int(rng.integers(0, w - self.resolution + 1)), int(rng.integers(0, h - self.resolution + 1))
        img = img.crop((left, top, left + self.resolution, top + self.resolution))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
        if self.random_flip and rng.random() < 0.5:
            x = x.flip(-1)
        ids = self.tokenizer(caption(item.disease), max_length=self.tokenizer.model_max_length, padding="max_length",
                             truncation=True, return_tensors="pt").input_ids[0]
        return {"pixel_values": x, "input_ids": ids}


class EpochShuffle:
    """Sampler whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def _latest_checkpoint(out: Path) -> Path | None:
    cps = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return cps[-1] if cps else None


def run(args) -> Path:
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.optimization import get_scheduler
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from tqdm import tqdm

    from mema.generation.diffusion.loading import LORA_FILE, base_pipeline, base_weights_hash

    t0 = time.time()
    out = Path(args.output_dir)
    real = load_real_set(args.train_data_dir, detect_faces=not args.no_face_check)  # refused before any output is made
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    set_seed(args.seed)
    pipe = base_pipeline(args.pretrained_model_name_or_path, config_dir=args.original_config_dir)
    pipe.set_progress_bar_config(disable=True)
    tokenizer, text_encoder, vae, unet = pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.unet
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    unet.to(accelerator.device, dtype=weight_dtype)
    vae.to(accelerator.device, dtype=weight_dtype)
    text_encoder.to(accelerator.device, dtype=weight_dtype)
    if args.mixed_precision == "fp16":
        for p in unet.parameters():  # trainable LoRA parameters stay in fp32, as in diffusers' script
            if p.requires_grad:
                p.data = p.to(torch.float32)
    lora_params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_params, lr=args.learning_rate)

    sampler = EpochShuffle(len(real.images), args.seed)
    dataset = _RealPairs(real.images, tokenizer, args.resolution, args.center_crop, args.random_flip, sampler)
    # Its own generator: each new loader iterator draws a base seed, which must not come from the global RNG
    # (a resumed run creates one more iterator than the original did at that point).
    loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=args.train_batch_size,
                                         num_workers=args.dataloader_num_workers, generator=torch.Generator().manual_seed(args.seed))
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer, num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)

    global_step = first_epoch = 0
    resume_step = 0
    if args.resume_from_checkpoint:
        cp = _latest_checkpoint(out) if args.resume_from_checkpoint == "latest" else Path(args.resume_from_checkpoint)
        if cp is None or not cp.is_dir():
            accelerator.print(f"no checkpoint {args.resume_from_checkpoint!r} in {out}; starting a new run")
        else:
            accelerator.load_state(str(cp))
            global_step = int(cp.name.split("-")[1])
            first_epoch, resume_step = divmod(global_step * args.gradient_accumulation_steps, len(loader))

    def save_lora(folder: Path) -> None:
        lora = convert_state_dict_to_diffusers(get_peft_model_state_dict(accelerator.unwrap_model(unet)))
        StableDiffusionPipeline.save_lora_weights(save_directory=str(folder), unet_lora_layers=lora, safe_serialization=True)

    def validate(step: int) -> None:
        diseases = [d for d, n in distribution_stats(real.images)["disease"].items() if n]
        folder = out / "validation" / f"step-{step}"
        unet.eval()
        with torch.no_grad(), torch.random.fork_rng():  # validation never moves the training RNG (resume stays exact)
            for d in diseases:
                for k in range(args.num_validation_images):
                    g = torch.Generator(device="cpu").manual_seed(args.seed + k)
                    img = pipe(caption(d), num_inference_steps=args.validation_steps, height=args.resolution, width=args.resolution,
                               generator=g, output_type="np").images[0]
                    write_png(folder / f"{d}-{k}.png", (img * 255).round().clip(0, 255).astype(np.uint8))
        unet.train()

    losses = []
    bar = tqdm(total=max_steps, initial=global_step, desc="finetune", disable=not accelerator.is_local_main_process)
    unet.train()
    for epoch in range(first_epoch, epochs):
        # accelerate's loader sets the sampler's epoch from its own iteration count, which restarts at 0 in a
        # resumed process: set it explicitly. Batches trained on before the checkpoint are skipped by index.
        loader.set_epoch(epoch)
        epoch_loader = loader
        if epoch == first_epoch and resume_step:
            epoch_loader = accelerator.skip_first_batches(loader, resume_step)
            epoch_loader.set_epoch(epoch)
        for batch in epoch_loader:
            with accelerator.accumulate(unet):
                latents = vae.encode(batch["pixel_values"].to(dtype=weight_dtype)).latent_dist.sample()
                latents = latents * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device).long()
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                hidden = text_encoder(batch["input_ids"], return_dict=False)[0]
                target = noise if noise_scheduler.config.prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
                pred = unet(noisy, timesteps, hidden, return_dict=False)[0]
                loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(lora_params, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                global_step += 1
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if global_step % args.checkpointing_steps == 0 and accelerator.is_main_process:
                    if args.checkpoints_total_limit:
                        old = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                        for p in old[: max(0, len(old) - args.checkpoints_total_limit + 1)]:
                            shutil.rmtree(p)
                    cp = out / f"checkpoint-{global_step}"
                    accelerator.save_state(str(cp))
                    save_lora(cp)
                    validate(global_step)
            if global_step >= max_steps:
                break
        if global_step >= max_steps:
            break
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_lora(out)
        validate(global_step)
        stats = distribution_stats(real.images)
        atomic_write_bytes(out / "real_stats.json", json.dumps(stats, indent=2).encode())
        atomic_write_bytes(out / "real_set_report.json", json.dumps(real.report(), indent=2).encode())
        from mema.weights.local import hash_files

        hashes = {"base": base_weights_hash(args.pretrained_model_name_or_path), "lora": hash_files(out / LORA_FILE)[LORA_FILE]}
        args_rec = {k: v for k, v in vars(args).items() if k not in ("train_data_dir", "func", "stage")}
        write_stage(out, "finetune", args_rec, weights=hashes, seconds=time.time() - t0,
                    extra={"global_step": global_step, "final_loss": losses[-1] if losses else None, "n_real_images": len(real.images)})
        atomic_write_bytes(out / "README.md", _model_card(args, stats, real.report(), global_step, hashes).encode())
    accelerator.end_training()
    return out


def _model_card(args, stats: dict, report: dict, steps: int, hashes: dict) -> str:
    diseases = ", ".join(f"{d} {n}" for d, n in stats["disease"].items() if n)
    return f"""---
library_name: diffusers
base_model: stable-diffusion-v1-5 (local, weights sha256 {hashes['base'][:16]}...)
tags: [stable-diffusion, lora, text-to-image, medical, mema]
inference: false
---
# MeMa LoRA: patient-face generation model

LoRA (rank {args.rank}) on the Stable Diffusion 1.5 UNet, trained with `mema-generate finetune` on
{report['n_used']} real patient photos ({report['n_identities']} identities; {report['n_skipped']} rows skipped:
{report['skipped_by_reason'] or 'none'}). Captions: "A face, eye with {{disease name}}". Classes: {diseases}.

Training: {steps} steps, batch {args.train_batch_size} x {args.gradient_accumulation_steps} accumulation, learning rate
{args.learning_rate} ({args.lr_scheduler}), resolution {args.resolution}, seed {args.seed}, mixed precision {args.mixed_precision}.
LoRA weights sha256 {hashes['lora']}.

**This model was trained on real patient photos and can reproduce their identities.** Do not share
it; share only samples that passed `mema-generate filter` (identity leakage) and physician review.
Validation images per checkpoint are in `validation/`.
"""
