"""The clinic's append-only audit log: one JSON line per image anonymized or restored.

A line says who (user, host), when (UTC), what (action, method and version, key id) and which file
(sha256 of input and output, the output's name relative to the output folder). It never holds image
content, a key secret or an input path (inputs may sit in folders named after patients).
Lines are appended with O_APPEND in a single write each, so concurrent writers do not interleave.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

AUDIT_FILE = "mema-audit.jsonl"


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: str  # UTC, ISO 8601
    user: str
    host: str
    action: Literal["anonymize", "restore"]
    method: str
    method_version: str
    key_id: str | None
    input_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    output_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    output: str  # relative to the output folder
    note: str = ""


def default_audit_path(out: Path) -> Path:
    """Beside the output folder, not in it, so the folder can be shared without its log."""
    return Path(out).absolute().parent / AUDIT_FILE


def who() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container without passwd entry)
        user = f"uid:{os.getuid()}"
    return user, socket.gethostname()


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def entries(self) -> list[AuditEntry]:
        """Valid lines in order; a torn last line (from a kill) or a foreign line is passed over."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                out.append(AuditEntry.model_validate_json(line))
            except ValidationError:
                continue
        return out

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)

    def check_writable(self) -> None:
        """Create the log if needed; OSError (missing folder, no permission) before any image is touched."""
        os.close(self._open())

    def append(self, entry: AuditEntry) -> None:
        data = (entry.model_dump_json() + "\n").encode()
        fd = self._open()
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # close a torn line so this entry stays readable
            os.write(fd, data)
        finally:
            os.close(fd)
