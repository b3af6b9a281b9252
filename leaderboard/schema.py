"""Leaderboard entries: one JSON file per (method, corpus name and version), typed and range-checked.

Entries are immutable once listed in ``index.json`` (which records each file's sha256); a new result
for the same method and corpus *supersedes* the old entry. Verification records live beside them in
``verifications/`` so verifying never edits an entry.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mema.evaluation.results import Metric

ENTRY_SCHEMA_VERSION = 1
SUPPORTED_RESULTS_SCHEMAS = (1,)

# The figures an entry carries (from results.json); verification compares these.
BOARD_METRICS = (
    "identity.sface.protection_rate",
    "identity.dlib-resnet.protection_rate",
    "identity.sface.id_dis",
    "identity.dlib-resnet.id_dis",
    "identity.sface.same_person_rate",
    "identity.dlib-resnet.same_person_rate",
    "classification.top1",
    "classification.top1_original",
    "classification.kappa_vs_original",
    "classification.auroc_macro",
    "classification.sensitivity",
    "segmentation.dice",
    "segmentation.dice_original",
    "segmentation.dice_ratio",
    "geometry.landmark_error_eye",
    "geometry.gaze_yaw_error",
    "reversibility.psnr",
    "reversibility.ssim",
    "reversibility.sface.same_person_rate_restored",
    "reversibility.sface.wrong_key_protection_rate",
    "reversibility.dlib-resnet.wrong_key_protection_rate",
    # the face-presence gate and the attacker zoo (docs/leaderboard.md, "Figures")
    "privacy.worst_case_protection",
    "privacy.worst_case_protection_face",
    "gate.face_detected_rate",
    "gate.realism",
)
# Per-attacker protections and the learned restorer's figures are named by pattern (any attacker name).
BOARD_PATTERNS = (r"^privacy\.protection\.[a-z0-9][a-z0-9_.-]*$", r"^reversibility\.learned\.")
# The attackers whose protection an entry may list as privacy.protection.<attacker>, in column order;
# other names are shown after these.
ATTACKERS = ("sface", "dlib-resnet", "periocular", "periocular-sface", "adaptive", "deanon", "linkability", "same-key")
# A method whose outputs an independent detector finds a face in at least this often preserves the face.
FACE_PRESERVING_MIN = 0.95
# Suites whose entries predate the CI requirement below (they stay valid and render as history).
LEGACY_SUITES = ("0.1",)
# The figures the board shows; entries of a newer suite must carry a 95% CI on each one they have.
SHOWN_METRICS = (
    "privacy.worst_case_protection", "privacy.worst_case_protection_face", "gate.face_detected_rate", "gate.realism",
    "identity.sface.protection_rate", "identity.dlib-resnet.protection_rate", "classification.top1",
    "classification.kappa_vs_original", "classification.auroc_macro", "segmentation.dice_ratio", "reversibility.psnr",
    "reversibility.sface.wrong_key_protection_rate", "reversibility.dlib-resnet.wrong_key_protection_rate",
)
REQUIRED_METRICS = ("identity.sface.protection_rate", "classification.kappa_vs_original", "classification.top1")

# (pattern, low, high) of allowed values; first match wins.
RANGES = (
    (r"^privacy\.(worst_case_protection(_face)?|protection\.[a-z0-9][a-z0-9_.-]*)$", 0.0, 1.0),
    (r"^gate\.(face_detected_rate|realism)$", 0.0, 1.0),
    (r"\.face_detected_rate$", 0.0, 1.0),
    (r"\.(protection_rate|same_person_rate|rank1_match|tar_at_far|wrong_key_protection_rate|same_person_rate_restored)(_original)?$", 0.0, 1.0),
    (r"\.(top1|top1_original|top1_restored|auroc_macro|sensitivity|specificity|dice|dice_original|jaccard|ssim)$", 0.0, 1.0),
    (r"\.kappa_vs_original$", -1.0, 1.0),
    (r"\.id_dis(_restored)?$", 0.0, 2.0),
    (r"\.psnr$", 0.0, 100.0),
    (r"\.dice_ratio$", 0.0, 10.0),
    (r"\.(landmark_error_\w+|gaze_\w+_error)$", 0.0, 1e6),
    # key-security attacks (mema/evaluation/attacks.py)
    (r"\.success_rate$", 0.0, 1.0),
    (r"\.(pairs_succeeded|keys_succeeded)$", 0.0, 1e9),
    (r"\.pixel_std$", 0.0, 255.0),
    (r"\.identity_cosine_distance$", 0.0, 2.0),
    (r"\.valid$", 0.0, 1.0),
)


def is_board_metric(name: str) -> bool:
    """A figure ``verify`` re-measures and compares."""
    return name in BOARD_METRICS or any(re.search(p, name) for p in BOARD_PATTERNS)


def is_shown(name: str) -> bool:
    """A figure the rendered board shows (and so must carry a CI in a non-legacy entry)."""
    return name in SHOWN_METRICS or any(re.search(p, name) for p in BOARD_PATTERNS)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


@lru_cache(maxsize=1)
def known_corpora() -> dict[str, dict[str, str]]:
    """name -> version -> manifest sha256 of the corpus versions the board accepts (mema/corpus/registered.json)."""
    from mema.corpus.registry import registered_corpora

    return registered_corpora()


def check_metric(name: str, m: Metric) -> None:
    if m.value is None:
        return  # not measured (its note says why): no figure, so no samples needed
    if m.n <= 0:
        raise ValueError(f"metric {name} has n = {m.n}; every figure must come from samples")
    for pattern, lo, hi in RANGES:
        if re.search(pattern, name):
            if not lo <= m.value <= hi:
                raise ValueError(f"metric {name} = {m.value} is outside its range [{lo}, {hi}]")
            if m.ci95 and not (lo - 1e-9 <= m.ci95[0] <= m.value + 1e-9 and m.value - 1e-9 <= m.ci95[1] <= hi + 1e-9):
                raise ValueError(f"metric {name}: CI {m.ci95} does not bracket its value {m.value}")
            return


class MethodCard(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: str
    reversible: bool
    key_scheme: Literal["none", "mema-key-v1", "other"] = "none"
    licence: str
    paper: str | None = None
    code_url: str | None = None
    trained_on: str | None = None
    description: str = ""
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


class CorpusKey(Strict):
    name: str
    version: str
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _known(self) -> "CorpusKey":
        versions = known_corpora().get(self.name)
        if versions is None:
            raise ValueError(f"corpus {self.name!r} is not on the board (known: {', '.join(known_corpora())})")
        if self.version not in versions:
            raise ValueError(f"corpus {self.name} has no version {self.version!r} on the board (known: {', '.join(versions)})")
        if versions[self.version] != self.manifest_sha256:
            raise ValueError(f"corpus hash {self.manifest_sha256[:12]}... does not match {self.name} {self.version} "
                             f"({versions[self.version][:12]}...): the corpus was modified or rebuilt differently")
        return self


class AdaptiveResult(Strict):
    """Figures under a stronger attacker (e.g. a recogniser fine-tuned on the method's outputs)."""

    attacker: str
    description: str
    metrics: dict[str, Metric]


class Entry(Strict):
    entry_schema: Literal[1] = ENTRY_SCHEMA_VERSION
    method: MethodCard
    corpus: CorpusKey
    split: str
    n_samples: int = Field(gt=0)
    tasks: list[str]
    config: dict
    suite_version: str
    results_schema_version: int
    results_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    git_hash: str | None
    submitted: str
    metrics: dict[str, Metric]
    breakdowns: dict[str, dict[str, Metric]] = Field(default_factory=dict)
    evaluators: dict
    adaptive: list[AdaptiveResult] = Field(default_factory=list)
    supersedes: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Entry":
        if self.results_schema_version not in SUPPORTED_RESULTS_SCHEMAS:
            raise ValueError(f"results schema {self.results_schema_version} is not supported ({SUPPORTED_RESULTS_SCHEMAS})")
        missing = [k for k in REQUIRED_METRICS if k not in self.metrics]
        if missing:
            raise ValueError(f"missing required metrics {missing}")
        for name, m in self.metrics.items():
            check_metric(name, m)
        for a in self.adaptive:
            for name, m in a.metrics.items():
                check_metric(name, m)
        for table in self.breakdowns.values():
            for key, m in table.items():
                if m.n < 0 or (m.value is not None and not -1 <= m.value <= 1e6):
                    raise ValueError(f"breakdown {key} has an impossible value")
        if self.method.reversible and "reversibility.psnr" not in self.metrics:
            raise ValueError("a reversible method's entry must carry reversibility figures")
        self._check_worst_case()
        if self.suite_version not in LEGACY_SUITES:
            if self.split != "test":
                raise ValueError(f"entries come from the test split; this run scored {self.split!r}")
            self._check_evaluators()
            # a figure on fewer than 2 samples has no interval: it is shown with its n instead
            bare = sorted(k for k, m in self.metrics.items() if is_shown(k) and m.value is not None and m.ci95 is None and m.n >= 2)
            if bare:
                raise ValueError(f"metric(s) {', '.join(bare)} carry no 95% CI; entries of suite {self.suite_version} "
                                 "need a CI on every figure the board shows")
        return self

    def _check_evaluators(self) -> None:
        """A corpus with shipped evaluators is judged by them only (mema/evaluators/bundle.py)."""
        from mema.evaluators.bundle import shipped_bundle_sha256

        want = shipped_bundle_sha256(self.corpus.name, self.corpus.version)
        if want is None:
            return
        got = (self.evaluators.get("bundle") or {}).get("sha256")
        if got != want:
            raise ValueError(f"scored with other reference evaluators ({(got or 'trained locally')[:12]}...) than the ones "
                             f"registered for {self.corpus.name} {self.corpus.version} ({want[:12]}...); re-run mema-eval "
                             "with the shipped evaluators")

    def _check_worst_case(self) -> None:
        worst = self.metrics.get("privacy.worst_case_protection")
        per = {k.removeprefix("privacy.protection."): m.value for k, m in self.metrics.items()
               if k.startswith("privacy.protection.") and m.value is not None}
        if worst is not None and worst.value is not None and per:
            name = min(per, key=per.get)
            if worst.value > per[name] + 1e-9:
                raise ValueError(f"privacy.worst_case_protection = {worst.value} is above the protection against "
                                 f"{name} ({per[name]}): the worst case is the minimum over the attackers")

    @property
    def file_name(self) -> str:
        return entry_file_name(self.method.name, self.corpus.name, self.corpus.version)

    def worst_case(self, metric: str) -> float | None:
        """The weakest figure for ``metric`` across the standard and adaptive attackers."""
        values = [self.metrics[metric].value] if metric in self.metrics else []
        values += [a.metrics[metric].value for a in self.adaptive if metric in a.metrics]
        values = [v for v in values if v is not None]
        return min(values) if values else None


def entry_file_name(method: str, corpus: str, version: str) -> str:
    return f"{method}__{corpus}-{version}.json"


class Verification(Strict):
    entry: str
    entry_sha256: str
    status: Literal["verified", "mismatch"]
    date: str
    suite_version: str
    git_hash: str | None
    differences: list[str]
    tolerances: dict[str, float]
    measured: dict[str, float | None]  # the re-run's figures for the board metrics


class IndexItem(Strict):
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    status: Literal["active", "superseded"]
    superseded_by: str | None = None


class Index(Strict):
    index_schema: Literal[1] = 1
    entries: list[IndexItem]
