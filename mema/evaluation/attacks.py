"""Key-security attacks on reversible methods, after the ROFI paper's key analysis (docs/metrics.md).

  brute_force    restore the anonymized images with many random keys
  universal_key  gradient-optimise one key vector against the differentiable restorer
                 (black box: the best of many random keys on the attacker's own pairs)
  bim            BIM identity spoofing through the right key, with and without a random-noise defence
                 (black box: a per-pixel surrogate of ``restore`` fitted from queries, solved in the same ball)
  diversity      anonymize the same images with many keys: pixel spread and identity spread

A key (or a spoofed image) *succeeds* on an image when the restored image is judged the same person as
the reference by :class:`~mema.evaluation.judge.SamePersonJudge` (one recogniser at its threshold
calibrated at the run's FAR, cropped with the reference's landmarks).

Soundness. A failed attack only means something if the attack could have worked:

* **Right-key control.** Before a restore attack, the attack's own images are restored with the right
  key through ``restore``; when fewer than ``control_min_same_person`` of them come back as their
  person, the attack is **invalid** (a wrong key failing says nothing when the right one fails too).
* **The differentiable path must be the real one.** The gradient attacks optimise
  ``restore_tensor(y, key_vectors)`` (y a float tensor (N, 3, H, W) in [0, 1], key_vectors (N, 512) from
  ``mema.keys.key_vector``, differentiable in both, model frozen). Under the right key its output,
  rounded to 8 bits, must reproduce ``restore``'s on every control image; a method whose ``restore``
  takes another route (for instance opening a sealed copy of the original) makes the gradient attack
  invalid.
* **Gradient check.** A gradient that is None, zero or not finite at the attack's starting point makes
  the gradient attack invalid: it could not move, and its "protection" would be its starting point.

An invalid attack is reported with its reason (``KeySecurityResults.invalid``; its ``*.valid`` metric is
0 and its figures have no value), never as protection. When the gradient attack is invalid, or the
method has no ``restore_tensor``, the black-box variant runs instead. Every image an attack produces is
rounded to 8 bits before it is judged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm import tqdm

from mema.evaluation.judge import SamePersonJudge
from mema.evaluation.results import Metric
from mema.faces.landmarks import FaceLandmarks
from mema.keys import Key, key_from_seed, key_vector
from mema.methods import Method, check_output

KEY_DIM = 512
# Attack keys come from key_from_seed(start + i), i < SEED_BLOCK: disjoint from each other and from
# the harness's wrong key (WRONG_KEY_SEED = 7_000_001), and the same in every run.
SEED_BLOCK = 1_000_000
BRUTE_FORCE_SEED = 8_000_000
UNIVERSAL_KEY_SEED = 9_000_000
DIVERSITY_SEED = 10_000_000
UNIVERSAL_BLACK_BOX_SEED = 11_000_000
ATTACKS = ("brute_force", "universal_key", "bim", "diversity")
AttackName = Literal["brute_force", "universal_key", "bim", "diversity"]
GRADIENT_ATTACKS = ("universal_key", "bim")


class AttackSkipped(Exception):
    """An attack that cannot run on this method; the message is reported as the reason."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeySecurityConfig(Strict):
    """Sizes of each attack. The defaults take a few minutes for a ~10 ms/image method on 2 CPU cores
    (brute force dominates: keys x images restorations, each embedded by the recogniser)."""

    attacks: list[AttackName] = Field(default_factory=lambda: list(ATTACKS))
    recogniser: str = "sface"  # dlib-resnet works too but costs ~100 ms per embedding
    batch_size: int = Field(default=32, ge=1)
    brute_force_keys: int = Field(default=1000, ge=1, le=SEED_BLOCK)
    brute_force_images: int = Field(default=8, ge=1)
    universal_steps: int = Field(default=200, ge=1)
    universal_lr: float = Field(default=0.05, gt=0)
    universal_train_images: int = Field(default=32, ge=1)  # attacker's own photos: the corpus's train split
    universal_heldout_images: int = Field(default=32, ge=1)  # evaluation-split images, never trained on
    # per_image: every image is anonymized with its own random key (a key for *any* image, as in ROFI);
    # shared: all with the run's key (known-plaintext: pairs from one clinic, then the rest of its photos).
    universal_keys: Literal["per_image", "shared"] = "per_image"
    universal_black_box_keys: int = Field(default=100, ge=1, le=SEED_BLOCK)  # random keys tried on the attacker's pairs
    bim_images: int = Field(default=32, ge=1)
    bim_eps: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.05])
    bim_steps: int = Field(default=15, ge=1)
    bim_step_factor: float = Field(default=2.5, gt=0)  # step alpha = factor * eps / steps (Madry et al.)
    bim_queries: int = Field(default=31, ge=4)  # black-box spoofing: restore() queries per image and budget (3 per round)
    defence_sigma: float = Field(default=0.015, ge=0, le=0.5)  # Gaussian noise on the restorer's input
    diversity_keys: int = Field(default=100, ge=2, le=SEED_BLOCK)
    diversity_images: int = Field(default=8, ge=1)
    # Soundness checks (module docstring).
    control_min_same_person: float = Field(default=0.5, ge=0, le=1)
    tensor_match_fraction: float = Field(default=0.99, gt=0, le=1)  # pixels within 1 level of restore(), per image
    # fallback: the black-box variant runs when the gradient attack is invalid or impossible; always: both run.
    black_box: Literal["fallback", "always"] = "fallback"
    seed: int = 0  # initial universal key, defence noise and black-box search

    @field_validator("bim_eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < e < 1 for e in v):
            raise ValueError("bim_eps must be a non-empty list of L_inf budgets in (0, 1) (image range [0, 1])")
        return v


class RightKeyControl(Strict):
    """The attack's images anonymized and restored with the right key, before any attack."""

    images: int
    same_person_rate: float  # restore() with the right key, judged the original's person
    tensor_images_matching: int | None = None  # images on which restore_tensor reproduces restore() (gradient attacks)
    tensor_mean_abs_diff: float | None = None  # 0-255 levels, restore_tensor vs restore(), mean over the images


class GradientCheck(Strict):
    wrt: Literal["key", "image"]
    norm: float | None  # L2 norm of the gradient at the attack's starting point; None when none reached the input


class InvalidAttack(Strict):
    """An attack whose controls failed: the reason, and what was measured. Never a protection figure."""

    mode: Literal["gradient", "black_box"]
    reason: str
    control: RightKeyControl | None = None
    gradient: GradientCheck | None = None


class BruteForce(Strict):
    keys: int
    images: int
    seeds: tuple[int, int]  # first and last seed of key_from_seed
    control: RightKeyControl
    pairs_succeeded: int  # (key, image) pairs whose restoration is judged the original's person
    keys_succeeded: int  # keys that succeed on at least half of the images
    success_rate: float
    closest_distance: float | None  # smallest recogniser distance any key reached (margin to the threshold)


class UniversalKey(Strict):
    mode: Literal["gradient", "black_box"]
    keys: Literal["per_image", "shared"]
    steps: int  # Adam steps (gradient) or random keys tried (black box)
    lr: float | None
    train_images: int
    heldout_images: int
    control: RightKeyControl
    gradient: GradientCheck | None = None
    initial_train_l1: float  # the starting key's (gradient) or the first random key's (black box) mean L1 to the originals
    final_train_l1: float  # the found key's
    same_person_rate: float  # held-out restorations judged their original's person
    protection_rate: float  # 1 - same_person_rate
    psnr: float  # mean over held-out images, exact restorations counted as 100 dB


class BimLevel(Strict):
    eps: float
    success_rate: float
    defended_success_rate: float
    initial_l1_to_target: float  # pixel L1 (0-1 range) of the unattacked right-key restoration to the spoof target
    mean_l1_to_target: float  # the same after the attack


class Bim(Strict):
    mode: Literal["gradient", "black_box"]
    images: int
    steps: int  # BIM steps (gradient) or restore() queries per image (black box)
    step_factor: float | None
    defence_sigma: float
    control: RightKeyControl
    gradient: GradientCheck | None = None
    levels: list[BimLevel]
    defended_same_person_rate_restored: float  # clean anonymized images restored through the defence


class Diversity(Strict):
    keys: int
    images: int
    seeds: tuple[int, int]
    repeat_pixel_diff: float  # control: 0-255 levels between two anonymizations with the same key (0 = deterministic)
    pixel_std: float  # 0-255 levels: per-pixel std across keys, averaged over pixels and images
    identity_cosine_distance: float  # mean pairwise 1 - cos between the outputs' embeddings, per image


class KeySecurityResults(Strict):
    config: KeySecurityConfig
    method: str
    key_id: str | None
    judge: dict  # recogniser, weights hash, threshold, far
    brute_force: BruteForce | None = None
    universal_key: UniversalKey | None = None  # gradient
    universal_key_black_box: UniversalKey | None = None
    bim: Bim | None = None  # gradient
    bim_black_box: Bim | None = None
    diversity: Diversity | None = None
    invalid: dict[str, InvalidAttack] = Field(default_factory=dict)  # attack (or attack_black_box) -> why
    skipped: dict[str, str] = Field(default_factory=dict)  # attack -> reason
    seconds: dict[str, float] = Field(default_factory=dict)

    def metrics(self) -> dict[str, Metric]:
        """Flat ``key_security.*`` metrics for results.json. Each attack that ran has ``<attack>.valid``
        (1 or 0); an invalid or skipped attack's headline figure has no value, n = 0, and says why."""
        m: dict[str, Metric] = {}
        p = "key_security"
        bf = self.brute_force
        if bf is not None:
            note = f"{bf.keys} random keys x {bf.images} images; a key succeeds on an image when its restoration is judged the original's person"
            m[f"{p}.brute_force.valid"] = _valid_metric(bf.control, None)
            m[f"{p}.brute_force.pairs_succeeded"] = Metric(value=bf.pairs_succeeded, n=bf.keys * bf.images, unit="pairs", higher_is_better=False, note=note)
            m[f"{p}.brute_force.keys_succeeded"] = Metric(value=bf.keys_succeeded, n=bf.keys, unit="keys", higher_is_better=False,
                                                        note=f"keys succeeding on >= half of the {bf.images} images")
            m[f"{p}.brute_force.success_rate"] = Metric(value=bf.success_rate, n=bf.keys * bf.images, higher_is_better=False, note=note)
        for name, uk in (("universal_key", self.universal_key), ("universal_key_black_box", self.universal_key_black_box)):
            if uk is None:
                continue
            how = (f"{uk.steps} Adam steps on restore_tensor" if uk.mode == "gradient" else f"best of {uk.steps} random keys by restore()")
            note = f"{how}, {uk.train_images} train images ({uk.keys} keys); held-out restorations"
            m[f"{p}.{name}.valid"] = _valid_metric(uk.control, uk.gradient)
            m[f"{p}.{name}.protection_rate"] = Metric(value=uk.protection_rate, n=uk.heldout_images, higher_is_better=True, note=note)
            m[f"{p}.{name}.same_person_rate"] = Metric(value=uk.same_person_rate, n=uk.heldout_images, higher_is_better=False, note=note)
            m[f"{p}.{name}.psnr"] = Metric(value=uk.psnr, n=uk.heldout_images, unit="dB", higher_is_better=False, note=note)
        for name, b in (("bim", self.bim), ("bim_black_box", self.bim_black_box)):
            if b is None:
                continue
            how = f"BIM {b.steps} steps" if b.mode == "gradient" else f"surrogate of restore(), {b.steps} queries per image"
            m[f"{p}.{name}.valid"] = _valid_metric(b.control, b.gradient)
            for lv in b.levels:
                m[f"{p}.{name}.eps_{lv.eps:g}.success_rate"] = Metric(value=lv.success_rate, n=b.images, higher_is_better=False,
                                                                      note=f"{how}, L_inf {lv.eps:g}; restored with the right key, judged the spoof target")
                m[f"{p}.{name}_defended.eps_{lv.eps:g}.success_rate"] = Metric(
                    value=lv.defended_success_rate, n=b.images, higher_is_better=False,
                    note=f"as {name}, Gaussian noise sigma {b.defence_sigma:g} added before restoring")
            m[f"{p}.{name}_defended.same_person_rate_restored"] = Metric(value=b.defended_same_person_rate_restored, n=b.images, higher_is_better=True,
                                                                         note=f"unattacked images restored through the noise defence (sigma {b.defence_sigma:g})")
        dv = self.diversity
        if dv is not None:
            note = f"{dv.images} images x {dv.keys} keys; same-key repeat differs by {dv.repeat_pixel_diff:.3g} levels"
            m[f"{p}.diversity.pixel_std"] = Metric(value=dv.pixel_std, n=dv.images, unit="0-255", higher_is_better=True, note=note)
            m[f"{p}.diversity.identity_cosine_distance"] = Metric(value=dv.identity_cosine_distance, n=dv.images, unit="1-cos", higher_is_better=True, note=note)
        eps = f"eps_{max(self.config.bim_eps):g}"
        primary = {"brute_force": "brute_force.keys_succeeded", "universal_key": "universal_key.protection_rate",
                   "universal_key_black_box": "universal_key_black_box.protection_rate", "bim": f"bim.{eps}.success_rate",
                   "bim_black_box": f"bim_black_box.{eps}.success_rate", "diversity": "diversity.pixel_std"}
        for attack, inv in self.invalid.items():
            n = inv.control.images if inv.control else 1
            m[f"{p}.{attack}.valid"] = Metric(value=0.0, n=n, note=f"invalid ({inv.mode}): {inv.reason}")
            m[f"{p}.{primary[attack]}"] = Metric(value=None, n=0, note=f"invalid: {inv.reason}; not a protection figure")
        for attack, reason in self.skipped.items():
            m.setdefault(f"{p}.{primary[attack]}", Metric(value=None, n=0, note=f"skipped: {reason}"))
        return m


def _valid_metric(control: RightKeyControl, gradient: GradientCheck | None) -> Metric:
    parts = [f"right-key control: {control.same_person_rate:.0%} restored as their person"]
    if control.tensor_images_matching is not None:
        parts.append(f"restore_tensor reproduces restore on {control.tensor_images_matching}/{control.images}")
    if gradient is not None:
        parts.append(f"gradient norm in the {gradient.wrt} {gradient.norm:.3g}")
    return Metric(value=1.0, n=control.images, note="valid; " + "; ".join(parts))


class AttackInvalid(Exception):
    """Raised by an attack whose controls fail; ``record`` is the :class:`InvalidAttack` to report."""

    def __init__(self, record: InvalidAttack):
        super().__init__(record.reason)
        self.record = record


@dataclass(frozen=True)
class FaceSet:
    """Original images with what the judge needs: landmarks (crop placement) and reference embeddings."""

    ids: list[str]
    images: np.ndarray  # (N, H, W, 3) uint8
    landmarks: list[FaceLandmarks]
    embeddings: np.ndarray  # (N, d) of the originals
    identities: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx) -> "FaceSet":
        idx = list(idx)
        return FaceSet([self.ids[i] for i in idx], self.images[idx], [self.landmarks[i] for i in idx],
                       self.embeddings[idx], [self.identities[i] for i in idx])


