"""Anonymize or restore a folder of patient photos with a key, resumably, with an audit line per image.

Inputs are PNG/JPEG files under a folder (recursive; hidden files and folders are passed over) or one
image. Outputs are PNG files with the same relative name under the output folder. An output is skipped
when the audit log already records it for the same action, method, version, key and input hash and
the file on disk still has the logged hash, so an interrupted run resumes where it stopped.

Restoring refuses an image that the audit log records as anonymized under another key id.

Sizes: a method may declare its face-crop size as ``info.params["image_size"]`` (or an ``image_size``
attribute). Non-square images are refused (they are not face crops); when anonymizing, a square image
of another size is resized to the declared size and a note says so; restoring refuses a size mismatch,
since resizing an anonymized image would spoil its restoration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from mema.audit import AuditEntry, AuditLog, now_utc, who
from mema.imageio import ImageFileError, read_rgb, write_png
from mema.keys import Key
from mema.methods import Method, check_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
Action = Literal["anonymize", "restore"]


class ClinicError(ValueError):
    """A user mistake (bad folder, wrong method, name clash); the message is one line."""


NOT_OPENED = "no sealed original for this key (re-encoded, edited, another key or never anonymized): neural restoration written"


@dataclass
class Summary:
    written: int = 0
    already_done: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relative name, reason)
    resized: list[tuple[str, str]] = field(default_factory=list)
    not_opened: list[str] = field(default_factory=list)  # restored without the method's sealed original


def find_images(inp: Path) -> list[tuple[Path, str]]:
    """(path, name relative to ``inp``) of every image, sorted by relative name."""
    if not inp.exists():
        raise ClinicError(f"input {inp} does not exist")
    if inp.is_file():
        if inp.suffix.lower() not in IMAGE_SUFFIXES:
            raise ClinicError(f"input {inp.name} is not a PNG or JPEG image ({', '.join(IMAGE_SUFFIXES)})")
        return [(inp, inp.name)]
    found = []
    for p in inp.rglob("*"):
        rel = p.relative_to(inp)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not any(part.startswith(".") for part in rel.parts):
            found.append((p, rel.as_posix()))
    if not found:
        raise ClinicError(f"no PNG or JPEG images ({', '.join(IMAGE_SUFFIXES)}) under {inp}")
    return sorted(found, key=lambda t: t[1])


def output_name(rel: str) -> str:
    return str(Path(rel).with_suffix(".png").as_posix())


def check_folders(inp: Path, out: Path, items: list[tuple[Path, str]]) -> None:
    if out.exists() and not out.is_dir():
        raise ClinicError(f"output {out} is a file; give a folder")
    if inp.is_dir():
        i, o = inp.resolve(), out.resolve()
        if o == i or i in o.parents:
            raise ClinicError("the output folder must not be the input folder or inside it")
    seen: dict[str, str] = {}
    for _, rel in items:
        name = output_name(rel)
        if name in seen:
            raise ClinicError(f"{seen[name]} and {rel} would both be written as {name}; rename one of them")
        seen[name] = rel


def expected_size(method: Method) -> int | None:
    size = method.info.params.get("image_size", getattr(method, "image_size", None))
    return int(size) if size else None


def _fit(img: np.ndarray, size: int | None, action: Action) -> tuple[np.ndarray, str]:
    """The image at the method's size, and a note when it was resized; ValueError when refused."""
    h, w = img.shape[:2]
    if h != w:
        raise ValueError(f"image is {w}x{h}, not square: give aligned square face crops")
    if size is None or h == size:
        return img, ""
    if action == "restore":
        raise ValueError(f"image is {w}x{h}; the method's anonymized images are {size}x{size} (restore the file as written)")
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS)), f"resized from {w}x{h} to {size}x{size}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Batch:
    """Images waiting for the method, grouped by shape (a method takes one shape per call)."""

    def __init__(self):
        self.groups: dict[tuple, list[tuple[str, str, np.ndarray, str]]] = {}

    def add(self, name: str, in_sha: str, img: np.ndarray, note: str) -> list:
        self.groups.setdefault(img.shape, []).append((name, in_sha, img, note))
        return self.groups[img.shape]

    def pop_all(self) -> list[list]:
        groups, self.groups = list(self.groups.values()), {}
        return groups


