"""Weights that come by a user-given local path (Stable Diffusion 1.5, IP-Adapter, IP-Adapter FaceID, ArcFace).

No package ships them and nothing here downloads. :func:`require_local` checks that a path has one of
the layouts listed under ``local_inputs`` in ``manifest.json`` and raises :class:`WeightsError` naming
the missing files, the flag and where to get them. :func:`hash_files` gives the sha256 of what was loaded,
for provenance (never the path).
"""

from __future__ import annotations

import json
from pathlib import Path

from mema.weights import MANIFEST_PATH, WeightsError, sha256_file

_hash_cache: dict[tuple[str, int, int], str] = {}


def local_inputs() -> dict:
    return {k: v for k, v in json.loads(MANIFEST_PATH.read_text())["local_inputs"].items() if k != "note"}


def require_local(name: str, path: str | Path | None) -> tuple[Path, str]:
    """Return (path, layout) or raise with the list of files ``name`` needs."""
    spec = local_inputs()[name]
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file() and path.suffix == spec.get("single_file_suffix"):
            return path, "single_file"
        for layout, files in spec["layouts"].items():
            if all("<" not in f for f in files) and path.is_dir() and not _missing(path, files):
                return path, layout
    lines = [f"{name} weights are needed ({spec['used_for']}) and were not found"
             + (f" at {path}" if path is not None else f"; pass {spec['flag']} PATH") + "."]
    for layout, files in spec["layouts"].items():
        missing = list(files) if path is None else _missing(Path(path), files)
        lines.append(f"  layout '{layout}': " + ", ".join(files) + (f"  (missing: {', '.join(missing)})" if path is not None and path.is_dir() and missing else ""))
    lines.append(f"  MeMa never downloads them: get them on a machine with network from {spec['upstream']}"
                 f" (licence: {spec['licence']}) and copy them here.")
    raise WeightsError("\n".join(lines))


def _missing(root: Path, files: list[str]) -> list[str]:
    """Entries of ``files`` not present under ``root`` ('a|b' = either)."""
    return [f for f in files if "<" in f or not any((root / alt).is_file() for alt in f.split("|"))]


def hash_files(root: Path, patterns=("*.safetensors", "*.bin", "*.ckpt", "*.pt", "*.pth")) -> dict[str, str]:
    """sha256 of every weight file under ``root`` (relative name -> hash), cached per (path, size, mtime)."""
    root = Path(root)
    files = [root] if root.is_file() else sorted({p for pat in patterns for p in root.rglob(pat)})
    out = {}
    for p in files:
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        if key not in _hash_cache:
            _hash_cache[key] = sha256_file(p)
        out[p.name if root.is_file() else str(p.relative_to(root))] = _hash_cache[key]
    return out


def combined_hash(hashes: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