def face_set(corpus, ref, judge: SamePersonJudge, records, limit: int | None = None) -> FaceSet:
    """The first ``limit`` records whose original has landmarks and a reference embedding, in the given order."""
    emb = ref.embeddings(judge.recogniser, judge.name)
    keep = []
    for r in records:
        if limit is not None and len(keep) >= limit:
            break
        if ref.landmarks_of(r.id) is not None and r.id in emb and np.isfinite(emb[r.id]).all():
            keep.append(r)
    if not keep:
        return FaceSet([], np.zeros((0, 1, 1, 3), np.uint8), [], np.zeros((0, 1)), [])
    return FaceSet([r.id for r in keep], np.stack([corpus.load_image(r) for r in keep]), [ref.landmarks_of(r.id) for r in keep],
                   np.stack([emb[r.id] for r in keep]).astype(np.float64), [r.identity for r in keep])


# --- helpers ------------------------------------------------------------------------------------
def _apply(method: Method, stage: str, images: np.ndarray, key: Key, ids: list[str], batch_size: int) -> np.ndarray:
    fn = method.anonymize if stage == "anonymize" else method.restore
    out = [check_output(method.info.name, images[i : i + batch_size], fn(images[i : i + batch_size], key=key), ids[i : i + batch_size], stage)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def _anonymize_each(method: Method, images: np.ndarray, keys: list[Key], ids: list[str]) -> np.ndarray:
    return np.concatenate([_apply(method, "anonymize", images[i : i + 1], k, ids[i : i + 1], 1) for i, k in enumerate(keys)])


def _restore_each(method: Method, images: np.ndarray, keys: list[Key], ids: list[str]) -> np.ndarray:
    return np.concatenate([_apply(method, "restore", images[i : i + 1], k, ids[i : i + 1], 1) for i, k in enumerate(keys)])


def has_tensor_restore(method) -> bool:
    return callable(getattr(method, "restore_tensor", None))


def _tensor(images: np.ndarray, device: str):
    import torch

    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device=device, dtype=torch.float32) / 255.0


