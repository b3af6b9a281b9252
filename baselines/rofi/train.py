"""Training ROFI in three stages, each resumable from its checkpoints:

  identity    the training-only identity network (CosFace over the train split's identities)
  detector    the sign detector, weakly supervised by healthy/diseased labels (region-score max)
  translator  protector + restorer with the detector frozen, against the identity network and two critics

Batches are drawn by a generator seeded with (seed, stage, step), so a run resumed from step k draws
exactly the batches and keys the uninterrupted run would have drawn. Devices and mixed precision
come from accelerate: the same command uses a GPU when there is one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from mema.baselines.rofi.config import ROFIConfig
from mema.baselines.rofi.data import SplitTensors
from mema.baselines.rofi.discriminators import PatchCritic, hinge_d_loss, hinge_g_loss, seam_patches
from mema.baselines.rofi.identity import CosFaceHead, IdentityNet
from mema.baselines.rofi.losses import (
    LossWeights, coarse_l1_outside, identity_hinge, masked_l1, quantize,
)
from mema.baselines.rofi.networks import Protector, Restorer, SignDetector, VirtualFace, sign_mask

STAGES = ("identity", "detector", "translator")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    identity_steps: int = Field(default=600, ge=1)
    identity_batch_size: int = Field(default=64, ge=2)
    detector_steps: int = Field(default=600, ge=1)
    detector_batch_size: int = Field(default=24, ge=2)
    translator_steps: int = Field(default=500, ge=1)
    translator_batch_size: int = Field(default=12, ge=2)
    # For these first steps the restoration loss does not reach the protector: at the start the
    # restorer is near the identity map, so its loss would just pin the protected image to the original.
    translator_warmup_steps: int = Field(default=200, ge=0)
    learning_rate: float = Field(default=3e-4, gt=0)
    checkpointing_steps: int = Field(default=200, ge=1)
    local_patch: int = Field(default=32, ge=8)
    losses: LossWeights = Field(default_factory=LossWeights)
    rofi: ROFIConfig = Field(default_factory=ROFIConfig)


def _gen(seed: int, stage: str, step: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(hash((seed, STAGES.index(stage), step)) & 0x7FFF_FFFF_FFFF)
    return g


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Horizontal flips and small photometric changes (faces are aligned; no geometric jitter)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    gain = (1.0 + 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)).to(x.device)
    return (x * gain).clamp(0.0, 1.0)


class Checkpoints:
    """``output_dir/checkpoints/<stage>-<step>.pt``; writes go through a temp file so a kill never leaves half a file."""

    def __init__(self, output_dir: Path):
        self.dir = output_dir / "checkpoints"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _files(self, stage: str) -> list[Path]:
        return sorted(self.dir.glob(f"{stage}-*.pt"), key=lambda p: int(p.stem.split("-")[1]))

    def latest_step(self, stage: str) -> int:
        found = self._files(stage)
        return int(found[-1].stem.split("-")[1]) if found else 0

    def latest(self, stage: str) -> tuple[int, dict] | None:
        found = self._files(stage)
        if not found:
            return None
        return int(found[-1].stem.split("-")[1]), torch.load(found[-1], map_location="cpu", weights_only=False)

    def save(self, stage: str, step: int, state: dict, keep: int = 2) -> None:
        tmp = self.dir / f".{stage}-{step}.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.dir / f"{stage}-{step}.pt")
        for old in self._files(stage)[:-keep]:
            old.unlink()


class Log:
    def __init__(self, path: Path):
        self.path = path

    def write(self, **row) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def accelerator(cfg):
    """accelerate's Accelerator for ``cfg.mixed_precision`` (any training config with that field)."""
    try:
        from accelerate import Accelerator
    except ImportError:
        raise SystemExit("mema-train needs accelerate: pip install -e '.[train]'") from None
    return Accelerator(mixed_precision=cfg.mixed_precision)


