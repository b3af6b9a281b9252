"""The whole ``mema-train rofi`` run: load splits, the three stages, checks on the val split, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mema.baselines.rofi import train as T
from mema.baselines.rofi.data import load_split
from mema.baselines.rofi.identity import IdentityNet
from mema.baselines.rofi.networks import SignDetector
from mema.corpus.store import Corpus
from mema.weights import sha256_file


def _from_checkpoint(out: Path, stage: str, name: str, module: torch.nn.Module) -> torch.nn.Module:
    _, state = T.Checkpoints(out).latest(stage)
    module.load_state_dict(state["modules"][name])
    return module.eval()


@torch.no_grad()
def _identity_check(net: IdentityNet, val, limit: int = 2000) -> dict:
    """Same-identity vs different-identity cosine on the val split: AUROC (how useful the de-id signal is)."""
    n = min(limit, len(val.images))
    emb = torch.cat([net(val.batch(torch.arange(i, min(i + 256, n)), "cpu")) for i in range(0, n, 256)])
    sim = (emb @ emb.t()).numpy()
    ids = val.identity[:n].numpy()
    iu = np.triu_indices(n, 1)
    same = (ids[:, None] == ids[None, :])[iu]
    return {"val_pairs_auroc": round(float(roc_auc_score(same, sim[iu])), 4), "n_images": n,
            "n_same_pairs": int(same.sum())}


def train_rofi(corpus: Corpus, cfg: T.TrainConfig, out: Path, limit: int | None = None, progress: bool = True) -> dict:
    T.seed_everything(cfg.seed)
    train = load_split(corpus, "train", progress, limit)
    val = load_split(corpus, "val", progress, limit)
    report: dict = {"corpus": corpus.fingerprint, "n_train": len(train.images), "n_val": len(val.images)}

    if T.stage_done(out, "identity", cfg.identity_steps):
        idnet = _from_checkpoint(out, "identity", "net", IdentityNet())
    else:
        idnet = T.train_identity(train, cfg, out, progress)
    report["identity_net"] = _identity_check(idnet.cpu(), val)

    if T.stage_done(out, "detector", cfg.detector_steps):
        det = _from_checkpoint(out, "detector", "det", SignDetector(cfg.rofi.detector_window, cfg.rofi.image_size))
    else:
        det = T.train_detector(train, cfg, out, progress)
    det = det.cpu()
    val_scores = T.detector_scores(det, val.images, progress=progress)
    p = val_scores.flatten(1).amax(1).numpy()
    y = val.diseased.numpy()
    area = (val_scores > cfg.rofi.sign_threshold).float().flatten(1).mean(1).numpy()
    report["detector"] = {
        "val_auroc_diseased": round(float(roc_auc_score(y, p)), 4) if 0 < y.mean() < 1 else None,
        "val_accuracy_at_threshold": round(float(((p > cfg.rofi.sign_threshold) == (y > 0)).mean()), 4),
        "mean_sign_area_diseased": round(float(area[y > 0].mean()), 4),
        "mean_sign_area_healthy": round(float(area[y == 0].mean()), 4) if (y == 0).any() else None,
        "n_val": int(len(y)),
    }
    (out / "detector_eval.json").write_text(json.dumps(report["detector"], indent=1))

    scores = T.detector_scores(det, train.images, progress=progress)
    protector, restorer = T.train_translator(train, scores, idnet, cfg, out, progress)
    weights = out / "rofi.pt"
    meta = {"trained_on": f"{corpus.info.name} {corpus.info.version} train split", "corpus": corpus.fingerprint,
            "seed": cfg.seed, "steps": {s: getattr(cfg, f"{s}_steps") for s in T.STAGES}}
    T.export_weights(weights, cfg.rofi, det, protector.cpu(), restorer.cpu(), meta)
    report["weights"] = {"file": weights.name, "sha256": sha256_file(weights), "size": weights.stat().st_size}
    (out / "train_report.json").write_text(json.dumps(report, indent=1))
    return report
