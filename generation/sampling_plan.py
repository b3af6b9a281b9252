"""The sampling plan of a generated corpus: one entry per sample, a pure function of its settings.

Real-guided sampling (MeMa, Table 2) draws each sample's (disease, gender, age bin) from the real set's
joint counts, the severity uniformly from slight/mid/heavy, a public reference face of matching gender and
close age, and an IP-Adapter scale uniformly from [0.2, 0.4]. Random sampling (the paper's comparison)
draws disease, gender and age bin uniformly. Entry ``i`` depends only on (seed, i) and the settings, so a
larger ``num_samples`` extends a plan without changing its first entries, and any shard or resume
reproduces it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from pydantic import BaseModel, ConfigDict

from mema.corpus.schema import DISEASES, GENDERS
from mema.generation.prompts import SAMPLING_SEVERITIES, prompt


class SampleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _draw_attributes(stats: dict, sampling: str, rng: np.random.Generator) -> tuple[str, str, int]:
    bins = stats["age_bins"]
    if sampling == "real-guided" and stats.get("joint"):
        keys = sorted(stats["joint"])
        p = np.array([stats["joint"][k] for k in keys], float)
        disease, gender, b = keys[int(rng.choice(len(keys), p=p / p.sum()))].split("|")
        b = int(b)
    elif sampling in ("real-guided", "random"):
        present = [d for d in DISEASES if stats["disease"].get(d)] or list(DISEASES)
        disease = present[int(rng.integers(len(present)))]
        gender = GENDERS[int(rng.integers(2))]
        b = int(rng.integers(len(bins) - 1))
    else:
        raise ValueError(f"unknown sampling {sampling!r}; use real-guided or random")
    lo, hi = max(bins[b], 1), min(bins[b + 1], 91)
    return disease, gender, int(rng.integers(lo, max(hi, lo + 1)))


def make_sample_plan(stats: dict, references: list, *, num_samples: int, seed: int, sampling: str = "real-guided",
                     scale_range: tuple[float, float] | None = (0.2, 0.4)) -> list[SampleSpec]:
    from mema.generation.reference_faces import pick_reference

    plan = []
    for i in range(num_samples):
        rng = np.random.default_rng([seed, i])
        disease, gender, age = _draw_attributes(stats, sampling, rng)
        severity = "none" if disease == "Normal" else SAMPLING_SEVERITIES[int(rng.integers(3))]
        ref = pick_reference(references, age, gender, rng) if scale_range is not None else None
        scale = round(float(rng.uniform(*scale_range)), 4) if scale_range is not None else None
        plan.append(SampleSpec(
            id=f"s{i:06d}", index=i, disease=disease, severity=severity, age=age, gender=gender,
            prompt=prompt(disease, severity if disease != "Normal" else "slight"), seed=int(rng.integers(2**31)),
            adapter_scale=scale, reference_face_sha256=ref.sha256 if ref else None, reference_file=ref.file_name if ref else None,
        ))
    return plan
