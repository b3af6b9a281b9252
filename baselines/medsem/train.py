"""Training MedSem-DeID in four stages, each resumable from its checkpoints:

  identity  phi, the training-only identity network (CosFace over the train split's identities)
  semantic  the diffusion UNet on the train split (DDPM epsilon objective); its down path becomes Enc_med
  warmup    encoder, fusion, both transformers and the decoder as an autoencoder (X_enc ~ X, X^ ~ X)
  deid      the paper's objective with Enc_med and phi frozen, against a PatchGAN critic

Batches, passwords and noise are drawn by a generator seeded with (seed, stage, step), so a run resumed
from step k draws exactly what the uninterrupted run would have. Devices and mixed precision come from
accelerate: the same command uses a GPU when there is one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from mema.baselines.medsem.config import MedSemConfig
from mema.baselines.medsem.losses import LossWeights, identity_cosines, jitter, objective, quantize
from mema.baselines.medsem.networks import MedSemDeID
from mema.baselines.medsem.semantic import MedicalSemantics, SemanticUNet
from mema.baselines.rofi.data import SplitTensors
from mema.baselines.rofi.discriminators import PatchCritic, hinge_d_loss, hinge_g_loss
from mema.baselines.rofi.identity import CosFaceHead, IdentityNet
from mema.baselines.rofi.train import Checkpoints, Log, accelerator, resumable_loop

STAGES = ("identity", "semantic", "warmup", "deid")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    identity_steps: int = Field(default=500, ge=1)
    identity_batch_size: int = Field(default=64, ge=2)
    semantic_steps: int = Field(default=600, ge=1)
    semantic_batch_size: int = Field(default=16, ge=1)
    semantic_learning_rate: float = Field(default=5e-4, gt=0)
    warmup_steps: int = Field(default=500, ge=0)
    warmup_batch_size: int = Field(default=8, ge=1)
    warmup_learning_rate: float = Field(default=1e-3, gt=0)  # Adam (0.9, 0.99): an autoencoder start, not the paper's stage
    deid_steps: int = Field(default=600, ge=1)
    batch_size: int = Field(default=8, ge=2)
    # The paper: Adam (0.5, 0.99), 2e-4, halved after half of the iterations (150k of 300k).
    learning_rate: float = Field(default=2e-4, gt=0)
    checkpointing_steps: int = Field(default=100, ge=1)
    identity_jitter: bool = True  # phi sees each image after a small random re-alignment (losses.jitter)
    critic_width: int = Field(default=32, ge=4)
    losses: LossWeights = Field(default_factory=LossWeights)
    medsem: MedSemConfig = Field(default_factory=MedSemConfig)


def _gen(seed: int, stage: str, step: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(hash((seed, 100 + STAGES.index(stage), step)) & 0x7FFF_FFFF_FFFF)
    return g


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Horizontal flips (faces are aligned: no geometric jitter of the training images themselves)."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, x.flip(-1), x)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips and small gain changes, for the identity network."""
    gain = (1.0 + 0.1 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5)).to(x.device)
    return (_flip(x, gen) * gain).clamp(0.0, 1.0)


def run_stage(stage: str, cfg: TrainConfig, steps: int, out: Path, modules: dict, optimizers: dict, step_fn,
              progress: bool) -> None:
    """One stage through the loop ROFI's stages use, with this run's checkpoints and log."""
    resumable_loop(stage, cfg, steps, Checkpoints(out), Log(out / "train_log.jsonl"), modules, optimizers, step_fn,
                   progress, label="medsem")


def stage_done(out: Path, stage: str, steps: int) -> bool:
    return Checkpoints(out).latest_step(stage) >= steps


def stage_state(out: Path, stage: str) -> dict:
    found = Checkpoints(out).latest(stage)
    if found is None:
        raise FileNotFoundError(f"no {stage} checkpoint in {out / 'checkpoints'}")
    return found[1]["modules"]


# --- identity ------------------------------------------------------------------------------------

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
        if cfg.identity_jitter:
            x = jitter(x, g)  # phi later judges jittered images: it learns on them too
        labels = data.identity[idx].to(acc.device)
        with acc.autocast():
            loss = F.cross_entropy(head(net(x), labels), labels)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        sched.step()
        return {"loss": loss.item()}

    net.train()
    run_stage("identity", cfg, cfg.identity_steps, out, {"net": net, "head": head}, {"opt": opt, "sched": sched}, step_fn, progress)
    return acc.unwrap_model(net).eval()


