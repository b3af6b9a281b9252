"""Key-security attacks on reversible methods, after the ROFI paper's key analysis (docs/metrics.md).

  brute_force    restore the anonymized images with many random keys
  universal_key  gradient-optimise one key vector against the frozen restorer
  bim            BIM identity spoofing through the right key, with and without a random-noise defence
  diversity      anonymize the same images with many keys: pixel spread and identity spread

A key (or a spoofed image) *succeeds* on an image when the restored image is judged the same person as
the reference by :class:`~mema.evaluation.judge.SamePersonJudge` (one recogniser at its threshold
calibrated at the run's FAR, cropped with the reference's landmarks).

Brute force and diversity use the plain protocol (``anonymize``/``restore`` with :class:`~mema.keys.Key`
objects). Universal key and BIM need differentiable access: ``restore_tensor(y, key_vectors)`` with y a
float tensor (N, 3, H, W) in [0, 1] and key_vectors (N, 512) (``mema.keys.key_vector``), differentiable
in both, model frozen in eval mode, returning a tensor on the input's device. Without it they are skipped
and the reason is reported. Every image an attack produces is rounded to 8 bits before it is judged.
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
ATTACKS = ("brute_force", "universal_key", "bim", "diversity")
AttackName = Literal["brute_force", "universal_key", "bim", "diversity"]


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
    bim_images: int = Field(default=32, ge=1)
    bim_eps: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.05])
    bim_steps: int = Field(default=15, ge=1)
    bim_step_factor: float = Field(default=2.5, gt=0)  # step alpha = factor * eps / steps (Madry et al.)
    defence_sigma: float = Field(default=0.015, ge=0, le=0.5)  # Gaussian noise on the restorer's input
    diversity_keys: int = Field(default=100, ge=2, le=SEED_BLOCK)
    diversity_images: int = Field(default=8, ge=1)
    seed: int = 0  # initial universal key and defence noise

    @field_validator("bim_eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < e < 1 for e in v):
            raise ValueError("bim_eps must be a non-empty list of L_inf budgets in (0, 1) (image range [0, 1])")
        return v


class BruteForce(Strict):
    keys: int
    images: int
    seeds: tuple[int, int]  # first and last seed of key_from_seed
    pairs_succeeded: int  # (key, image) pairs whose restoration is judged the original's person
    keys_succeeded: int  # keys that succeed on at least half of the images
    success_rate: float
    closest_distance: float | None  # smallest recogniser distance any key reached (margin to the threshold)


class UniversalKey(Strict):
    keys: Literal["per_image", "shared"]
    steps: int
    lr: float
    train_images: int
    heldout_images: int
    key_has_effect: bool  # False: restore_tensor's output does not depend on the key (nothing to optimise)
    initial_train_l1: float
    final_train_l1: float
    same_person_rate: float  # held-out restorations judged their original's person
    protection_rate: float  # 1 - same_person_rate
    psnr: float  # mean over held-out images, exact restorations counted as 100 dB


class BimLevel(Strict):
    eps: float
    success_rate: float
    defended_success_rate: float
    mean_l1_to_target: float  # pixel L1 (0-1 range) of the right-key restoration to the spoof target


class Bim(Strict):
    images: int
    steps: int
    step_factor: float
    defence_sigma: float
    levels: list[BimLevel]
    defended_same_person_rate_restored: float  # clean anonymized images restored through the defence


class Diversity(Strict):
    keys: int
    images: int
    seeds: tuple[int, int]
    pixel_std: float  # 0-255 levels: per-pixel std across keys, averaged over pixels and images
    identity_cosine_distance: float  # mean pairwise 1 - cos between the outputs' embeddings, per image


class KeySecurityResults(Strict):
    config: KeySecurityConfig
    method: str
    key_id: str | None
    judge: dict  # recogniser, weights hash, threshold, far
    brute_force: BruteForce | None = None
    universal_key: UniversalKey | None = None
    bim: Bim | None = None
    diversity: Diversity | None = None
    skipped: dict[str, str] = Field(default_factory=dict)  # attack -> reason
    seconds: dict[str, float] = Field(default_factory=dict)

    def metrics(self) -> dict[str, Metric]:
        """Flat ``key_security.*`` metrics for results.json; a skipped attack's figures have n = 0."""
        m: dict[str, Metric] = {}
        p = "key_security"
        bf = self.brute_force
        if bf is not None:
            note = f"{bf.keys} random keys x {bf.images} images; a key succeeds on an image when its restoration is judged the original's person"
            m[f"{p}.brute_force.pairs_succeeded"] = Metric(value=bf.pairs_succeeded, n=bf.keys * bf.images, unit="pairs", higher_is_better=False, note=note)
            m[f"{p}.brute_force.keys_succeeded"] = Metric(value=bf.keys_succeeded, n=bf.keys, unit="keys", higher_is_better=False,
                                                        note=f"keys succeeding on >= half of the {bf.images} images")
            m[f"{p}.brute_force.success_rate"] = Metric(value=bf.success_rate, n=bf.keys * bf.images, higher_is_better=False, note=note)
        uk = self.universal_key
        if uk is not None:
            note = f"{uk.steps} Adam steps on {uk.train_images} train images ({uk.keys} keys); held-out restorations"
            m[f"{p}.universal_key.protection_rate"] = Metric(value=uk.protection_rate, n=uk.heldout_images, higher_is_better=True, note=note)
            m[f"{p}.universal_key.same_person_rate"] = Metric(value=uk.same_person_rate, n=uk.heldout_images, higher_is_better=False, note=note)
            m[f"{p}.universal_key.psnr"] = Metric(value=uk.psnr, n=uk.heldout_images, unit="dB", higher_is_better=False, note=note)
        if self.bim is not None:
            b = self.bim
            for lv in b.levels:
                m[f"{p}.bim.eps_{lv.eps:g}.success_rate"] = Metric(value=lv.success_rate, n=b.images, higher_is_better=False,
                                                                   note=f"BIM {b.steps} steps, L_inf {lv.eps:g}; restored with the right key, judged the spoof target")
                m[f"{p}.bim_defended.eps_{lv.eps:g}.success_rate"] = Metric(value=lv.defended_success_rate, n=b.images, higher_is_better=False,
                                                                            note=f"as bim, Gaussian noise sigma {b.defence_sigma:g} added before restoring")
            m[f"{p}.bim_defended.same_person_rate_restored"] = Metric(value=b.defended_same_person_rate_restored, n=b.images, higher_is_better=True,
                                                                      note=f"unattacked images restored through the noise defence (sigma {b.defence_sigma:g})")
        dv = self.diversity
        if dv is not None:
            note = f"{dv.images} images x {dv.keys} keys"
            m[f"{p}.diversity.pixel_std"] = Metric(value=dv.pixel_std, n=dv.images, unit="0-255", higher_is_better=True, note=note)
            m[f"{p}.diversity.identity_cosine_distance"] = Metric(value=dv.identity_cosine_distance, n=dv.images, unit="1-cos", higher_is_better=True, note=note)
        primary = {"brute_force": "brute_force.keys_succeeded", "universal_key": "universal_key.protection_rate",
                   "bim": f"bim.eps_{max(self.config.bim_eps):g}.success_rate", "diversity": "diversity.pixel_std"}
        for attack, reason in self.skipped.items():
            m[f"{p}.{primary[attack]}"] = Metric(value=None, n=0, note=f"skipped: {reason}")
        return m


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


