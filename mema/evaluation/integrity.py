"""Corpus integrity at scoring time: the files are what the manifest says, and the manifest is registered.

Every image and mask is hashed and compared with its record (hashing MeMa-mini's 10,400 PNGs takes about
a second), and the manifest hash is recomputed from the records. A corpus that carries a registered name
and version must match the registered hash; anything else is refused before a figure is produced. A corpus
with an unregistered name is scored under its own hash and marked unofficial.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tqdm import tqdm

from mema.corpus.registry import registered_corpora, registered_hash
from mema.corpus.store import Corpus, manifest_sha256


class IntegrityError(RuntimeError):
    pass


@dataclass(frozen=True)
class Integrity:
    manifest_sha256: str
    registered: bool  # name, version and hash are a registered corpus
    files_checked: int


def check_corpus(corpus: Corpus, *, progress: bool = False) -> Integrity:
    info = corpus.info
    digest = manifest_sha256(corpus.records)
    if digest != info.manifest_sha256:
        raise IntegrityError(f"{corpus.root}: dataset.json says manifest {info.manifest_sha256[:12]}..., its records hash to "
                             f"{digest[:12]}...: the metadata was edited; rebuild the corpus")
    n = 0
    for rec in tqdm(corpus.records, desc="check corpus files", unit="img", disable=not progress, leave=False):
        for path, want in ((corpus.image_path(rec), rec.sha256), (corpus.mask_path(rec), rec.mask_sha256)):
            if path is None:
                continue
            try:
                got = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                raise IntegrityError(f"{path}: unreadable ({exc.strerror})") from None
            if got != want:
                raise IntegrityError(f"{path}: sha256 {got[:12]}... differs from its record ({want[:12]}...): the file was "
                                     "changed after the build; rebuild the corpus")
            n += 1
    expected = registered_hash(info.name, info.version)
    if expected is not None and expected != digest:
        raise IntegrityError(f"corpus {info.name} {info.version} at {corpus.root} has manifest {digest[:12]}..., not the registered "
                             f"{expected[:12]}...; it cannot be scored under that name (rebuild it with `mema-data build`, or "
                             "give your own corpus another name)")
    if expected is None and info.name in registered_corpora():
        raise IntegrityError(f"corpus {info.name} has no registered version {info.version!r}; known: "
                             f"{', '.join(sorted(registered_corpora()[info.name]))}")
    return Integrity(digest, expected is not None, n)
