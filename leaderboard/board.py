"""The board on disk: entries, the results they came from, verifications, and ``index.json``.

    leaderboard/
      index.json                      every entry ever listed, with its sha256 and status
      entries/<method>__<corpus>-<version>.json            active entries
      entries/superseded/<...>__<sha12>.json               entries a newer result replaced
      results/<same name>.json        the results.json each entry was made from, byte for byte
      verifications/<stem>__<sha12>.json                    re-run records (never edit an entry)

Entries are only ever added or superseded; :mod:`mema.leaderboard.validate` enforces that against
the previous ``index.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import ValidationError

from mema.evaluation.results import RESULTS_SCHEMA_VERSION, Results

from .schema import (
    SUPPORTED_RESULTS_SCHEMAS,
    AdaptiveResult,
    CorpusKey,
    Entry,
    Index,
    IndexItem,
    MethodCard,
    Verification,
    entry_file_name,
)

BOARD_DIR = Path(__file__).resolve().parent
CARD_FIELDS = ("paper", "code_url", "licence", "trained_on", "description")


class BoardError(ValueError):
    """A submission or board file that cannot be used; the message says what is wrong."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def explain(exc: ValidationError) -> str:
    """Pydantic errors as short lines a contributor can act on."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (the schema refuses fields it does not define)"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _dump(model) -> bytes:
    return (model.model_dump_json(indent=2, exclude_none=False) + "\n").encode()


def load_results(path: Path) -> tuple[Results, bytes]:
    """A results.json, with a clear refusal for other schema versions and hand-made files."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError:
        raise BoardError(f"{path}: no such file (give the results.json written by mema-eval)") from None
    except (OSError, ValueError) as exc:
        raise BoardError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or "metrics" not in data:
        raise BoardError(f"{path}: not a mema-eval results.json (no 'metrics')")
    version = data.get("schema_version")
    if version not in SUPPORTED_RESULTS_SCHEMAS:
        raise BoardError(f"{path}: results schema version {version!r} is not supported (this suite reads "
                         f"{', '.join(map(str, SUPPORTED_RESULTS_SCHEMAS))}); re-run mema-eval to produce schema {RESULTS_SCHEMA_VERSION}")
    try:
        return Results.model_validate(data), raw
    except ValidationError as exc:
        raise BoardError(f"{path}: {explain(exc)}") from None


def _config(results: Results) -> dict:
    # Runs from before the config was recorded used the defaults with these tasks and split.
    cfg = dict(results.config or {})
    cfg.setdefault("split", results.corpus.split)
    cfg.setdefault("tasks", list(results.tasks))
    return cfg


def entry_from_results(results: Results, results_raw: bytes, card: dict | None = None,
                       adaptive: list[AdaptiveResult] | None = None, submitted: str | None = None) -> Entry:
    import datetime as dt

    card = {k: v for k, v in (card or {}).items() if v is not None}
    unknown = set(card) - set(CARD_FIELDS)
    if unknown:
        raise BoardError(f"unknown method-card field(s) {sorted(unknown)}; allowed: {', '.join(CARD_FIELDS)}")
    config = _config(results)
    if config.get("limit"):
        raise BoardError(f"this run evaluated only the first {config['limit']} samples (--limit); the board takes full runs only")
    m = results.method
    try:
        method = MethodCard(name=m["name"], version=m["version"], reversible=m.get("reversible", False),
                            key_scheme=m.get("key_scheme", "none"), licence=card.get("licence", m.get("licence", "")),
                            paper=card.get("paper", m.get("paper")), code_url=card.get("code_url"),
                            trained_on=card.get("trained_on", m.get("trained_on")),
                            description=card.get("description", m.get("description", "")), params=m.get("params", {}))
        return Entry(
            method=method,
            corpus=CorpusKey(name=results.corpus.name, version=results.corpus.version, manifest_sha256=results.corpus.manifest_sha256),
            split=results.corpus.split, n_samples=results.corpus.n_samples, tasks=list(results.tasks), config=config,
            suite_version=results.suite_version, results_schema_version=results.schema_version,
            results_sha256=hashlib.sha256(results_raw).hexdigest(), git_hash=results.git_hash,
            submitted=submitted or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            # Undefined figures (no samples, e.g. Dice on a corpus without masks) are not board figures.
            metrics={k: v for k, v in results.metrics.items() if v.n > 0},
            breakdowns=results.breakdowns, evaluators=results.evaluators, adaptive=adaptive or [],
        )
    except ValidationError as exc:
        raise BoardError(f"cannot make an entry: {explain(exc)}") from None
    except KeyError as exc:
        raise BoardError(f"results.json method metadata lacks {exc}") from None