def process(action: Action, method: Method, key: Key | None, inp: Path, out: Path, audit: AuditLog, *,
            batch_size: int = 32, progress: bool = True) -> Summary:
    items = find_images(inp)
    check_folders(inp, out, items)
    info = method.info
    key_id = key.key_id if key is not None else None
    size = expected_size(method)
    entries = audit.entries()
    done = {e.output: e for e in entries
            if e.action == action and e.method == info.name and e.method_version == info.version and e.key_id == key_id}
    # Restoring with another key than the one that anonymized an image only makes a wrong face; the
    # log knows which key id produced each anonymized file.
    anonymized_with = {e.output_sha256: e.key_id for e in entries if e.action == "anonymize" and e.method == info.name}
    user, host = who()
    summary = Summary()
    batch = Batch()
    fn = method.anonymize if action == "anonymize" else method.restore

    def flush(group: list) -> None:
        names = [g[0] for g in group]
        images = np.stack([g[2] for g in group])
        # Methods that carry a sealed original (ROFI) say which images it could not be opened for:
        # those got the neural restoration, a different face, and the user must know.
        opened = getattr(method, "opened", None) if action == "restore" else None
        try:
            result = fn(images, key=key)
            closed = {i for i, o in enumerate(opened(images, key)) if o is None} if callable(opened) else set()
        except Exception as exc:  # a method's own failure, reported in one line with the batch it hit
            raise ClinicError(f"{info.name}.{action} failed on {len(group)} image(s) starting with {names[0]}: {type(exc).__name__}: {exc}") from None
        outputs = check_output(info.name, images, result, names, action)
        for i, ((name, in_sha, _, note), img) in enumerate(zip(group, outputs)):
            if i in closed:
                note = "; ".join(n for n in (note, NOT_OPENED) if n)
                summary.not_opened.append(name)
            sha = write_png(out / name, img)  # the file first: a logged hash always has its file
            audit.append(AuditEntry(time=now_utc(), user=user, host=host, action=action, method=info.name, method_version=info.version,
                                    key_id=key_id, input_sha256=in_sha, output_sha256=sha, output=name, note=note))
            summary.written += 1
        bar.update(len(group))

    out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(items), desc=action, unit="img", disable=not progress) as bar:
        for path, rel in items:
            name = output_name(rel)
            try:
                in_sha = _sha256(path)
            except OSError as exc:
                summary.refused.append((rel, f"cannot read ({exc.strerror})"))
                bar.update()
                continue
            prev = done.get(name)
            if prev is not None and prev.input_sha256 == in_sha and (out / name).is_file() and _sha256(out / name) == prev.output_sha256:
                summary.already_done += 1
                bar.update()
                continue
            if action == "restore" and anonymized_with.get(in_sha, key_id) != key_id:
                summary.refused.append((rel, f"the audit log says it was anonymized with key id {anonymized_with[in_sha]}, not {key_id}"))
                bar.update()
                continue
            try:
                rgb, converted = read_rgb(path)
                img, note = _fit(rgb, size, action)
            except ImageFileError as exc:
                summary.refused.append((rel, exc.reason))
                bar.update()
                continue
            except ValueError as exc:
                summary.refused.append((rel, str(exc)))
                bar.update()
                continue
            if note:
                summary.resized.append((rel, note))
            note = "; ".join(n for n in (converted, note) if n)
            group = batch.add(name, in_sha, img, note)
            if len(group) >= batch_size:
                flush(batch.groups.pop(img.shape))
        for group in batch.pop_all():
            flush(group)
    return summary
