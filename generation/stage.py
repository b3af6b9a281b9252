"""Each stage folder is self-contained: ``stage.json`` says what made it (arguments, versions, weight hashes, time)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from mema.imageio import atomic_write_bytes


class StageError(RuntimeError):
    """A clear, user-facing error of a generation stage (bad input, mismatched resume, busy shard)."""


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("mema", "torch", "diffusers", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _jsonable(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def write_stage(folder: Path, stage: str, args: dict, *, weights: dict | None = None, seconds: float | None = None, extra: dict | None = None) -> None:
    record = {
        "stage": stage,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": _jsonable(args),
        "weights_sha256": weights or {},
        "versions": _versions(),
        "wall_seconds": None if seconds is None else round(seconds, 2),
        **(_jsonable(extra) if extra else {}),
    }
    atomic_write_bytes(Path(folder) / "stage.json", (json.dumps(record, indent=2) + "\n").encode())


def read_stage(folder: Path, stage: str) -> dict:
    path = Path(folder) / "stage.json"
    if not path.is_file():
        raise StageError(f"{folder} is not a finished '{stage}' folder (no stage.json); run `mema-generate {stage}` first")
    rec = json.loads(path.read_text())
    if rec.get("stage") != stage:
        raise StageError(f"{folder} holds the output of '{rec.get('stage')}', expected '{stage}'")
    return rec