def _uint8(t) -> np.ndarray:
    return (t.detach().clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8).transpose(0, 2, 3, 1)


def _key_vectors(keys: list[Key], device: str):
    import torch

    return torch.from_numpy(np.stack([key_vector(k, KEY_DIM) for k in keys])).to(device)


def _restore_tensor(method, y, kv, batch_size: int):
    import torch

    return torch.cat([method.restore_tensor(y[i : i + batch_size], kv[i : i + batch_size]) for i in range(0, len(y), batch_size)])


def _psnr_capped(a: np.ndarray, b: np.ndarray) -> float:
    from mema.metrics.image import psnr

    return float(np.mean([min(psnr(x, y), 100.0) for x, y in zip(a, b)]))


def _l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image mean absolute difference in the 0-1 range."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(len(a), -1).mean(1) / 255.0


def right_key_control(method, y8: np.ndarray, keys: list[Key], faces: "FaceSet", judge: SamePersonJudge, cfg: KeySecurityConfig,
                      mode: str, *, device: str = "cpu", tensor: bool = False) -> RightKeyControl:
    """Restore ``y8`` (``faces`` anonymized with ``keys``, one per image) with the right keys; with
    ``tensor``, also through ``restore_tensor``. Raises :class:`AttackInvalid` when either control fails."""
    import torch

    keys = keys * len(faces) if len(keys) == 1 else keys
    plain = _restore_each(method, y8, keys, faces.ids) if len(set(k.key_id for k in keys)) > 1 else \
        _apply(method, "restore", y8, keys[0], faces.ids, cfg.batch_size)
    same = judge.same_person(judge.embed(plain, faces.landmarks), faces.embeddings)
    control = RightKeyControl(images=len(faces), same_person_rate=float(same.mean()))
    if tensor:
        with torch.no_grad():
            diff = np.abs(_uint8(_restore_tensor(method, _tensor(y8, device), _key_vectors(keys, device), cfg.batch_size)).astype(np.int16)
                          - plain.astype(np.int16))
        close = (diff <= 1).reshape(len(diff), -1).mean(1) >= cfg.tensor_match_fraction
        control = control.model_copy(update={"tensor_images_matching": int(close.sum()), "tensor_mean_abs_diff": float(diff.mean())})
        if not close.all():
            raise AttackInvalid(InvalidAttack(mode=mode, control=control, reason=(
                f"restore_tensor does not reproduce restore() under the right key ({int(close.sum())} of {len(close)} images within "
                f"1 level on {cfg.tensor_match_fraction:.0%} of pixels; mean difference {diff.mean():.1f} levels): the gradient "
                "would attack another restorer than the one a user runs")))
    if control.same_person_rate < cfg.control_min_same_person:
        raise AttackInvalid(InvalidAttack(mode=mode, control=control, reason=(
            f"the right key restores only {control.same_person_rate:.0%} of the attack's images as their person "
            f"(control minimum {cfg.control_min_same_person:.0%}): a failed attack would say nothing")))
    return control


