"""The sampling plan: which identities, diseases, severities, splits and photos a corpus will hold.

A plan is pure data derived from a config and a seed, so a resumed or sharded build reproduces it
exactly and its hash tells whether a folder was built from the same plan.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from mema.corpus.schema import DISEASES, EVAL_SPLITS

SEVERITY_CYCLE = ("slight", "mid", "heavy")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusConfig(Strict):
    """Size and shape of a procedurally built corpus."""

    name: str = "mema-mini"
    version: str = "1.0"
    seed: int = 0
    image_size: int = 128
    identities_per_class: dict[str, int] = Field(default_factory=lambda: {"train": 250, "val": 25, "test": 50})
    photos_per_identity: dict[str, int] = Field(default_factory=lambda: {"train": 4, "val": 2, "test": 2})
    gallery_photos: int = 1  # per val/test identity: a different photo for face-matching attacks
    latent_sigma: float = 0.2  # per-photo latent perturbation (0.2: distinct photos, same face)

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


PRESETS: dict[str, CorpusConfig] = {
    # ~1,000 training images per class: the size at which every class became learnable in trials.
    "mini": CorpusConfig(),
    # For tests of the pipeline only: far too small to learn from.
    "tiny": CorpusConfig(
        name="mema-tiny",
        identities_per_class={"train": 3, "val": 1, "test": 1},
        photos_per_identity={"train": 2, "val": 2, "test": 2},
    ),
}


class PhotoPlan(Strict):
    id: str
    split: str
    index: int


class IdentityPlan(Strict):
    index: int
    identity: str
    split: str
    disease: str
    severity: str
    photos: list[PhotoPlan]


def make_plan(cfg: CorpusConfig) -> list[IdentityPlan]:
    """Class-balanced identities per split; severities cycle so each class has all three levels."""
    plans: list[IdentityPlan] = []
    index = 0
    for split in ("train", *EVAL_SPLITS):
        for disease in DISEASES:
            for k in range(cfg.identities_per_class.get(split, 0)):
                identity = f"id{index:05d}"
                severity = "none" if disease == "Normal" else SEVERITY_CYCLE[k % 3]
                photos = [PhotoPlan(id=f"{identity}-p{j}", split=split, index=j) for j in range(cfg.photos_per_identity[split])]
                if split in EVAL_SPLITS:
                    n = len(photos)
                    photos += [PhotoPlan(id=f"{identity}-g{j}", split="gallery", index=n + j) for j in range(cfg.gallery_photos)]
                plans.append(IdentityPlan(index=index, identity=identity, split=split, disease=disease, severity=severity, photos=photos))
                index += 1
    return plans
