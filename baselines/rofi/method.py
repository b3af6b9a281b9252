"""``rofi`` as a MeMa method: loads the exported weights and anonymizes/restores uint8 face crops.

Weights: the manifest entry ``rofi_mema_mini`` (trained by ``mema-train rofi --dataset mini``, shipped
in the package), or any file written by ``mema-train rofi`` via ``MEMA_ROFI_WEIGHTS=PATH``.
Inference runs in eval mode with no randomness: the same input and key give the same output.
``MEMA_ROFI_SIGN_THRESHOLD`` overrides the sign threshold (the paper's Table 1 ablation);
``MEMA_ROFI_EYE_OPENINGS=0`` turns off keeping the original's eye openings (the ablation in docs/rofi.md).

Reversibility: ``rofi`` is :class:`ROFINetworks` wrapped by :class:`mema.sealing.Sealed`: ``anonymize``
seals a copy of the original into the protected image's low bits; ``restore`` opens it with the right
key. Images that carry no copy openable with the given key (a wrong key, a re-encoded or edited file, a
photo never anonymized) go through the neural restorer, which gives a key-dependent face and never the
original. ``rofi-unsealed`` is the networks alone (its restore is the learned restorer only), so the
learned restorer's own figures can be measured beside the sealed ones.
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from mema.baselines.rofi.config import ROFIConfig
from mema.baselines.rofi.networks import ROFI
from mema.keys import Key, key_vector
from mema.methods import MethodError, MethodInfo, register
from mema.sealing import Sealed

WEIGHTS_ENTRY = "rofi_mema_mini"
DESCRIPTION = ("ROFI (reversible ophthalmic face anonymization): weakly supervised sign detector, "
               "key-conditioned transformer identity translator on the key's virtual face, DA-Former, Dec-Net; "
               "the original's eye openings kept")
PER_IMAGE_THREADS = 2  # landmark detection runs per image, beside torch


def load_rofi(path: Path | None = None, device: str = "cpu") -> tuple[ROFI, dict]:
    from mema.weights import weight_path, weight_record

    if path is None:
        path = weight_path(WEIGHTS_ENTRY)  # verifies the sha256 in the manifest
        record = weight_record(WEIGHTS_ENTRY)
    else:
        from mema.weights import sha256_file

        record = {"name": "rofi (user weights)", "file": Path(path).name, "sha256": sha256_file(Path(path))}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (a corrupt or foreign file, reported by name)
        raise MethodError(f"ROFI weights {Path(path).name} cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != "mema-rofi-v1":
        raise MethodError(f"{Path(path).name} is not a ROFI weights file written by mema-train rofi")
    from mema.generation.dcgan import load_generator

    cfg = ROFIConfig.model_validate(state["config"])
    model = ROFI(cfg, load_generator())  # the virtual faces come from the manifest's DCGAN
    for part in ("detector", "protector", "restorer"):
        getattr(model, part).load_state_dict({k: v.float() for k, v in state[part].items()})
    return model.to(device).eval().requires_grad_(False), {**record, "meta": state.get("meta", {})}


@register("rofi-unsealed")
class ROFINetworks:
    """ROFI's networks alone: key-protected anonymizer that keeps the detected ophthalmic sign regions;
    its restore is the learned restorer (no sealed original)."""

    def __init__(self, weights: str | Path | None = None, sign_threshold: float | None = None, batch_size: int = 64):
        from mema.runtime import default_device

        weights = weights or os.environ.get("MEMA_ROFI_WEIGHTS") or None
        self.device = default_device()
        self.model, self.weights = load_rofi(Path(weights) if weights else None, self.device)
        if sign_threshold is None and os.environ.get("MEMA_ROFI_SIGN_THRESHOLD"):
            try:
                sign_threshold = float(os.environ["MEMA_ROFI_SIGN_THRESHOLD"])
            except ValueError:
                raise MethodError("MEMA_ROFI_SIGN_THRESHOLD must be a number in (0, 1)") from None
        self.threshold = self.model.cfg.sign_threshold if sign_threshold is None else float(sign_threshold)
        if not 0.0 < self.threshold < 1.0:
            raise MethodError(f"rofi sign threshold must lie in (0, 1), got {self.threshold}")
        self.keep_eye_openings = self.model.cfg.keep_eye_openings
        flag = os.environ.get("MEMA_ROFI_EYE_OPENINGS")
        if flag is not None:
            if flag not in ("0", "1"):
                raise MethodError("MEMA_ROFI_EYE_OPENINGS must be 0 or 1")
            self.keep_eye_openings = flag == "1"
        self._local = threading.local()
        self._pool = None
        self.batch_size = batch_size
        self.info = MethodInfo(
            name="rofi-unsealed", version="0.1.0", reversible=True, key_scheme="mema-key-v1", licence="Apache-2.0",
            trained_on=self.weights["meta"].get("trained_on", "MeMa-mini train split"),
            description=DESCRIPTION + ", restorer network.",
            paper="ROFI (seed paper 000); losses from MeMa MedSem-DeID",
            params={"reversibility": "learned", "keep_eye_openings": self.keep_eye_openings,
                    "image_size": self.model.cfg.image_size, "sign_threshold": self.threshold, "translator_depth": self.model.cfg.translator_depth,
                    "weights_sha256": self.weights["sha256"][:16]},
        )

    def _detector(self):
        """This thread's landmark detector (MediaPipe graphs are not shared between threads)."""
        det = getattr(self._local, "landmarks", None)
        if det is None:
            from mema.faces.landmarks import LandmarkDetector

            det = self._local.landmarks = LandmarkDetector()
            # MediaPipe's own finaliser fails at interpreter shutdown; close it while Python is whole.
            weakref.finalize(self, det.close)
        return det

    def _map(self, fn, items) -> list:
        """``fn`` over ``items`` on two threads: landmarks (MediaPipe) release the GIL and torch is idle
        meanwhile (sealing runs on the wrapper's own two threads), which keeps anonymize above 40 images/s on 2 cores."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=PER_IMAGE_THREADS, thread_name_prefix="rofi")
            weakref.finalize(self, self._pool.shutdown)
        return list(self._pool.map(fn, items))

    def eye_openings(self, x: torch.Tensor) -> torch.Tensor | None:
        """(N, 1, H, W) soft masks of the eye openings of faces in [0, 1] images ``x``; zero where no
        face is found (that image is then pure ROFI). None when the option is off."""
        if not self.keep_eye_openings:
            return None
        from mema.faces.eyecrop import eye_opening_mask

        cfg = self.model.cfg
        images = x.detach().mul(255.0).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()

        def mask(img: np.ndarray) -> np.ndarray:
            lm = self._detector().detect(img)
            if lm is None:
                return np.zeros(img.shape[:2], np.float32)
            return eye_opening_mask(lm, img.shape[:2], *cfg.eye_opening_axes, cfg.eye_opening_feather)

        return torch.from_numpy(np.stack(self._map(mask, images))[:, None]).to(x.device)

    # Tensor routes: differentiable, used by the harness's key-security attacks.
    def anonymize_tensor(self, x: torch.Tensor, key_vectors: torch.Tensor) -> torch.Tensor:
        return self.model.anonymize(x, key_vectors, self.threshold, keep=self.eye_openings(x))

    def restore_tensor(self, y: torch.Tensor, key_vectors: torch.Tensor) -> torch.Tensor:
        return self.model.restore(y, key_vectors)

    def _check(self, images: np.ndarray, key: Key | None) -> None:
        if not isinstance(key, Key):
            raise MethodError("rofi needs a key (mema keygen KEYFILE, then --key KEYFILE)")
        size = self.model.cfg.image_size
        if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
            raise MethodError(f"rofi takes (N, {size}, {size}, 3) uint8 face crops; got {images.dtype} {images.shape}")

    def _run(self, images: np.ndarray, key: Key | None, fn) -> np.ndarray:
        self._check(images, key)
        if len(images) == 0:
            return images.copy()
        kv = torch.from_numpy(key_vector(key, self.model.cfg.key_dim)).to(self.device)
        out = np.empty_like(images)
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[i:i + self.batch_size]).to(self.device).permute(0, 3, 1, 2).float().div(255.0)
                y = fn(x, kv.expand(len(x), -1))
                out[i:i + len(x)] = y.mul(255.0).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        return out

    def anonymize(self, images: np.ndarray, key: Key | None = None) -> np.ndarray:
        return self._run(images, key, self.anonymize_tensor)

    def restore(self, images: np.ndarray, key: Key) -> np.ndarray:
        return self._run(images, key, self.restore_tensor)


@register("rofi")
class ROFIMethod(Sealed):
    """ROFI as shipped: the networks, with the original sealed into the protected image (``mema.sealing``)."""

    def __init__(self, weights: str | Path | None = None, sign_threshold: float | None = None, batch_size: int = 64):
        super().__init__(ROFINetworks(weights, sign_threshold, batch_size), name="rofi", description=DESCRIPTION)