def adaptive_from_results(attacker: str, description: str, results: Results, metric_prefix: str = "identity.") -> AdaptiveResult:
    """Identity figures of a run under a stronger attacker, for an entry's ``adaptive`` list."""
    metrics = {k: v for k, v in results.metrics.items() if k.startswith(metric_prefix) and v.n > 0}
    if not metrics:
        raise BoardError(f"the adaptive results for {attacker!r} carry no identity figures")
    return AdaptiveResult(attacker=attacker, description=description, metrics=metrics)


class Board:
    def __init__(self, root: str | Path = BOARD_DIR):
        self.root = Path(root)
        self.entries_dir = self.root / "entries"
        self.results_dir = self.root / "results"
        self.verifications_dir = self.root / "verifications"
        self.index_path = self.root / "index.json"

    # --- reading ------------------------------------------------------------------------------
    def index(self) -> Index:
        if not self.index_path.exists():
            return Index(entries=[])
        try:
            return Index.model_validate_json(self.index_path.read_bytes())
        except ValidationError as exc:
            raise BoardError(f"{self.index_path}: {explain(exc)}") from None

    def load_entry(self, rel: str) -> Entry:
        path = self.root / rel
        try:
            return Entry.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise BoardError(f"{rel}: listed in index.json but the file is missing") from None
        except ValidationError as exc:
            raise BoardError(f"{rel}: {explain(exc)}") from None

    def active(self) -> list[tuple[IndexItem, Entry]]:
        return [(item, self.load_entry(item.file)) for item in self.index().entries if item.status == "active"]

    def results_file(self, entry_rel: str) -> Path:
        """The results.json an entry (active or superseded) was made from."""
        return self.results_dir / Path(entry_rel).relative_to("entries")

    def verifications(self) -> list[Verification]:
        out = []
        for path in sorted(self.verifications_dir.glob("*.json")):
            try:
                out.append(Verification.model_validate_json(path.read_bytes()))
            except ValidationError as exc:
                raise BoardError(f"{path.relative_to(self.root)}: {explain(exc)}") from None
        return out

    def latest_verification(self, entry_sha256: str) -> Verification | None:
        matches = [v for v in self.verifications() if v.entry_sha256 == entry_sha256]
        return max(matches, key=lambda v: v.date) if matches else None

    # --- writing ------------------------------------------------------------------------------
    def submit(self, entry: Entry, results_raw: bytes) -> str:
        """Add ``entry`` (superseding an active entry for the same method and corpus version)."""
        index = self.index()
        rel = f"entries/{entry.file_name}"
        items = list(index.entries)
        old = next((i for i in items if i.file == rel and i.status == "active"), None)
        if old is not None:
            old_entry = self.load_entry(old.file)
            if old_entry.results_sha256 == entry.results_sha256:
                raise BoardError(f"{rel} already carries this results.json (sha256 {entry.results_sha256[:12]}...)")
            moved = f"entries/superseded/{Path(rel).stem}__{old.sha256[:12]}.json"
            (self.root / moved).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.root / old.file, self.root / moved)
            res_old, res_moved = self.results_file(old.file), self.results_file(moved)
            res_moved.parent.mkdir(parents=True, exist_ok=True)
            os.replace(res_old, res_moved)
            items[items.index(old)] = IndexItem(file=moved, sha256=old.sha256, status="superseded", superseded_by=rel)
            entry = entry.model_copy(update={"supersedes": moved})
        data = _dump(entry)
        _atomic_write(self.results_file(rel), results_raw)
        _atomic_write(self.root / rel, data)
        items.append(IndexItem(file=rel, sha256=hashlib.sha256(data).hexdigest(), status="active"))
        self.write_index(Index(entries=items))
        return rel

    def write_index(self, index: Index) -> None:
        _atomic_write(self.index_path, _dump(index))

    def add_verification(self, v: Verification) -> Path:
        path = self.verifications_dir / f"{Path(v.entry).stem}__{v.entry_sha256[:12]}.json"
        _atomic_write(path, _dump(v))
        return path
