"""The clinic's append-only audit log: one JSON line per image anonymized, restored or released.

A line says who (user, host), when (UTC), what (action, method and version, key id) and which file
(sha256 of input and output, the output's name relative to the output folder). It never holds image
content, a key secret or an input path (inputs may sit in folders named after patients).
Lines are appended with O_APPEND in a single write each, so concurrent writers do not interleave.
The log is also what tells which files in an output folder this tool wrote (and may replace).

:meth:`AuditLog.check` accepts only a new file or an existing audit log: never a key, an image, or a file
inside the input, so appending can ruin nothing.
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
    action: Literal["anonymize", "restore", "release"]
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


TORN_PREFIX = '{"time":'  # a line cut short by a kill starts like every entry


class AuditLogError(ValueError):
    """A path that is not usable as an audit log; the message is one line."""


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def check(self, inputs: Path | None = None) -> None:
        """Refuse anything but a new file or an existing audit log, and anything inside ``inputs``."""
        p = self.path
        if inputs is not None:
            i, a = Path(inputs).resolve(), p.resolve()
            if a == i or (Path(inputs).is_dir() and i in a.parents):
                raise AuditLogError(f"the audit log {p} would be written into the input; give a path outside it")
        if not p.exists():
            if p.is_symlink():
                raise AuditLogError(f"the audit log {p} is a broken symlink")
            if not p.parent.is_dir():
                raise AuditLogError(f"cannot create the audit log {p}: its folder does not exist")
            return
        if not p.is_file():
            raise AuditLogError(f"the audit log {p} is not a file")
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise AuditLogError(f"cannot read the audit log {p}: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AuditLogError(f"{p} is not a mema audit log (binary content: an image or a key?); give a new file or an audit log") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                AuditEntry.model_validate_json(line)
            except ValidationError:
                if line.startswith(TORN_PREFIX) and not line.rstrip().endswith("}"):
                    continue  # cut short by a kill; passed over when reading
                raise AuditLogError(f"{p} is not a mema audit log (line {n} is not an audit entry: a key or another file?); "
                                    "give a new file or an existing audit log") from None

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