# --- semantic encoder ----------------------------------------------------------------------------

def train_semantic(data: SplitTensors, cfg: TrainConfig, out: Path, progress: bool = True) -> SemanticUNet:
    acc = accelerator(cfg)
    torch.manual_seed(cfg.seed + 1)
    unet = SemanticUNet(cfg.medsem.semantic)
    # The paper's recipe for its diffusion models: Adam (0.9, 0.99) with cosine decay.
    opt = torch.optim.Adam(unet.parameters(), lr=cfg.semantic_learning_rate, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.semantic_steps, eta_min=cfg.semantic_learning_rate * 0.05)
    unet, opt = acc.prepare(unet, opt)

    def step_fn(step):
        g = _gen(cfg.seed, "semantic", step)
        idx = torch.randint(0, len(data.images), (cfg.semantic_batch_size,), generator=g)
        x = _flip(data.batch(idx, acc.device), g)
        with acc.autocast():
            loss = acc.unwrap_model(unet).loss(x, g)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        return {"loss": loss.item()}

    unet.train()
    run_stage("semantic", cfg, cfg.semantic_steps, out, {"unet": unet}, {"opt": opt, "sched": sched}, step_fn, progress)
    return acc.unwrap_model(unet).eval()


def medical_semantics(unet: SemanticUNet, data: SplitTensors, cfg: TrainConfig, n: int = 512) -> MedicalSemantics:
    """Enc_med from a trained UNet, its feature scale measured on ``n`` seeded train images."""
    sem = MedicalSemantics(cfg.medsem.semantic, unet.encoder)
    g = torch.Generator().manual_seed(cfg.seed + 17)
    idx = torch.randperm(len(data.images), generator=g)[:n]
    sem.calibrate(data.batch(idx[i:i + 64], "cpu") for i in range(0, len(idx), 64))
    return sem


def save_semantics(path: Path, sem: MedicalSemantics) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(sem.state_dict(), tmp)
    tmp.replace(path)


# --- warm-up and the de-identification objective -------------------------------------------------

def _model(cfg: TrainConfig, sem: MedicalSemantics) -> MedSemDeID:
    torch.manual_seed(cfg.seed + 2)
    return MedSemDeID(cfg.medsem, sem)


def train_warmup(data: SplitTensors, sem: MedicalSemantics, cfg: TrainConfig, out: Path, progress: bool = True) -> MedSemDeID:
    """Both paths as an autoencoder: Dec(Enc(f, P)) ~ X and Dec(Dec_r(f(X_enc), P)) ~ X, random P.

    Not in the paper, which trains 300k iterations from scratch: with about a thousand CPU steps and
    lambda_rev = 0.1 the decoder would otherwise never learn to draw a face.
    """
    acc = accelerator(cfg)
    model = _model(cfg, sem)
    opt = torch.optim.Adam(model.trainable(), lr=cfg.warmup_learning_rate, betas=(0.9, 0.99))
    model, opt = acc.prepare(model, opt)
    m = acc.unwrap_model(model)
    dev, kd = acc.device, cfg.medsem.key_dim

    def step_fn(step):
        g = _gen(cfg.seed, "warmup", step)
        idx = torch.randint(0, len(data.images), (cfg.warmup_batch_size,), generator=g)
        x = _flip(data.batch(idx, dev), g)
        keys = torch.randn(len(x), kd, generator=g).to(dev)
        with torch.no_grad():
            f_med = m.semantics(x)
        with acc.autocast():
            y = m.anonymize(x, keys, f_med)
            x_rev = m.restore(quantize(y), keys)
            l_enc, l_rev = F.l1_loss(y, x), F.l1_loss(x_rev, x)
            loss = l_enc + l_rev
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        psnr = -10 * torch.log10(F.mse_loss(x_rev.detach().float(), x).clamp_min(1e-10))
        return {"loss": loss.item(), "l1_enc": l_enc.item(), "l1_rev": l_rev.item(), "psnr_rev": psnr.item()}

    model.train()
    run_stage("warmup", cfg, cfg.warmup_steps, out, {"model": model}, {"opt": opt}, step_fn, progress)
    return m.eval()


