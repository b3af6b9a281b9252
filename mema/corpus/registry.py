"""The registered corpus versions: name -> version -> manifest sha256 (``registered.json``).

A registered version is one that every machine rebuilds to exactly these bytes (the presets replay a
recorded plan; :mod:`mema.generation.recorded`). The leaderboard accepts only these, and scoring checks
a corpus against them before it reports a figure under a registered name. Retired versions stay listed
under ``"retired"`` with the reason, so their board entries remain readable as history.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

REGISTRY_FILE = Path(__file__).parent / "registered.json"


@lru_cache(maxsize=1)
def _load() -> dict:
    return json.loads(REGISTRY_FILE.read_text())


def registered_corpora(include_retired: bool = True) -> dict[str, dict[str, str]]:
    """name -> version -> manifest sha256 (retired versions included unless asked otherwise)."""
    data = _load()
    out: dict[str, dict[str, str]] = {}
    for name, versions in data["current"].items():
        out.setdefault(name, {}).update(versions)
    if include_retired:
        for name, versions in data.get("retired", {}).items():
            for version, item in versions.items():
                out.setdefault(name, {})[version] = item["manifest_sha256"]
    return out


def retired_reason(name: str, version: str) -> str | None:
    item = _load().get("retired", {}).get(name, {}).get(version)
    return None if item is None else item["reason"]


def registered_hash(name: str, version: str) -> str | None:
    return registered_corpora().get(name, {}).get(version)
