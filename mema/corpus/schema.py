"""Typed records of the corpus format (docs/corpus-format.md). Unknown fields are refused.

On disk a corpus is a folder:

    dataset.json                 DatasetInfo
    README.md                    data card; its YAML header lets ``datasets.load_dataset(PATH)`` find the splits
    <split>/metadata.jsonl       one ImageRecord per line (Hugging Face imagefolder convention)
    <split>/<id>.png             8-bit RGB, lossless
    masks/<split>/<id>.png       optional lesion mask, 8-bit, 0 = background, 1 = lesion
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

# MeMa's eight classes, in the paper's order (seed 003, "Disease Categories").
DISEASES: tuple[str, ...] = ("Normal", "BCC", "Conj", "Uveitis", "Ptosis", "SCC", "Strab", "TAO")
DISEASE_NAMES = {
    "Normal": "clinically normal",
    "BCC": "basal cell carcinoma",
    "Conj": "conjunctivitis",
    "Uveitis": "uveitis",
    "Ptosis": "ptosis",
    "SCC": "squamous cell carcinoma",
    "Strab": "strabismus",
    "TAO": "thyroid associated ophthalmopathy",
}
LESION_DISEASES: tuple[str, ...] = ("BCC", "SCC")
SEVERITIES: tuple[str, ...] = ("none", "slight", "mid", "heavy")
# train: evaluator and method training; dev: method development (tune here); val: calibration of the
# reference evaluators only (scoring on it is refused); test: reported figures; gallery: another photo of
# each dev/val/test identity (the "ID-card photo" face matching compares against).
SPLITS: tuple[str, ...] = ("train", "dev", "val", "test", "gallery")
EVAL_SPLITS: tuple[str, ...] = ("dev", "val", "test")
GENDERS: tuple[str, ...] = ("female", "male")

Disease = Literal["Normal", "BCC", "Conj", "Uveitis", "Ptosis", "SCC", "Strab", "TAO"]
Severity = Literal["none", "slight", "mid", "heavy"]
Split = Literal["train", "dev", "val", "test", "gallery"]
Gender = Literal["female", "male"]

_HEX64 = r"^[0-9a-f]{64}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provenance(Strict):
    """How one image was made. Fields a backend does not use stay null so every line has one shape."""

    backend: Literal["procedural", "diffusion", "imported"]
    generator: str
    seed: int
    attempt: int = 0
    prompt: str | None = None
    adapter_scale: float | None = None
    reference_face_sha256: str | None = Field(default=None, pattern=_HEX64)
    weights: dict[str, str] = Field(default_factory=dict)


class ImageRecord(Strict):
    """One line of ``<split>/metadata.jsonl``."""

    file_name: str  # relative to the split folder (Hugging Face imagefolder convention)
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    sha256: str = Field(pattern=_HEX64)
    split: Split
    identity: str = Field(min_length=1)
    disease: Disease
    severity: Severity
    age: int | None = Field(default=None, ge=0, le=120)
    gender: Gender | None = None
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    mask_file: str | None = None  # relative to the corpus root
    mask_sha256: str | None = Field(default=None, pattern=_HEX64)
    provenance: Provenance

    @field_validator("file_name", "mask_file")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("/") or ".." in v.split("/") or "\\" in v):
            raise ValueError(f"must be a relative path inside the corpus, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ImageRecord":
        if (self.disease == "Normal") != (self.severity == "none"):
            raise ValueError(f"severity {self.severity!r} does not fit disease {self.disease!r}")
        if (self.mask_file is None) != (self.mask_sha256 is None):
            raise ValueError("mask_file and mask_sha256 go together")
        return self


class SplitCounts(Strict):
    images: int = Field(ge=0)
    identities: int = Field(ge=0)
    per_disease: dict[Disease, int]
    masks: int = Field(ge=0)


class DatasetInfo(Strict):
    """``dataset.json``: what the corpus is and a hash that pins its exact contents."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: str
    description: str
    licence: str
    research_only: bool
    classes: list[Disease]
    image_size: tuple[int, int] | None  # (width, height) when every image shares it
    splits: dict[Split, SplitCounts]
    n_images: int = Field(ge=0)
    manifest_sha256: str = Field(pattern=_HEX64)
    builder: dict[str, str | int | float | bool | None]


def record_line(record: ImageRecord) -> str:
    """Canonical JSON line for a record: sorted keys, no spaces, so the manifest hash is stable."""
    import json

    return json.dumps(record.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