def _gradient_check(wrt: str, grad) -> GradientCheck:
    import torch

    if grad is None:
        return GradientCheck(wrt=wrt, norm=None)
    return GradientCheck(wrt=wrt, norm=float(torch.linalg.vector_norm(grad.detach().double()).item()))


def _require_gradient(check: GradientCheck, control: RightKeyControl, what: str) -> None:
    if check.norm is None or not np.isfinite(check.norm) or check.norm == 0.0:
        state = "None (no gradient reaches it)" if check.norm is None else f"{check.norm} (nothing to follow)"
        raise AttackInvalid(InvalidAttack(mode="gradient", control=control, gradient=check,
                                     reason=f"the gradient of the attack's loss in the {check.wrt} is {state}: {what}"))


# --- the attacks --------------------------------------------------------------------------------
def brute_force(method: Method, key: Key, faces: FaceSet, judge: SamePersonJudge, *, n_keys: int = 1000,
                batch_size: int = 32, progress: bool = True, cfg: KeySecurityConfig | None = None) -> BruteForce:
    """Restore ``faces`` anonymized with ``key`` using keys key_from_seed(BRUTE_FORCE_SEED + i), i < n_keys."""
    cfg = cfg or KeySecurityConfig(batch_size=batch_size)
    anonymized = _apply(method, "anonymize", faces.images, key, faces.ids, batch_size)
    control = right_key_control(method, anonymized, [key], faces, judge, cfg, "black_box")
    dist = np.full((n_keys, len(faces)), np.nan)
    for j in tqdm(range(n_keys), desc="brute force (keys)", unit="key", disable=not progress):
        restored = _apply(method, "restore", anonymized, key_from_seed(BRUTE_FORCE_SEED + j), faces.ids, batch_size)
        dist[j] = judge.distance(judge.embed(restored, faces.landmarks), faces.embeddings)
    success = np.isfinite(dist) & (dist < judge.threshold)
    per_key = success.sum(1)
    finite = dist[np.isfinite(dist)]
    return BruteForce(keys=n_keys, images=len(faces), seeds=(BRUTE_FORCE_SEED, BRUTE_FORCE_SEED + n_keys - 1), control=control,
                      pairs_succeeded=int(success.sum()), keys_succeeded=int((2 * per_key >= len(faces)).sum()),
                      success_rate=float(success.mean()), closest_distance=float(finite.min()) if finite.size else None)


