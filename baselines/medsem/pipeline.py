"""The whole ``mema-train medsem-deid`` run: load splits, the four stages, checks on the val split, export."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mema.baselines.medsem import train as T
from mema.baselines.medsem.networks import MedSemDeID
from mema.baselines.medsem.semantic import MedicalSemantics, SemanticUNet
from mema.baselines.rofi.data import SplitTensors, load_split
from mema.baselines.rofi.identity import IdentityNet
from mema.corpus.store import Corpus
from mema.weights import sha256_file

FAR = 0.01  # phi's same-person threshold: 1% of different-identity val pairs above it


@torch.no_grad()
def _embed(net: IdentityNet, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(images[i:i + 256].float().div(255.0)) for i in range(0, len(images), 256)])


@torch.no_grad()
def identity_check(net: IdentityNet, val: SplitTensors, limit: int = 2000) -> dict:
    """phi on the val split: same- vs different-identity AUROC, and the cosine threshold at FAR 1%."""
    n = min(limit, len(val.images))
    emb = _embed(net, val.images[:n])
    sim = (emb @ emb.t()).numpy()
    ids = val.identity[:n].numpy()
    iu = np.triu_indices(n, 1)
    same = (ids[:, None] == ids[None, :])[iu]
    out = {"n_images": n, "n_same_pairs": int(same.sum())}
    if 0 < same.sum() < len(same):
        out["val_pairs_auroc"] = round(float(roc_auc_score(same, sim[iu])), 4)
        out["threshold_far_1pct"] = round(float(np.quantile(sim[iu][~same], 1.0 - FAR)), 4)
    else:
        out["threshold_far_1pct"] = 0.5  # a corpus too small to calibrate on (pipeline tests)
    return out


@torch.no_grad()
def deid_check(model: MedSemDeID, idnet: IdentityNet, val: SplitTensors, seed: int, limit: int = 400) -> dict:
    """Learned figures on the val split with seeded passwords (one per image): PSNR of X_enc and X^ to X,
    phi's cosine of X_enc, X^ and X_wrong to X, and the Enc_med feature error of X_enc."""
    g = torch.Generator().manual_seed(seed + 99)
    n = min(limit, len(val.images))
    rows = {k: [] for k in ("psnr_enc", "psnr_rev", "psnr_wrong", "cos_enc", "cos_rev", "cos_wrong", "med_mse")}
    for i in range(0, n, 32):
        x = val.batch(torch.arange(i, min(i + 32, n)), "cpu")
        keys, wrong = torch.randn(len(x), model.cfg.key_dim, generator=g), torch.randn(len(x), model.cfg.key_dim, generator=g)
        y = torch.round(model.anonymize(x, keys) * 255) / 255
        x_rev = torch.round(model.restore(y, keys) * 255) / 255
        x_wrong = torch.round(model.restore(y, wrong) * 255) / 255
        e = idnet(x)
        for name, img in (("enc", y), ("rev", x_rev), ("wrong", x_wrong)):
            rows[f"psnr_{name}"] += (-10 * torch.log10(((img - x) ** 2).flatten(1).mean(1).clamp_min(1e-10))).tolist()
            rows[f"cos_{name}"] += (idnet(img) * e).sum(1).tolist()
        rows["med_mse"] += ((model.semantics(y) - model.semantics(x)) ** 2).flatten(1).mean(1).tolist()
    return {"n_val": n, **{k: round(float(np.mean(v)), 4) for k, v in rows.items()}}


def train_medsem(corpus: Corpus, cfg: T.TrainConfig, out: Path, limit: int | None = None, progress: bool = True) -> dict:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    t_start = time.time()
    train = load_split(corpus, "train", progress, limit)
    val = load_split(corpus, "val", progress, limit)
    report: dict = {"corpus": corpus.fingerprint, "n_train": len(train.images), "n_val": len(val.images)}
    seconds: dict[str, float] = {}

    t0 = time.time()
    if T.stage_done(out, "identity", cfg.identity_steps):
        idnet = IdentityNet()
        idnet.load_state_dict(T.stage_state(out, "identity")["net"])
    else:
        idnet = T.train_identity(train, cfg, out, progress)
    idnet = idnet.cpu().eval()
    report["identity_net"] = identity_check(idnet, val)
    seconds["identity"] = time.time() - t0

    t0 = time.time()
    sem_file = out / "semantics.pt"
    if T.stage_done(out, "semantic", cfg.semantic_steps) and sem_file.is_file():
        sem = MedicalSemantics(cfg.medsem.semantic)
        sem.load_state_dict(torch.load(sem_file, map_location="cpu", weights_only=True))
    else:
        if T.stage_done(out, "semantic", cfg.semantic_steps):
            unet = SemanticUNet(cfg.medsem.semantic)
            unet.load_state_dict(T.stage_state(out, "semantic")["unet"])
        else:
            unet = T.train_semantic(train, cfg, out, progress)
        sem = T.medical_semantics(unet.cpu().eval(), train, cfg)
        T.save_semantics(sem_file, sem)
    seconds["semantic"] = time.time() - t0

    t0 = time.time()
    if cfg.warmup_steps > 0 and not T.stage_done(out, "warmup", cfg.warmup_steps):
        T.train_warmup(train, sem, cfg, out, progress)
    seconds["warmup"] = time.time() - t0

    t0 = time.time()
    if T.stage_done(out, "deid", cfg.deid_steps):
        model = MedSemDeID(cfg.medsem, sem)
        model.load_state_dict(T.stage_state(out, "deid")["model"])
    else:
        model = T.train_deid(train, sem, idnet, cfg, out, progress)
    model = model.cpu().eval()
    seconds["deid"] = time.time() - t0

    report["val"] = deid_check(model, idnet, val, cfg.seed)
    weights = out / "medsem-deid.pt"
    meta = {"trained_on": f"{corpus.info.name} {corpus.info.version} train split", "corpus": corpus.fingerprint,
            "seed": cfg.seed, "steps": {s: getattr(cfg, f"{s}_steps") for s in T.STAGES}}
    T.export_weights(weights, model, idnet, report["identity_net"]["threshold_far_1pct"], meta)
    report["weights"] = {"file": weights.name, "sha256": sha256_file(weights), "size": weights.stat().st_size}
    # Seconds of this invocation per stage (a resumed run counts only what it did).
    report["seconds_this_run"] = {**{k: round(v, 1) for k, v in seconds.items()}, "total": round(time.time() - t_start, 1)}
    (out / "train_report.json").write_text(json.dumps(report, indent=1))
    return report

