"""Reading and writing a corpus folder (format in :mod:`mema.corpus.schema`)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from mema.corpus.schema import (
    DISEASES,
    SPLITS,
    DatasetInfo,
    ImageRecord,
    SplitCounts,
    record_line,
)
from mema.imageio import atomic_write_bytes, read_rgb

DATASET_JSON = "dataset.json"
METADATA = "metadata.jsonl"
CARD = "README.md"


class CorpusError(ValueError):
    """A corpus folder that cannot be read; the message names the file (and line)."""


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"]) or "(record)"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (+{len(exc.errors()) - 3} more)" if len(exc.errors()) > 3 else ""
    return "; ".join(parts) + more


def parse_metadata(path: Path) -> tuple[list[ImageRecord], list[str]]:
    """Records of one metadata.jsonl, and one message per bad line (``file:line: reason``)."""
    records, problems = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{lineno}: not valid JSON ({exc.msg})")
                continue
            try:
                records.append(ImageRecord.model_validate(raw))
            except ValidationError as exc:
                problems.append(f"{path}:{lineno}: {_short(exc)}")
    return records, problems


def manifest_sha256(records: list[ImageRecord]) -> str:
    """Hash over every record's canonical line, ordered by (split, id): pins the corpus contents."""
    digest = hashlib.sha256()
    for rec in sorted(records, key=lambda r: (r.split, r.id)):
        digest.update(record_line(rec).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def split_counts(records: list[ImageRecord]) -> dict[str, SplitCounts]:
    by_split: dict[str, list[ImageRecord]] = defaultdict(list)
    for rec in records:
        by_split[rec.split].append(rec)
    out = {}
    for split in SPLITS:
        recs = by_split.get(split, [])
        if not recs:
            continue
        per = Counter(r.disease for r in recs)
        out[split] = SplitCounts(
            images=len(recs),
            identities=len({r.identity for r in recs}),
            per_disease={d: per.get(d, 0) for d in DISEASES},
            masks=sum(r.mask_file is not None for r in recs),
        )
    return out


def hf_card_header(splits: list[str]) -> str:
    """YAML front matter that tells ``datasets.load_dataset(PATH)`` where each split lives."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        lines += [f"  - split: {split}", f"    path: {split}/**"]
    lines.append("---")
    return "\n".join(lines) + "\n"


def write_index(
    root: Path,
    records: list[ImageRecord],
    *,
    name: str,
    version: str,
    description: str,
    licence: str,
    research_only: bool,
    builder: dict,
    card_body: str = "",
) -> DatasetInfo:
    """Write every split's metadata.jsonl, dataset.json and the card header for ``records``."""
    root = Path(root)
    by_split: dict[str, list[ImageRecord]] = defaultdict(list)
    for rec in records:
        by_split[rec.split].append(rec)
    for split, recs in by_split.items():
        body = "".join(record_line(r) + "\n" for r in sorted(recs, key=lambda r: r.id))
        atomic_write_bytes(root / split / METADATA, body.encode())
    sizes = {(r.width, r.height) for r in records}
    info = DatasetInfo(
        name=name,
        version=version,
        description=description,
        licence=licence,
        research_only=research_only,
        classes=list(DISEASES),
        image_size=next(iter(sizes)) if len(sizes) == 1 else None,
        splits=split_counts(records),
        n_images=len(records),
        manifest_sha256=manifest_sha256(records),
        builder=builder,
    )
    atomic_write_bytes(root / DATASET_JSON, (info.model_dump_json(indent=2) + "\n").encode())
    splits = [s for s in SPLITS if s in by_split]
    atomic_write_bytes(root / CARD, (hf_card_header(splits) + card_body).encode())
    return info


@dataclass
class Corpus:
    """A loaded corpus: its info and records. Pixels are read on demand."""

    root: Path
    info: DatasetInfo
    records: list[ImageRecord]

    def split(self, name: str) -> list[ImageRecord]:
        return [r for r in self.records if r.split == name]

    def image_path(self, rec: ImageRecord) -> Path:
        return self.root / rec.split / rec.file_name

    def mask_path(self, rec: ImageRecord) -> Path | None:
        return None if rec.mask_file is None else self.root / rec.mask_file

    def load_image(self, rec: ImageRecord) -> np.ndarray:
        return read_rgb(self.image_path(rec))[0]

    def load_mask(self, rec: ImageRecord) -> np.ndarray | None:
        from PIL import Image

        path = self.mask_path(rec)
        return None if path is None else (np.asarray(Image.open(path)) > 0).astype(np.uint8)

    @property
    def fingerprint(self) -> str:
        """Short id used in caches and results: name, version and manifest hash."""
        return f"{self.info.name}-{self.info.version}-{self.info.manifest_sha256[:12]}"


def load_info(root: Path) -> DatasetInfo:
    path = Path(root) / DATASET_JSON
    if not path.is_file():
        raise CorpusError(f"{path}: missing; is {root} a MeMa corpus folder?")
    try:
        return DatasetInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise CorpusError(f"{path}: {_short(exc)}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorpusError(f"{path}: unreadable ({exc})") from None


def load_corpus(root: str | Path) -> Corpus:
    """Load and schema-check a corpus; raises :class:`CorpusError` naming the first bad file/line.

    Use ``mema-data verify`` (:func:`mema.corpus.verify.verify_corpus`) for a full report.
    """
    root = Path(root)
    info = load_info(root)
    records: list[ImageRecord] = []
    for split in info.splits:
        path = root / split / METADATA
        if not path.is_file():
            raise CorpusError(f"{path}: missing (dataset.json lists split {split!r})")
        recs, problems = parse_metadata(path)
        if problems:
            raise CorpusError(problems[0] + (f" (+{len(problems) - 1} more bad lines)" if len(problems) > 1 else ""))
        for rec in recs:
            if rec.split != split:
                raise CorpusError(f"{path}: record {rec.id} says split {rec.split!r}")
        records.extend(recs)
    return Corpus(root=root, info=info, records=records)
