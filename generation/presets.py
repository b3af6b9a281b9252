"""Named procedural corpora (``mema-data build NAME``): their size, shape and seed.

A config is all a build depends on; its hash (recorded in ``dataset.json``) tells whether a folder
holds this corpus. What samples it holds is decided by :mod:`mema.generation.sampling_plan`.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field


class CorpusConfig(BaseModel):
    """Size and shape of a procedurally built corpus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "mema-mini"
    version: str = "2.0"
    seed: int = 0
    image_size: int = 128
    identities_per_class: dict[str, int] = Field(default_factory=lambda: {"train": 250, "dev": 25, "val": 25, "test": 50})
    photos_per_identity: dict[str, int] = Field(default_factory=lambda: {"train": 4, "dev": 2, "val": 2, "test": 2})
    gallery_photos: int = 1  # per dev/val/test identity: a different photo for face-matching attacks
    latent_sigma: float = 0.2  # per-photo latent perturbation (0.2: distinct photos, same face)

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


PRESETS: dict[str, CorpusConfig] = {
    # ~1,000 training images per class: the size at which every class became learnable in trials.
    # 2.0: identity-bearing periocular traits, a dev split, float64 generator, built from a recorded plan.
    # (1.0, without them, was built by mema 0.1 and is kept on the board as history.)
    "mini": CorpusConfig(),
    # For tests of the pipeline only: far too small to learn from.
    "tiny": CorpusConfig(
        name="mema-tiny",
        identities_per_class={"train": 3, "dev": 1, "val": 1, "test": 1},
        photos_per_identity={"train": 2, "dev": 2, "val": 2, "test": 2},
    ),
}