def train_deid(data: SplitTensors, sem: MedicalSemantics, idnet: IdentityNet, cfg: TrainConfig, out: Path,
               progress: bool = True) -> MedSemDeID:
    acc = accelerator(cfg)
    model = _model(cfg, sem)
    if cfg.warmup_steps > 0:
        model.load_state_dict(stage_state(out, "warmup")["model"])
    critic = PatchCritic(cfg.critic_width, 4)
    opt_g = torch.optim.Adam(model.trainable(), lr=cfg.learning_rate, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.learning_rate, betas=(0.5, 0.99))
    half = max(1, cfg.deid_steps // 2)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: 1.0 if s < half else 0.5)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lambda s: 1.0 if s < half else 0.5)
    model, critic, opt_g, opt_d = acc.prepare(model, critic, opt_g, opt_d)
    m = acc.unwrap_model(model)
    idnet = idnet.to(acc.device).eval().requires_grad_(False)
    dev, kd, w = acc.device, cfg.medsem.key_dim, cfg.losses

    def phi(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return idnet(jitter(img, g) if cfg.identity_jitter else img)

    def step_fn(step):
        g = _gen(cfg.seed, "deid", step)
        n = cfg.batch_size
        idx = torch.randint(0, len(data.images), (n,), generator=g)
        x = _flip(data.batch(idx, dev), g)
        keys = torch.randn(n, kd, generator=g).to(dev)
        wrong = torch.randn(n, kd, generator=g).to(dev)
        with torch.no_grad():
            f_med = m.semantics(x)
            e_x = phi(x, g)
        with acc.autocast():
            y = m.anonymize(x, keys, f_med)
            yq = quantize(y)  # what is stored is an 8-bit image
            f_med_y = m.semantics(yq)  # L_med's Enc_med(X_enc), also the restoration's medical features
            f_y = m.features(yq, f_med_y)
            x_rev = m.decode(m.decryptor(f_y, keys))
            x_wrong = m.decode(m.decryptor(f_y, wrong))
            fakes = torch.cat([y, x_rev, x_wrong])
            d_loss = hinge_d_loss(critic(x), critic(fakes.detach()))
        opt_d.zero_grad(set_to_none=True)
        acc.backward(d_loss)
        opt_d.step()
        sched_d.step()

        with acc.autocast():
            e_enc, e_wrong = phi(y, g), phi(x_wrong, g)
            g_loss, terms = objective(
                w, e_x=e_x, e_enc=e_enc, e_rev=phi(x_rev, g), e_wrong=e_wrong,
                f_med=f_med, f_med_enc=f_med_y, x=x, x_rev=x_rev, gan=hinge_g_loss(critic(fakes)))
        opt_g.zero_grad(set_to_none=True)
        acc.backward(g_loss)
        opt_g.step()
        sched_g.step()
        with torch.no_grad():
            psnr = -10 * torch.log10(F.mse_loss(x_rev.float(), x).clamp_min(1e-10))
            psnr_enc = -10 * torch.log10(F.mse_loss(y.float(), x).clamp_min(1e-10))
        return {"g": g_loss.item(), "d": d_loss.item(), "psnr_rev": psnr.item(), "psnr_enc": psnr_enc.item(),
                **{k: v.item() for k, v in terms.items()}, **identity_cosines(e_x, e_enc.detach(), e_wrong.detach())}

    model.train(), critic.train()
    run_stage("deid", cfg, cfg.deid_steps, out, {"model": model, "critic": critic},
              {"opt_g": opt_g, "opt_d": opt_d, "sched_g": sched_g, "sched_d": sched_d}, step_fn, progress)
    return m.eval()


def export_weights(path: Path, model: MedSemDeID, idnet: IdentityNet, identity_threshold: float, meta: dict) -> None:
    """One file with the inference parts in fp16: Enc_med (with its feature scale), the de-id networks,
    and phi with its same-person threshold (the method's own per-sample check). Critics stay in the checkpoints."""
    half = lambda sd: {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}  # noqa: E731
    state = {"format": "mema-medsem-deid-v1", "config": model.cfg.model_dump(mode="json"), "meta": meta,
             "model": half(model.state_dict()), "identity": half(idnet.state_dict()),
             "identity_threshold": float(identity_threshold)}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