def _universal_keys(key: Key, n_tr: int, n_ho: int, cfg: KeySecurityConfig) -> tuple[list[Key], list[Key]]:
    if cfg.universal_keys == "shared":
        return [key] * n_tr, [key] * n_ho
    return ([key_from_seed(UNIVERSAL_KEY_SEED + i) for i in range(n_tr)],
            [key_from_seed(UNIVERSAL_KEY_SEED + n_tr + i) for i in range(n_ho)])


def universal_key(method, key: Key, train_images: np.ndarray, heldout: FaceSet, judge: SamePersonJudge, cfg: KeySecurityConfig,
                  *, device: str = "cpu", progress: bool = True) -> UniversalKey:
    """Optimise one key vector (init N(0, 1)) to minimise L1(restore_tensor(y, k), x) over the train images,
    then restore the held-out images with it. Raises :class:`AttackInvalid` when a control fails."""
    import torch

    n_tr, n_ho = len(train_images), len(heldout)
    k_tr, k_ho = _universal_keys(key, n_tr, n_ho, cfg)
    y_tr = _tensor(_anonymize_each(method, train_images, k_tr, [f"train-{i}" for i in range(n_tr)]), device)
    y_ho8 = _anonymize_each(method, heldout.images, k_ho, heldout.ids)
    control = right_key_control(method, y_ho8, k_ho, heldout, judge, cfg, "gradient", device=device, tensor=True)
    y_ho = _tensor(y_ho8, device)
    x_tr = _tensor(train_images, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    kv = torch.randn(KEY_DIM, generator=gen).to(device).requires_grad_(True)
    opt = torch.optim.Adam([kv], lr=cfg.universal_lr)
    bs = cfg.batch_size

    def train_l1(with_grad: bool):
        """Mean L1 over the train images and its gradient in the key (None when no gradient reaches the key)."""
        total, grad = 0.0, torch.zeros_like(kv)
        for i in range(0, n_tr, bs):
            with torch.set_grad_enabled(with_grad):
                out = method.restore_tensor(y_tr[i : i + bs], kv.expand(len(y_tr[i : i + bs]), -1))
                loss = (out - x_tr[i : i + bs]).abs().mean() * len(out) / n_tr
            if with_grad:
                # autograd.grad, not backward: the method's own parameters never receive gradients
                g = torch.autograd.grad(loss, kv, allow_unused=True)[0] if loss.requires_grad else None
                if g is None:
                    return float(loss), None
                grad += g
            total += loss.item()
        return total, grad

    initial, grad = train_l1(True)
    check = _gradient_check("key", grad)
    _require_gradient(check, control, "restore_tensor's output does not depend on the key, so no key can be searched for this way")
    for step in tqdm(range(cfg.universal_steps), desc="universal key (steps)", unit="step", disable=not progress):
        _, grad = train_l1(True)
        if grad is None:  # never a silent stop: the key found so far is not the attack's result
            raise AttackInvalid(InvalidAttack(mode="gradient", control=control, gradient=check,
                                              reason=f"the gradient in the key vanished at step {step} of {cfg.universal_steps}"))
        kv.grad = grad
        opt.step()
    final, _ = train_l1(False)
    with torch.no_grad():
        restored = _uint8(_restore_tensor(method, y_ho, kv.detach().expand(n_ho, -1), bs))
    same = judge.same_person(judge.embed(restored, heldout.landmarks), heldout.embeddings)
    return UniversalKey(mode="gradient", keys=cfg.universal_keys, steps=cfg.universal_steps, lr=cfg.universal_lr, train_images=n_tr,
                        heldout_images=n_ho, control=control, gradient=check, initial_train_l1=initial, final_train_l1=final,
                        same_person_rate=float(same.mean()), protection_rate=float(1 - same.mean()), psnr=_psnr_capped(heldout.images, restored))


def universal_key_black_box(method: Method, key: Key, train_images: np.ndarray, heldout: FaceSet, judge: SamePersonJudge,
                            cfg: KeySecurityConfig, *, progress: bool = True) -> UniversalKey:
    """The universal-key attack through ``restore`` only: of keys key_from_seed(UNIVERSAL_BLACK_BOX_SEED + j),
    j < universal_black_box_keys, the one whose restorations of the attacker's train pairs are closest (L1)
    to their originals restores the held-out images."""
    n_tr, n_ho = len(train_images), len(heldout)
    k_tr, k_ho = _universal_keys(key, n_tr, n_ho, cfg)
    tr_ids = [f"train-{i}" for i in range(n_tr)]
    y_tr8 = _anonymize_each(method, train_images, k_tr, tr_ids)
    y_ho8 = _anonymize_each(method, heldout.images, k_ho, heldout.ids)
    control = right_key_control(method, y_ho8, k_ho, heldout, judge, cfg, "black_box")
    losses = []
    for j in tqdm(range(cfg.universal_black_box_keys), desc="universal key, black box (keys)", unit="key", disable=not progress):
        restored = _apply(method, "restore", y_tr8, key_from_seed(UNIVERSAL_BLACK_BOX_SEED + j), tr_ids, cfg.batch_size)
        losses.append(float(_l1(restored, train_images).mean()))
    best = key_from_seed(UNIVERSAL_BLACK_BOX_SEED + int(np.argmin(losses)))
    restored = _apply(method, "restore", y_ho8, best, heldout.ids, cfg.batch_size)
    same = judge.same_person(judge.embed(restored, heldout.landmarks), heldout.embeddings)
    return UniversalKey(mode="black_box", keys=cfg.universal_keys, steps=cfg.universal_black_box_keys, lr=None, train_images=n_tr,
                        heldout_images=n_ho, control=control, initial_train_l1=losses[0], final_train_l1=min(losses),
                        same_person_rate=float(same.mean()), protection_rate=float(1 - same.mean()), psnr=_psnr_capped(heldout.images, restored))


def spoof_targets(identities: list[str]) -> list[int] | None:
    """For each image the next one (cyclically) of another identity; None when there is only one identity."""
    n = len(identities)
    out = []
    for i in range(n):
        j = next((j % n for j in range(i + 1, i + n) if identities[j % n] != identities[i]), None)
        if j is None:
            return None
        out.append(j)
    return out


def _defend(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = images / 255.0 + rng.normal(0.0, sigma, images.shape)
    return np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)


def _ball(y8: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """8-bit bounds of the L_inf ball of radius ``eps`` (0-1 range) around ``y8`` (y8 is on the 8-bit grid)."""
    y = y8.astype(np.float64)
    return np.clip(np.ceil(y - eps * 255 - 1e-9), 0, 255), np.clip(np.floor(y + eps * 255 + 1e-9), 0, 255)


def _bim_result(method, key, faces: FaceSet, tgt: FaceSet, y8, adversarial: dict[float, np.ndarray], judge, cfg, rng, *, mode, steps,
                step_factor, control, gradient) -> Bim:
    """Judge each budget's 8-bit adversarial images through the plain restore, with and without the defence."""
    bs = cfg.batch_size
    initial = _l1(_apply(method, "restore", y8, key, faces.ids, bs), tgt.images).mean()
    levels = []
    for eps, adv8 in adversarial.items():
        restored = _apply(method, "restore", adv8, key, faces.ids, bs)
        defended = _apply(method, "restore", _defend(adv8, cfg.defence_sigma, rng), key, faces.ids, bs)
        ok = judge.same_person(judge.embed(restored, tgt.landmarks), tgt.embeddings)
        ok_d = judge.same_person(judge.embed(defended, tgt.landmarks), tgt.embeddings)
        levels.append(BimLevel(eps=eps, success_rate=float(ok.mean()), defended_success_rate=float(ok_d.mean()),
                               initial_l1_to_target=float(initial), mean_l1_to_target=float(_l1(restored, tgt.images).mean())))
    clean = _apply(method, "restore", _defend(y8, cfg.defence_sigma, rng), key, faces.ids, bs)
    clean_ok = judge.same_person(judge.embed(clean, faces.landmarks), faces.embeddings)
    return Bim(mode=mode, images=len(faces), steps=steps, step_factor=step_factor, defence_sigma=cfg.defence_sigma, control=control,
               gradient=gradient, levels=levels, defended_same_person_rate_restored=float(clean_ok.mean()))


def bim(method, key: Key, faces: FaceSet, judge: SamePersonJudge, cfg: KeySecurityConfig, *, device: str = "cpu",
        progress: bool = True) -> Bim:
    """BIM (Kurakin et al.) on anonymized images so that their right-key restoration becomes another identity.

    Objective: pixel L1 between restore_tensor(y + delta, key) and the spoof target's original (the
    recognisers are not differentiable); delta in the L_inf ball of radius eps, image kept in [0, 1],
    then rounded to 8 bits inside the ball and restored through the plain protocol.
    Raises :class:`AttackInvalid` when a control fails.
    """
    import torch

    targets = spoof_targets(faces.identities)
    tgt = faces.take(targets)
    bs = cfg.batch_size
    y8 = _apply(method, "anonymize", faces.images, key, faces.ids, bs)
    control = right_key_control(method, y8, [key] * len(faces), faces, judge, cfg, "gradient", device=device, tensor=True)
    y = _tensor(y8, device)
    x_tgt = _tensor(tgt.images, device)
    kv = _key_vectors([key], device).expand(len(faces), -1)

    def grad_at(adv):
        grads = []
        for i in range(0, len(adv), bs):  # images are attacked independently; chunks bound the graph's memory
            a = adv[i : i + bs].detach().requires_grad_(True)
            loss = (method.restore_tensor(a, kv[i : i + bs]) - x_tgt[i : i + bs]).abs().sum()
            if not loss.requires_grad:
                return None
            g = torch.autograd.grad(loss, a, allow_unused=True)[0]
            if g is None:
                return None
            grads.append(g)
        return torch.cat(grads)

    check = _gradient_check("image", grad_at(y))
    _require_gradient(check, control, "restore_tensor's output does not follow its input, so BIM cannot steer it")
    adversarial = {}
    bar = tqdm(total=len(cfg.bim_eps) * cfg.bim_steps, desc="BIM spoofing (steps)", unit="step", disable=not progress)
    for eps in cfg.bim_eps:
        alpha = cfg.bim_step_factor * eps / cfg.bim_steps
        adv = y.clone()
        for _ in range(cfg.bim_steps):
            grad = grad_at(adv)
            if grad is None:  # the gradient vanished on the way: report the attack as it stands, never a break
                raise AttackInvalid(InvalidAttack(mode="gradient", control=control, gradient=check,
                                             reason=f"the gradient in the image vanished during BIM at L_inf {eps:g}"))
            adv = torch.minimum(torch.maximum(adv.detach() - alpha * grad.sign(), y - eps), y + eps).clamp(0, 1)
            bar.update()
        lo, hi = _ball(y8, eps)
        adversarial[eps] = np.clip(_uint8(adv).astype(np.float64), lo, hi).astype(np.uint8)
    bar.close()
    return _bim_result(method, key, faces, tgt, y8, adversarial, judge, cfg, np.random.default_rng(cfg.seed), mode="gradient",
                       steps=cfg.bim_steps, step_factor=cfg.bim_step_factor, control=control, gradient=check)


def bim_black_box(method: Method, key: Key, faces: FaceSet, judge: SamePersonJudge, cfg: KeySecurityConfig, *,
                  progress: bool = True) -> Bim:
    """Spoofing through ``restore`` only, with a surrogate fitted to its outputs.

    Each round fits a per-pixel linear surrogate of ``restore`` around the current image from antithetic
    random probes (y +- delta u, u a random sign pattern: slope = change of output / change of input, per
    pixel and channel), moves every pixel to the surrogate's best value for the spoof target inside the
    L_inf ball, and keeps the move for the images whose real right-key restoration got closer (L1) to the
    target. ``bim_queries`` bounds the restore() calls per image and budget.
    """
    targets = spoof_targets(faces.identities)
    tgt = faces.take(targets)
    bs = cfg.batch_size
    y8 = _apply(method, "anonymize", faces.images, key, faces.ids, bs)
    control = right_key_control(method, y8, [key] * len(faces), faces, judge, cfg, "black_box")
    rng = np.random.default_rng(cfg.seed + 1)
    restore = lambda x: _apply(method, "restore", x.astype(np.uint8), key, faces.ids, bs).astype(np.float64)
    target = tgt.images.astype(np.float64)
    adversarial = {}
    bar = tqdm(total=len(cfg.bim_eps) * cfg.bim_queries, desc="spoofing, black box (queries)", unit="query", disable=not progress)
    for eps in cfg.bim_eps:
        lo, hi = _ball(y8, eps)
        delta = max(2.0, np.floor(eps * 255 / 2))
        adv = y8.astype(np.float64)
        out = restore(adv)
        loss = np.abs(out - target).reshape(len(adv), -1).mean(1)
        used = 1
        while used + 3 <= cfg.bim_queries:
            u = rng.choice([-1.0, 1.0], size=adv.shape)
            plus, minus = np.clip(adv + delta * u, 0, 255), np.clip(adv - delta * u, 0, 255)
            step = plus - minus
            slope = np.where(step != 0, (restore(plus) - restore(minus)) / np.where(step != 0, step, 1), 0.0)
            move = np.where(np.abs(slope) > 1e-3, (target - out) / np.where(np.abs(slope) > 1e-3, slope, 1), 0.0)
            cand = np.clip(np.round(adv + move), lo, hi)
            cand_out = restore(cand)
            cand_loss = np.abs(cand_out - target).reshape(len(adv), -1).mean(1)
            better = cand_loss < loss
            adv[better], out[better], loss[better] = cand[better], cand_out[better], cand_loss[better]
            used += 3
            bar.update(3)
        bar.update(cfg.bim_queries - used)
        adversarial[eps] = adv.astype(np.uint8)
    bar.close()
    return _bim_result(method, key, faces, tgt, y8, adversarial, judge, cfg, np.random.default_rng(cfg.seed), mode="black_box",
                       steps=cfg.bim_queries, step_factor=None, control=control, gradient=None)


def diversity(method: Method, faces: FaceSet, judge: SamePersonJudge, *, n_keys: int = 100, batch_size: int = 32,
              progress: bool = True) -> Diversity:
    """Anonymize ``faces`` with keys key_from_seed(DIVERSITY_SEED + j), j < n_keys."""
    s1 = np.zeros(faces.images.shape, np.float64)
    s2 = np.zeros(faces.images.shape, np.float64)
    embs = []
    first = None
    for j in tqdm(range(n_keys), desc="key diversity (keys)", unit="key", disable=not progress):
        out = _apply(method, "anonymize", faces.images, key_from_seed(DIVERSITY_SEED + j), faces.ids, batch_size)
        first = out if first is None else first
        out = out.astype(np.float64)
        s1 += out
        s2 += out**2
        embs.append(judge.embed(out.astype(np.uint8), faces.landmarks))
    # control: a method that is random under one key spreads without any key at all
    again = _apply(method, "anonymize", faces.images, key_from_seed(DIVERSITY_SEED), faces.ids, batch_size)
    std = np.sqrt(np.maximum(n_keys * s2 - s1**2, 0.0)) / n_keys  # integer sums: exact 0 for identical outputs
    e = np.stack(embs, 1)  # (images, keys, d)
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)
    iu = np.triu_indices(n_keys, 1)
    cos_dist = [float(np.nanmean(np.clip(1 - (ei @ ei.T)[iu], 0, 2))) for ei in e]  # clip: rounding gives -1e-16
    return Diversity(keys=n_keys, images=len(faces), seeds=(DIVERSITY_SEED, DIVERSITY_SEED + n_keys - 1),
                     repeat_pixel_diff=float(np.abs(again.astype(np.float64) - first).mean()),
                     pixel_std=float(std.reshape(len(faces), -1).mean(1).mean()), identity_cosine_distance=float(np.nanmean(cos_dist)))


# --- the suite ----------------------------------------------------------------------------------
def run_key_security(method: Method, key: Key, faces: FaceSet, train_images: np.ndarray, judge: SamePersonJudge,
                     cfg: KeySecurityConfig | None = None, *, device: str = "cpu", progress: bool = True) -> KeySecurityResults:
    """Run the configured attacks; ``faces`` are evaluation images (the first N are used by each attack),
    ``train_images`` the universal-key attacker's own photos, ``key`` the right key."""
    cfg = cfg or KeySecurityConfig()
    res = KeySecurityResults(config=cfg, method=method.info.name, key_id=key.key_id, judge={"recogniser": judge.name, **judge.record})
    wanted = [a for a in ATTACKS if a in cfg.attacks]
    reasons = {}
    if not method.info.reversible:
        reasons = {a: f"method {method.info.name!r} is not reversible" for a in wanted}
    elif len(faces) == 0:
        reasons = {a: "no evaluation image with a detected face and a reference embedding" for a in wanted}
    else:
        if "universal_key" in wanted and len(train_images) == 0:
            reasons["universal_key"] = "no training images for the attacker"
        if "bim" in wanted and spoof_targets(faces.identities[: cfg.bim_images]) is None:
            reasons["bim"] = "needs images of at least two identities for spoof targets"
    res.skipped = {a: reasons[a] for a in wanted if a in reasons}
    for attack in (a for a in wanted if a not in reasons):
        if attack not in GRADIENT_ATTACKS:
            _timed(res, attack, lambda: _run_one(attack, res, method, key, faces, train_images, judge, cfg, device, progress))
            continue
        if has_tensor_restore(method):
            _timed(res, attack, lambda: _run_one(attack, res, method, key, faces, train_images, judge, cfg, device, progress))
        else:
            res.skipped[attack] = (f"method {method.info.name!r} has no restore_tensor (differentiable access); "
                                   f"attacked black-box instead ({attack}_black_box)")
        if attack in res.invalid or attack in res.skipped or cfg.black_box == "always":
            bb = f"{attack}_black_box"
            _timed(res, bb, lambda: _run_one(bb, res, method, key, faces, train_images, judge, cfg, device, progress))
    return res


def _timed(res: KeySecurityResults, attack: str, fn) -> None:
    t0 = time.time()
    try:
        fn()
    except AttackInvalid as exc:
        res.invalid[attack] = exc.record
    except AttackSkipped as exc:
        res.skipped[attack] = str(exc)
    res.seconds[attack] = round(time.time() - t0, 2)


def _run_one(attack, res, method, key, faces, train_images, judge, cfg, device, progress) -> None:
    take = lambda n: faces.take(range(min(n, len(faces))))
    if attack == "brute_force":
        res.brute_force = brute_force(method, key, take(cfg.brute_force_images), judge, n_keys=cfg.brute_force_keys,
                                      batch_size=cfg.batch_size, progress=progress, cfg=cfg)
    elif attack == "universal_key":
        res.universal_key = universal_key(method, key, train_images[: cfg.universal_train_images], take(cfg.universal_heldout_images),
                                          judge, cfg, device=device, progress=progress)
    elif attack == "universal_key_black_box":
        res.universal_key_black_box = universal_key_black_box(method, key, train_images[: cfg.universal_train_images],
                                                              take(cfg.universal_heldout_images), judge, cfg, progress=progress)
    elif attack == "bim":
        res.bim = bim(method, key, take(cfg.bim_images), judge, cfg, device=device, progress=progress)
    elif attack == "bim_black_box":
        res.bim_black_box = bim_black_box(method, key, take(cfg.bim_images), judge, cfg, progress=progress)
    else:
        res.diversity = diversity(method, take(cfg.diversity_images), judge, n_keys=cfg.diversity_keys, batch_size=cfg.batch_size,
                                  progress=progress)


def key_security_on_corpus(corpus, method: Method, key: Key, cfg: KeySecurityConfig | None = None, *, records=None, split: str = "test",
                           far: float = 0.01, ref=None, device: str = "cpu", progress: bool = True) -> KeySecurityResults:
    """The attacks on a corpus: evaluation images from ``records`` (default: the ``split``, sorted by id),
    the universal-key attacker's photos from the train split, the judge from the corpus's calibration."""
    from mema.evaluators.reference import ReferenceEvaluators

    cfg = cfg or KeySecurityConfig()
    if not method.info.reversible or key is None:
        # nothing to attack: skip before computing any reference embedding
        reason = f"method {method.info.name!r} is not reversible" if not method.info.reversible else "no key given"
        return KeySecurityResults(config=cfg, method=method.info.name, key_id=None, judge={}, skipped={a: reason for a in ATTACKS if a in cfg.attacks})
    ref = ref or ReferenceEvaluators(corpus, progress=progress, device=device)
    judge = SamePersonJudge.from_reference(ref, cfg.recogniser, far)
    records = records if records is not None else sorted(corpus.split(split), key=lambda r: r.id)
    n_eval = max(cfg.brute_force_images, cfg.universal_heldout_images, cfg.bim_images, cfg.diversity_images)
    faces = face_set(corpus, ref, judge, records, limit=n_eval)  # originals without landmarks are left out
    train = []
    if "universal_key" in cfg.attacks:
        train = sorted(corpus.split("train"), key=lambda r: r.id)[: cfg.universal_train_images]
    train_images = np.stack([corpus.load_image(r) for r in train]) if train else np.zeros((0, 1, 1, 3), np.uint8)
    return run_key_security(method, key, faces, train_images, judge, cfg, device=device, progress=progress)
