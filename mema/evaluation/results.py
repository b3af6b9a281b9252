"""Typed results of one evaluation run (``results.json``). Unknown fields are refused."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RESULTS_SCHEMA_VERSION = 1
SUITE_VERSION = "0.2"  # 0.2: periocular, adaptive, de-anonymization, linkability and same-key attackers; face gate; dev split


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metric(Strict):
    value: float | None  # None when undefined (e.g. no samples); never NaN in the JSON
    n: int = Field(ge=0)
    ci95: tuple[float, float] | None = None
    unit: str = ""
    higher_is_better: bool | None = None
    note: str = ""


class StageTiming(Strict):
    seconds: float
    images: int
    images_per_s: float | None
    peak_rss_mb: float | None = None


class CorpusRef(Strict):
    name: str
    version: str
    manifest_sha256: str
    split: str
    n_samples: int
    registered: bool = True  # False: scored under its own hash, not a registered corpus (unofficial)


class Results(Strict):
    schema_version: Literal[1] = RESULTS_SCHEMA_VERSION
    suite_version: str = SUITE_VERSION
    git_hash: str | None
    created: str
    corpus: CorpusRef
    method: dict
    key_id: str | None = None
    tasks: list[str]
    config: dict | None = None  # the EvalConfig of the run (split, tasks, recognisers, far, limit, seed)
    evaluators: dict
    seeds: dict[str, int]
    environment: dict[str, str | int | None]
    libraries: dict[str, str] = Field(default_factory=dict)  # versions of every model library (mema.evaluation.environment)
    timings: dict[str, StageTiming]
    metrics: dict[str, Metric]
    breakdowns: dict[str, dict[str, Metric]] = Field(default_factory=dict)
