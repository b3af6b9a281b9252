"""``medsem-deid`` as a MeMa method: the exported networks anonymize and restore uint8 face crops.

Weights: the manifest entry ``medsem_deid_mema_mini`` (trained by ``mema-train medsem-deid --dataset mini``,
shipped in the package), or any file written by ``mema-train medsem-deid`` via ``MEMA_MEDSEM_WEIGHTS=PATH``.
Inference runs in eval mode with no randomness: the same input and password give the same output.
The password is the key file's 512-d key vector (``mema.keys.key_vector``), the scheme ROFI uses.

Reversibility: ``medsem-deid`` restores with its own learned ID-Decryptor only; what comes back is
what the networks learned (docs/methods/medsem-deid.md gives the figures). ``medsem-deid-sealed`` is the
same networks wrapped by :class:`mema.sealing.Sealed`: the original sealed in the output's two low bits,
opened by the right key, the learned decryptor otherwise.

Per-sample status (``last_statuses`` after each ``anonymize``; ``status_counts`` over the method's life).
The method needs no landmarks, so profile views, closed eyes and small faces go through the same
networks; what it can say per sample is whether its own identity network still matches the output:

    ok             phi(X_enc) is below phi's same-person threshold for X (cosine at FAR 1% on val)
    identity_kept  phi still calls the output the same person as its input (the de-identification
                   did not take, by the method's own measure; the harness's recognisers judge for real)
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from mema.baselines.medsem.config import MedSemConfig
from mema.baselines.medsem.networks import MedSemDeID
from mema.baselines.rofi.identity import IdentityNet
from mema.keys import Key, key_vector
from mema.methods import MethodError, MethodInfo, register
from mema.sealing import Sealed

WEIGHTS_ENTRY = "medsem_deid_mema_mini"
WEIGHTS_ENV = "MEMA_MEDSEM_WEIGHTS"
STATUSES = ("ok", "identity_kept")
PAPER = ("MeMa (seed paper 003, AAAI 2025), 'A Baseline Approach for Med-DeID': MedSem-DeID; "
         "an independent re-implementation, the authors' code was never released")
DESCRIPTION = ("MedSem-DeID: image encoder + frozen diffusion-UNet medical semantics through three residual blocks, "
               "ID-Encryptor transformer with the 512-d password token, image decoder; ID-Decryptor restores with the password")


def load_medsem(path: Path | None = None, device: str = "cpu") -> tuple[MedSemDeID, IdentityNet, float, dict]:
    """(model, phi, phi's threshold, weight record) from the manifest entry or a user file."""
    from mema.weights import sha256_file, weight_path, weight_record

    if path is None:
        path = weight_path(WEIGHTS_ENTRY)  # verifies the sha256 in the manifest
        record = weight_record(WEIGHTS_ENTRY)
    else:
        if not Path(path).is_file():
            raise MethodError(f"MedSem-DeID weights {Path(path).name} not found ({WEIGHTS_ENV} or weights=)")
        record = {"name": "medsem-deid (user weights)", "file": Path(path).name, "sha256": sha256_file(Path(path))}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (a corrupt or foreign file, reported by name)
        raise MethodError(f"MedSem-DeID weights {Path(path).name} cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != "mema-medsem-deid-v1":
        raise MethodError(f"{Path(path).name} is not a MedSem-DeID weights file written by mema-train medsem-deid")
    cfg = MedSemConfig.model_validate(state["config"])
    model = MedSemDeID(cfg)
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    idnet = IdentityNet()
    idnet.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["identity"].items()})
    for m in (model, idnet):
        m.to(device).eval().requires_grad_(False)
    return model, idnet, float(state["identity_threshold"]), {**record, "meta": state.get("meta", {})}