def resumable_loop(stage, cfg, steps, ckpt, log, modules: dict, optimizers: dict, step_fn, progress: bool, label: str = "rofi"):
    """Shared resumable loop (ROFI's and MedSem-DeID's stages): restores modules/optimizers from the latest
    checkpoint, runs step_fn(step), logs every 20 steps and checkpoints every ``cfg.checkpointing_steps``."""
    start = 0
    found = ckpt.latest(stage)
    if found is not None:
        start, state = found
        for name, m in modules.items():
            m.load_state_dict(state["modules"][name])
        for name, o in optimizers.items():
            o.load_state_dict(state["optimizers"][name])
    t0 = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"{label} {stage}", disable=not progress)
    for step in bar:
        stats = step_fn(step)
        if step % 20 == 0 or step == steps - 1:
            bar.set_postfix({k: f"{v:.3f}" for k, v in list(stats.items())[:4]})
            log.write(stage=stage, step=step, seconds=round(time.time() - t0, 1), **{k: round(v, 5) for k, v in stats.items()})
        if (step + 1) % cfg.checkpointing_steps == 0 or step == steps - 1:
            ckpt.save(stage, step + 1, {
                "modules": {n: m.state_dict() for n, m in modules.items()},
                "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            })


def train_identity(data: SplitTensors, cfg: TrainConfig, out: Path, progress: bool = True) -> IdentityNet:
    acc = accelerator(cfg)
    torch.manual_seed(cfg.seed)
    net, head = IdentityNet(), CosFaceHead(128, len(data.identities))
    opt = torch.optim.AdamW(list(net.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=cfg.identity_steps)
    net, head, opt = acc.prepare(net, head, opt)

    def step_fn(step):
        g = _gen(cfg.seed, "identity", step)
        idx = torch.randint(0, len(data.images), (cfg.identity_batch_size,), generator=g)
        x = _augment(data.batch(idx, acc.device), g)
        with acc.autocast():
            loss = F.cross_entropy(head(net(x), data.identity[idx].to(acc.device)), data.identity[idx].to(acc.device))
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        sched.step()
        return {"loss": loss.item()}

    net.train()
    resumable_loop("identity", cfg, cfg.identity_steps, Checkpoints(out), Log(out / "train_log.jsonl"),
          {"net": net, "head": head}, {"opt": opt, "sched": sched}, step_fn, progress)
    return acc.unwrap_model(net).eval()


def train_detector(data: SplitTensors, cfg: TrainConfig, out: Path, progress: bool = True) -> SignDetector:
    acc = accelerator(cfg)
    torch.manual_seed(cfg.seed + 1)
    det = SignDetector(cfg.rofi.detector_window, cfg.rofi.image_size)
    opt = torch.optim.AdamW(det.parameters(), lr=1e-3, weight_decay=1e-4)
    det, opt = acc.prepare(det, opt)
    pos = float(data.diseased.mean())
    # Balance healthy and diseased images: MeMa has seven disease classes to one healthy.
    weights = torch.where(data.diseased > 0, 0.5 / pos, 0.5 / (1 - pos))

    def step_fn(step):
        g = _gen(cfg.seed, "detector", step)
        idx = torch.multinomial(weights, cfg.detector_batch_size, replacement=True, generator=g)
        x = _augment(data.batch(idx, acc.device), g)
        y = data.diseased[idx].to(acc.device)
        with acc.autocast():
            logits = acc.unwrap_model(det).region_logits(x)
            # Region-score max: the image is diseased iff its highest-scoring region is a sign.
            loss = F.binary_cross_entropy_with_logits(logits.flatten(1).amax(1).float(), y)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        return {"loss": loss.item()}

    det.train()
    resumable_loop("detector", cfg, cfg.detector_steps, Checkpoints(out), Log(out / "train_log.jsonl"),
          {"det": det}, {"opt": opt}, step_fn, progress)
    return acc.unwrap_model(det).eval()


@torch.no_grad()
def detector_scores(det: SignDetector, images: torch.Tensor, batch: int = 64, progress: bool = True, device="cpu") -> torch.Tensor:
    """(N, 1, g, g) region scores of uint8 images."""
    out = []
    for i in tqdm(range(0, len(images), batch), desc="sign regions", disable=not progress):
        out.append(det(images[i:i + batch].to(device).float().div(255.0)).cpu())
    return torch.cat(out)


def train_translator(data: SplitTensors, scores: torch.Tensor, idnet: IdentityNet, cfg: TrainConfig, out: Path,
                     progress: bool = True) -> tuple[Protector, Restorer]:
    acc = accelerator(cfg)
    torch.manual_seed(cfg.seed + 2)
    rc, w = cfg.rofi, cfg.losses
    protector, restorer = Protector(rc), Restorer(rc)
    d_global, d_local = PatchCritic(32, 4), PatchCritic(32, 3)
    opt_g = torch.optim.Adam(list(protector.parameters()) + list(restorer.parameters()), lr=cfg.learning_rate, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_global.parameters()) + list(d_local.parameters()), lr=cfg.learning_rate, betas=(0.5, 0.999))
    protector, restorer, d_global, d_local, opt_g, opt_d = acc.prepare(protector, restorer, d_global, d_local, opt_g, opt_d)
    idnet = idnet.to(acc.device).eval().requires_grad_(False)
    from mema.generation.dcgan import load_generator

    virtual = VirtualFace(rc.image_size, load_generator(), rc.virtual_truncation).to(acc.device)
    masks = sign_mask(scores, rc.sign_threshold, rc.sign_dilation)
    dev = acc.device

    def step_fn(step):
        g = _gen(cfg.seed, "translator", step)
        n = cfg.translator_batch_size
        idx = torch.randint(0, len(data.images), (n,), generator=g)
        x = data.batch(idx, dev)
        flip = (torch.rand(n, generator=g) < 0.5).to(dev)[:, None, None, None]
        x = torch.where(flip, x.flip(-1), x)
        m = torch.where(flip, masks[idx].to(dev).flip(-1), masks[idx].to(dev))
        m_px = F.interpolate(m, size=x.shape[-2:], mode="nearest")
        keys = torch.randn(n, rc.key_dim, generator=g).to(dev)
        wrong = torch.randn(n, rc.key_dim, generator=g).to(dev)

        with torch.no_grad():
            v = virtual(keys)
        with acc.autocast():
            y = protector(x, keys, m, v)
            yq = quantize(y)
            # Critics first, on a detached output.
            real_local = seam_patches(x, m, cfg.local_patch, g)
            fake_local = seam_patches(y.detach(), m, cfg.local_patch, g)
            d_loss = hinge_d_loss(d_global(x), d_global(y.detach())) + hinge_d_loss(d_local(real_local), d_local(fake_local))
        opt_d.zero_grad(set_to_none=True)
        acc.backward(d_loss)
        opt_d.step()

        with acc.autocast():
            y_in = yq if step >= cfg.translator_warmup_steps else yq.detach()
            x_rec = restorer(y_in, keys)
            x_wrong = restorer(y_in, wrong)
            e_x = idnet(x)
            losses = {
                "restore": F.l1_loss(x_rec, x),
                "sign": masked_l1(y, x, m_px),
                "deid": identity_hinge(idnet(y), e_x, w.deid_margin),
                "virtual": coarse_l1_outside(y, v, m),
                "wrong_key": identity_hinge(idnet(x_wrong), e_x, w.deid_margin),
                "global_gan": hinge_g_loss(d_global(y)),
                "local_gan": hinge_g_loss(d_local(seam_patches(y, m, cfg.local_patch, g))),
            }
            g_loss = sum(getattr(w, k) * v for k, v in losses.items())
        opt_g.zero_grad(set_to_none=True)
        acc.backward(g_loss)
        opt_g.step()
        psnr = -10 * torch.log10(F.mse_loss(x_rec.detach(), x).clamp_min(1e-10))
        return {"g": g_loss.item(), "d": d_loss.item(), "psnr": psnr.item(), **{k: v.item() for k, v in losses.items()}}

    protector.train(), restorer.train(), d_global.train(), d_local.train()
    resumable_loop("translator", cfg, cfg.translator_steps, Checkpoints(out), Log(out / "train_log.jsonl"),
          {"protector": protector, "restorer": restorer, "d_global": d_global, "d_local": d_local},
          {"opt_g": opt_g, "opt_d": opt_d}, step_fn, progress)
    return acc.unwrap_model(protector).eval(), acc.unwrap_model(restorer).eval()


def export_weights(path: Path, cfg: ROFIConfig, detector: SignDetector, protector: Protector, restorer: Restorer, meta: dict) -> None:
    """One file with the inference parts in fp16 (training-only parts stay in the checkpoints)."""
    half = lambda m: {k: v.half() if v.is_floating_point() else v for k, v in m.state_dict().items()}  # noqa: E731
    state = {"format": "mema-rofi-v1", "config": cfg.model_dump(mode="json"), "meta": meta,
             "detector": half(detector), "protector": half(protector), "restorer": half(restorer)}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def stage_done(out: Path, stage: str, steps: int) -> bool:
    return Checkpoints(out).latest_step(stage) >= steps


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