# --- the attacks --------------------------------------------------------------------------------
def brute_force(method: Method, key: Key, faces: FaceSet, judge: SamePersonJudge, *, n_keys: int = 1000,
                batch_size: int = 32, progress: bool = True) -> BruteForce:
    """Restore ``faces`` anonymized with ``key`` using keys key_from_seed(BRUTE_FORCE_SEED + i), i < n_keys."""
    anonymized = _apply(method, "anonymize", faces.images, key, faces.ids, batch_size)
    dist = np.full((n_keys, len(faces)), np.nan)
    for j in tqdm(range(n_keys), desc="brute force (keys)", unit="key", disable=not progress):
        restored = _apply(method, "restore", anonymized, key_from_seed(BRUTE_FORCE_SEED + j), faces.ids, batch_size)
        dist[j] = judge.distance(judge.embed(restored, faces.landmarks), faces.embeddings)
    success = np.isfinite(dist) & (dist < judge.threshold)
    per_key = success.sum(1)
    finite = dist[np.isfinite(dist)]
    return BruteForce(keys=n_keys, images=len(faces), seeds=(BRUTE_FORCE_SEED, BRUTE_FORCE_SEED + n_keys - 1),
                      pairs_succeeded=int(success.sum()), keys_succeeded=int((2 * per_key >= len(faces)).sum()),
                      success_rate=float(success.mean()), closest_distance=float(finite.min()) if finite.size else None)


