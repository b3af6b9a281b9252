"""The sampling plan: which samples a corpus holds, a pure function of its settings and seed.

Every corpus takes its plan from here, whatever renders it: ``mema-data build`` (MeMa-mini) and every
backend of ``mema-generate sample``. Three ways to choose the conditions:

- ``balanced`` (MeMa-mini): the eight classes in equal numbers, severities cycling slight, mid, heavy
  within each class. ``identity_plan`` gives the builder's form: identities per split, several photos
  each, and a gallery photo of every val/test identity;
- ``real-guided`` (MeMa, Table 2): (disease, gender, age bin) drawn from the real set's joint counts,
  the severity uniformly from slight/mid/heavy, a public reference face of matching gender and close
  age and an IP-Adapter scale uniformly from [0.2, 0.4];
- ``random`` (the paper's comparison): disease, gender and age bin drawn uniformly.

In ``make_sample_plan`` entry ``i`` depends only on (seed, i) and the settings, so a larger
``num_samples`` extends a plan without changing its first entries, and any shard or resume reproduces it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from mema.corpus.schema import DISEASES, EVAL_SPLITS, GENDERS
from mema.generation.prompts import SAMPLING_SEVERITIES, prompt

if TYPE_CHECKING:
    from mema.generation.presets import CorpusConfig

SAMPLINGS = ("real-guided", "random", "balanced")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhotoPlan(Strict):
    id: str
    split: str
    index: int


class IdentityPlan(Strict):
    """One synthetic identity and its photos: the unit the procedural renderer draws."""

    index: int  # seeds the identity's face with (config seed, index)
    identity: str
    split: str
    disease: str
    severity: str
    photos: list[PhotoPlan]


class SampleSpec(Strict):
    """One sample of ``mema-generate sample``: its own identity, one photo."""

    id: str
    index: int
    disease: str
    severity: str
    age: int
    gender: str
    prompt: str
    seed: int
    adapter_scale: float | None
    reference_face_sha256: str | None
    reference_file: str | None  # name inside the public reference-face folder (never a patient file)

    def as_identity(self) -> IdentityPlan:
        """The sample as a one-photo identity seeded by its own seed (how the procedural backend draws it)."""
        return IdentityPlan(index=self.seed, identity=self.id, split="train", disease=self.disease, severity=self.severity,
                            photos=[PhotoPlan(id=self.id, split="train", index=0)])


def balanced_severity(disease: str, k: int) -> str:
    """Severity of the k-th sample of a class in a balanced plan: every class gets all three levels."""
    return "none" if disease == "Normal" else SAMPLING_SEVERITIES[k % len(SAMPLING_SEVERITIES)]


def identity_plan(cfg: CorpusConfig) -> list[IdentityPlan]:
    """The balanced plan of a procedural corpus (MeMa-mini): class-balanced identities per split."""
    plans: list[IdentityPlan] = []
    index = 0
    for split in ("train", *EVAL_SPLITS):
        for disease in DISEASES:
            for k in range(cfg.identities_per_class.get(split, 0)):
                identity = f"id{index:05d}"
                photos = [PhotoPlan(id=f"{identity}-p{j}", split=split, index=j) for j in range(cfg.photos_per_identity[split])]
                if split in EVAL_SPLITS:
                    n = len(photos)
                    photos += [PhotoPlan(id=f"{identity}-g{j}", split="gallery", index=n + j) for j in range(cfg.gallery_photos)]
                plans.append(IdentityPlan(index=index, identity=identity, split=split, disease=disease,
                                          severity=balanced_severity(disease, k), photos=photos))
                index += 1
    return plans


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _present(stats: dict) -> list[str]:
    return [d for d in DISEASES if stats["disease"].get(d)] or list(DISEASES)


def _draw_attributes(stats: dict, sampling: str, i: int, rng: np.random.Generator) -> tuple[str, str, int]:
    bins = stats["age_bins"]
    if sampling == "real-guided" and stats.get("joint"):
        keys = sorted(stats["joint"])
        p = np.array([stats["joint"][k] for k in keys], float)
        disease, gender, b = keys[int(rng.choice(len(keys), p=p / p.sum()))].split("|")
        b = int(b)
    elif sampling in SAMPLINGS:
        # Classes the real set lacks are left out: a model finetuned on it has never seen them.
        present = _present(stats)
        disease = present[i % len(present)] if sampling == "balanced" else present[int(rng.integers(len(present)))]
        gender = GENDERS[int(rng.integers(2))]
        b = int(rng.integers(len(bins) - 1))
    else:
        raise ValueError(f"unknown sampling {sampling!r}; use one of {', '.join(SAMPLINGS)}")
    lo, hi = max(bins[b], 1), min(bins[b + 1], 91)
    return disease, gender, int(rng.integers(lo, max(hi, lo + 1)))


def make_sample_plan(stats: dict, references: list, *, num_samples: int, seed: int, sampling: str = "real-guided",
                     scale_range: tuple[float, float] | None = (0.2, 0.4)) -> list[SampleSpec]:
    from mema.generation.reference_faces import pick_reference

    plan = []
    for i in range(num_samples):
        rng = np.random.default_rng([seed, i])
        disease, gender, age = _draw_attributes(stats, sampling, i, rng)
        if sampling == "balanced":
            severity = balanced_severity(disease, i // len(_present(stats)))
        else:
            severity = "none" if disease == "Normal" else SAMPLING_SEVERITIES[int(rng.integers(3))]
        ref = pick_reference(references, age, gender, rng) if scale_range is not None else None
        scale = round(float(rng.uniform(*scale_range)), 4) if scale_range is not None else None
        plan.append(SampleSpec(
            id=f"s{i:06d}", index=i, disease=disease, severity=severity, age=age, gender=gender,
            prompt=prompt(disease, severity if disease != "Normal" else "slight"), seed=int(rng.integers(2**31)),
            adapter_scale=scale, reference_face_sha256=ref.sha256 if ref else None, reference_file=ref.file_name if ref else None,
        ))
    return plan