@register("medsem-deid")
class MedSemDeIDMethod:
    """MedSem-DeID's networks; restore is the learned ID-Decryptor (no sealed original)."""

    def __init__(self, weights: str | Path | None = None, batch_size: int = 64):
        from mema.runtime import default_device

        weights = weights or os.environ.get(WEIGHTS_ENV) or None
        self.device = default_device()
        self.model, self.idnet, self.identity_threshold, self.weights = load_medsem(Path(weights) if weights else None, self.device)
        self.weights_sha256 = self.weights["sha256"]
        self.batch_size = batch_size
        cfg = self.model.cfg
        self.info = MethodInfo(
            name="medsem-deid", version="0.1.0", reversible=True, key_scheme="mema-key-v1",
            licence="Apache-2.0 (code and weights; the weights are trained on MeMa-mini, research-only)",
            trained_on=(f"{self.weights['meta'].get('trained_on', 'MeMa-mini train split')} (identity network, semantic "
                        "encoder and de-identification networks); the paper's loss weights, nothing tuned on dev or test"),
            description=DESCRIPTION + "; restore is the learned decryptor.",
            paper=PAPER,
            params={"reversibility": "learned", "tuned_on": "none (paper's loss weights)", "image_size": cfg.image_size,
                    "token_grid": cfg.grid, "token_dim": cfg.token_dim, "encryptor_depth": cfg.encryptor_depth,
                    "decryptor_depth": cfg.decryptor_depth, "semantic_encoder": "diffusion-unet",
                    "identity_threshold": round(self.identity_threshold, 4), "weights_sha256": self.weights_sha256[:16]},
        )
        self.last_statuses: list[str] = []
        self.status_counts: Counter = Counter()

    # Tensor routes: differentiable, used by the harness's key-security attacks.
    def anonymize_tensor(self, x: torch.Tensor, key_vectors: torch.Tensor) -> torch.Tensor:
        return self.model.anonymize(x, key_vectors)

    def restore_tensor(self, y: torch.Tensor, key_vectors: torch.Tensor) -> torch.Tensor:
        return self.model.restore(y, key_vectors)

    def _check(self, images, key) -> None:
        if not isinstance(key, Key):
            raise MethodError("medsem-deid needs a key (its password; mema keygen KEYFILE, then --key KEYFILE)")
        size = self.model.cfg.image_size
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
            got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise MethodError(f"medsem-deid takes (N, {size}, {size}, 3) uint8 face crops; got {got}")

    def _run(self, images: np.ndarray, key: Key | None, fn, statuses: list | None = None) -> np.ndarray:
        self._check(images, key)
        out = np.empty_like(images)
        if len(images) == 0:
            return out
        kv = torch.from_numpy(key_vector(key, self.model.cfg.key_dim)).to(self.device)
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[i:i + self.batch_size]).to(self.device).permute(0, 3, 1, 2).float().div(255.0)
                y8 = fn(x, kv.expand(len(x), -1)).mul(255.0).round().clamp(0, 255)
                if statuses is not None:
                    cos = (self.idnet(x) * self.idnet(y8 / 255.0)).sum(1)
                    statuses += ["identity_kept" if c >= self.identity_threshold else "ok" for c in cos.tolist()]
                out[i:i + len(x)] = y8.byte().permute(0, 2, 3, 1).cpu().numpy()
        return out

    def anonymize(self, images: np.ndarray, key: Key | None = None) -> np.ndarray:
        statuses: list[str] = []
        out = self._run(images, key, self.anonymize_tensor, statuses)
        self.last_statuses = statuses
        self.status_counts.update(statuses)
        return out

    def restore(self, images: np.ndarray, key: Key) -> np.ndarray:
        return self._run(images, key, self.restore_tensor)


@register("medsem-deid-sealed")
class MedSemDeIDSealed(Sealed):
    """MedSem-DeID with the original sealed into the protected image (``mema.sealing``); the learned
    decryptor restores whatever the seal does not open."""

    def __init__(self, weights: str | Path | None = None, batch_size: int = 64):
        super().__init__(MedSemDeIDMethod(weights, batch_size), name="medsem-deid-sealed",
                         description=DESCRIPTION + " (sealed variant, not in the paper)")