def universal_key(method, key: Key, train_images: np.ndarray, heldout: FaceSet, judge: SamePersonJudge, cfg: KeySecurityConfig,
                  *, device: str = "cpu", progress: bool = True) -> UniversalKey:
    """Optimise one key vector (init N(0, 1)) to minimise L1(restore(y, k), x) over the train images, then
    restore the held-out images with it."""
    import torch

    n_tr, n_ho = len(train_images), len(heldout)
    if cfg.universal_keys == "shared":
        k_tr, k_ho = [key] * n_tr, [key] * n_ho
    else:
        k_tr = [key_from_seed(UNIVERSAL_KEY_SEED + i) for i in range(n_tr)]
        k_ho = [key_from_seed(UNIVERSAL_KEY_SEED + n_tr + i) for i in range(n_ho)]
    y_tr = _tensor(_anonymize_each(method, train_images, k_tr, [f"train-{i}" for i in range(n_tr)]), device)
    y_ho = _tensor(_anonymize_each(method, heldout.images, k_ho, heldout.ids), device)
    x_tr = _tensor(train_images, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    kv = torch.randn(KEY_DIM, generator=gen).to(device).requires_grad_(True)
    opt = torch.optim.Adam([kv], lr=cfg.universal_lr)
    bs = cfg.batch_size

    def train_l1(with_grad: bool):
        """Mean L1 over the train images and its gradient in the key (None when the key has no effect)."""
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

    initial, _ = train_l1(False)
    has_effect = True
    for _ in tqdm(range(cfg.universal_steps), desc="universal key (steps)", unit="step", disable=not progress):
        _, grad = train_l1(True)
        if grad is None:
            has_effect = False  # the restorer ignores the key: every key is the universal key
            break
        kv.grad = grad
        opt.step()
    final, _ = train_l1(False)
    with torch.no_grad():
        restored = _uint8(_restore_tensor(method, y_ho, kv.detach().expand(n_ho, -1), bs))
    same = judge.same_person(judge.embed(restored, heldout.landmarks), heldout.embeddings)
    return UniversalKey(keys=cfg.universal_keys, steps=cfg.universal_steps, lr=cfg.universal_lr, train_images=n_tr, heldout_images=n_ho,
                        key_has_effect=has_effect, initial_train_l1=initial, final_train_l1=final, same_person_rate=float(same.mean()),
                        protection_rate=float(1 - same.mean()), psnr=_psnr_capped(heldout.images, restored))


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


def bim(method, key: Key, faces: FaceSet, judge: SamePersonJudge, cfg: KeySecurityConfig, *, device: str = "cpu",
        progress: bool = True) -> Bim:
    """BIM (Kurakin et al.) on anonymized images so that their right-key restoration becomes another identity.

    Objective: pixel L1 between restore_tensor(y + delta, key) and the spoof target's original (the
    recognisers are not differentiable); delta in the L_inf ball of radius eps, image kept in [0, 1],
    then rounded to 8 bits inside the ball and restored through the plain protocol.
    """
    import torch

    targets = spoof_targets(faces.identities)
    tgt = faces.take(targets)
    bs = cfg.batch_size
    y8 = _apply(method, "anonymize", faces.images, key, faces.ids, bs)
    y = _tensor(y8, device)
    x_tgt = _tensor(tgt.images, device)
    kv = _key_vectors([key], device).expand(len(faces), -1)
    rng = np.random.default_rng(cfg.seed)
    levels = []
    bar = tqdm(total=len(cfg.bim_eps) * cfg.bim_steps, desc="BIM spoofing (steps)", unit="step", disable=not progress)
    for eps in cfg.bim_eps:
        alpha = cfg.bim_step_factor * eps / cfg.bim_steps
        adv = y.clone()
        for _ in range(cfg.bim_steps):
            grads = []
            for i in range(0, len(adv), bs):  # images are attacked independently; chunks bound the graph's memory
                a = adv[i : i + bs].detach().requires_grad_(True)
                loss = (method.restore_tensor(a, kv[i : i + bs]) - x_tgt[i : i + bs]).abs().sum()
                if not loss.requires_grad:
                    raise AttackSkipped("restore_tensor's output does not depend on its input (no gradient to follow)")
                grads.append(torch.autograd.grad(loss, a)[0])
            grad = torch.cat(grads)
            adv = torch.minimum(torch.maximum(adv.detach() - alpha * grad.sign(), y - eps), y + eps).clamp(0, 1)
            bar.update()
        # 8 bits, still inside the ball (y is on the 8-bit grid)
        lo, hi = np.ceil(y8.astype(np.float64) - eps * 255 - 1e-9), np.floor(y8.astype(np.float64) + eps * 255 + 1e-9)
        adv8 = np.clip(_uint8(adv).astype(np.float64), lo, hi).astype(np.uint8)
        restored = _apply(method, "restore", adv8, key, faces.ids, bs)
        defended = _apply(method, "restore", _defend(adv8, cfg.defence_sigma, rng), key, faces.ids, bs)
        ok = judge.same_person(judge.embed(restored, tgt.landmarks), tgt.embeddings)
        ok_d = judge.same_person(judge.embed(defended, tgt.landmarks), tgt.embeddings)
        l1 = float(np.abs(restored.astype(np.float64) - tgt.images).mean() / 255)
        levels.append(BimLevel(eps=eps, success_rate=float(ok.mean()), defended_success_rate=float(ok_d.mean()), mean_l1_to_target=l1))
    bar.close()
    clean = _apply(method, "restore", _defend(y8, cfg.defence_sigma, rng), key, faces.ids, bs)
    clean_ok = judge.same_person(judge.embed(clean, faces.landmarks), faces.embeddings)
    return Bim(images=len(faces), steps=cfg.bim_steps, step_factor=cfg.bim_step_factor, defence_sigma=cfg.defence_sigma,
               levels=levels, defended_same_person_rate_restored=float(clean_ok.mean()))


def diversity(method: Method, faces: FaceSet, judge: SamePersonJudge, *, n_keys: int = 100, batch_size: int = 32,
              progress: bool = True) -> Diversity:
    """Anonymize ``faces`` with keys key_from_seed(DIVERSITY_SEED + j), j < n_keys."""
    s1 = np.zeros(faces.images.shape, np.float64)
    s2 = np.zeros(faces.images.shape, np.float64)
    embs = []
    for j in tqdm(range(n_keys), desc="key diversity (keys)", unit="key", disable=not progress):
        out = _apply(method, "anonymize", faces.images, key_from_seed(DIVERSITY_SEED + j), faces.ids, batch_size).astype(np.float64)
        s1 += out
        s2 += out**2
        embs.append(judge.embed(out.astype(np.uint8), faces.landmarks))
    std = np.sqrt(np.maximum(n_keys * s2 - s1**2, 0.0)) / n_keys  # integer sums: exact 0 for identical outputs
    e = np.stack(embs, 1)  # (images, keys, d)
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)
    iu = np.triu_indices(n_keys, 1)
    cos_dist = [float(np.nanmean(np.clip(1 - (ei @ ei.T)[iu], 0, 2))) for ei in e]  # clip: rounding gives -1e-16
    return Diversity(keys=n_keys, images=len(faces), seeds=(DIVERSITY_SEED, DIVERSITY_SEED + n_keys - 1),
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
        for a in ("universal_key", "bim"):
            if a in wanted and not has_tensor_restore(method):
                reasons[a] = f"method {method.info.name!r} has no restore_tensor (differentiable access)"
        if "universal_key" in wanted and len(train_images) == 0:
            reasons["universal_key"] = "no training images for the attacker"
        if "bim" in wanted and spoof_targets(faces.identities[: cfg.bim_images]) is None:
            reasons["bim"] = "needs images of at least two identities for spoof targets"
    res.skipped = {a: reasons[a] for a in wanted if a in reasons}
    for attack in (a for a in wanted if a not in reasons):
        t0 = time.time()
        try:
            _run_one(attack, res, method, key, faces, train_images, judge, cfg, device, progress)
        except AttackSkipped as exc:
            res.skipped[attack] = str(exc)
        res.seconds[attack] = round(time.time() - t0, 2)
    return res


def _run_one(attack, res, method, key, faces, train_images, judge, cfg, device, progress) -> None:
    if attack == "brute_force":
        res.brute_force = brute_force(method, key, faces.take(range(min(cfg.brute_force_images, len(faces)))), judge,
                                      n_keys=cfg.brute_force_keys, batch_size=cfg.batch_size, progress=progress)
    elif attack == "universal_key":
        res.universal_key = universal_key(method, key, train_images[: cfg.universal_train_images],
                                          faces.take(range(min(cfg.universal_heldout_images, len(faces)))), judge, cfg, device=device, progress=progress)
    elif attack == "bim":
        res.bim = bim(method, key, faces.take(range(min(cfg.bim_images, len(faces)))), judge, cfg, device=device, progress=progress)
    else:
        res.diversity = diversity(method, faces.take(range(min(cfg.diversity_images, len(faces)))), judge,
                                  n_keys=cfg.diversity_keys, batch_size=cfg.batch_size, progress=progress)


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
