"""Keys for reversible methods: a file (mode 0600) with secret bytes and a key id.

The 512-d key vector is derived deterministically from the secret (HKDF-SHA256 -> seed of a normal
sampler). Outputs and logs carry the key id only; no message here ever includes the secret.
A key file that group or others may read is refused, with the ``chmod 600`` fix (ssh's rule for keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KEY_FORMAT = "mema-key-v1"
SECRET_BYTES = 32


class KeyFileError(ValueError):
    """A key file that cannot be used. The message names the file, never its contents."""


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:  # never show the secret
        return f"Key(key_id={self.key_id!r})"


def _key_id(secret: bytes) -> str:
    return hashlib.sha256(b"mema-key-id\x00" + secret).hexdigest()[:16]


def hkdf_sha256(secret: bytes, info: bytes, length: int = 32, salt: bytes = b"mema") -> bytes:
    """RFC 5869 HKDF with SHA-256."""
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def generate_key() -> Key:
    secret = os.urandom(SECRET_BYTES)
    return Key(_key_id(secret), secret)


def key_from_seed(seed: int) -> Key:
    """A reproducible key for tests and attacks (never for real use)."""
    secret = hashlib.sha256(b"mema-test-key\x00" + str(seed).encode()).digest()
    return Key(_key_id(secret), secret)


def write_key(path: str | Path, key: Key) -> None:
    """Create ``path`` with mode 0600; refuses to overwrite an existing file."""
    path = Path(path)
    body = json.dumps({"format": KEY_FORMAT, "key_id": key.key_id, "secret": base64.b64encode(key.secret).decode()})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(body + "\n")


def check_permissions(path: Path) -> None:
    """KeyFileError when group or others may read or write the key file (POSIX only)."""
    if os.name != "posix":
        return
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return  # reading it reports the problem
    if mode & 0o077:
        raise KeyFileError(f"key file {path} is accessible by group or others (mode {mode:04o}); "
                           f"a key must be private: run 'chmod 600 {path}'")


def read_key(path: str | Path) -> Key:
    path = Path(path)
    if path.is_dir():
        raise KeyFileError(f"key file {path} is a folder")
    check_permissions(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"key file {path} is not a MeMa key (unreadable or truncated)") from None
    if data.get("format") != KEY_FORMAT:
        raise KeyFileError(f"key file {path} has format {data.get('format')!r}; expected {KEY_FORMAT!r} (a key of another method?)")
    try:
        secret = base64.b64decode(data["secret"], validate=True)
    except (KeyError, ValueError, TypeError):
        raise KeyFileError(f"key file {path} has no valid secret (truncated or edited?)") from None
    if len(secret) != SECRET_BYTES:
        raise KeyFileError(f"key file {path} holds a secret of the wrong length (truncated or edited?)")
    if data.get("key_id") != _key_id(secret):
        raise KeyFileError(f"key file {path}: key id does not match its secret (edited?)")
    return Key(data["key_id"], secret)


def key_vector(key: Key, dim: int = 512) -> np.ndarray:
    """The method-facing key vector: N(0, 1)^dim seeded by HKDF(secret)."""
    seed = int.from_bytes(hkdf_sha256(key.secret, b"mema-key-vector-v1"), "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
