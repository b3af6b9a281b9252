"""Anonymize, restore or release a folder of patient photos: nothing lost, nothing overwritten, nothing false.

Inputs are every file under a folder (recursive, following symlinks without loops; hidden files and
folders are ignored and counted) or one file; whatever Pillow cannot read is skipped with its reason.
Outputs are PNG files with the inputs' relative names under the output folder (``NAME.png``).

* **anonymize** (:mod:`mema.photo`): every face found is anonymized at the method's resolution and pasted
  into the full-resolution photo; for a reversible method (or ``seal=True``) the original regions are
  sealed into the file with the key. A photo with no face, or one whose faces could not all be
  anonymized, is skipped whole.
* **restore** writes ``NAME.png`` only when the file's seal opens with the key: the original, bit-exact.
  Anything else (a wrong key, an edited or re-encoded file, a photo never anonymized) is skipped with the
  reason; with ``allow_virtual`` the method's learned restore is written as ``NAME.virtual.png``.
* **release** strips the seal, so the image carries no recoverable original (for sharing outside).

Never overwritten: a file the audit log does not show this tool wrote (unless ``overwrite``), an input,
or anything when the output is the input folder or inside it. A restore goes only into a folder holding
nothing but this tool's outputs. One run at a time per output folder (a lock file, ``.mema.lock``).
Resumable: an output the audit log records for the same action, key and input, and whose file still has
the logged hash, is not redone; the same inputs give the same bytes, so a killed run resumed is identical.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np
from tqdm import tqdm

from mema.audit import AuditEntry, AuditLog, now_utc, who
from mema.imageio import TMP_PREFIX, ImageFileError, atomic_write_bytes, png_bytes, read_rgb
from mema.keys import Key
from mema.methods import Method, MethodError, check_output

Action = Literal["anonymize", "restore", "release"]
LOCK_NAME = ".mema.lock"
VIRTUAL_SUFFIX = ".virtual.png"
PNG_LEVEL = 3  # a 24 MP photo: 4 s and 12.8 MB, against 10.5 s and 11.0 MB at zlib level 6
STOP_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO}


class ClinicError(ValueError):
    """A user mistake or a run that cannot go on (bad folder, lock held, disk full); one line."""


@dataclass
class Summary:
    written: int = 0
    already_done: int = 0
    faces: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative name, reason): nothing written for it
    notes: list[tuple[str, str]] = field(default_factory=list)  # conversions made on read (EXIF, CMYK, 16-bit)
    virtual: list[str] = field(default_factory=list)  # NAME.virtual.png written (--allow-virtual)
    lossy: list[str] = field(default_factory=list)  # restored from a JPEG copy (a low-bit seal), not bit-exact
    hidden: int = 0  # hidden files and folders ignored


@dataclass(frozen=True)
class Item:
    path: Path
    rel: str
    problem: str | None = None  # why it cannot be read, found while listing (broken symlink, loop)


# --- inputs ------------------------------------------------------------------------------------------

def find_inputs(inp: Path) -> tuple[list[Item], int]:
    """Every file under ``inp`` (or ``inp`` itself), sorted by relative name, and the number of hidden
    entries ignored. Symlinks are followed; a folder reached twice (a loop) is listed as a problem."""
    if not inp.exists() and not inp.is_symlink():
        raise ClinicError(f"input {inp} does not exist")
    if not inp.exists():
        raise ClinicError(f"input {inp} is a broken symlink")
    if not inp.is_dir():
        if not inp.is_file():
            raise ClinicError(f"input {inp} is not a file or folder")
        return [Item(inp, inp.name)], 0
    items: list[Item] = []
    hidden = 0
    seen = set()

    def walk(folder: Path, prefix: str) -> None:
        nonlocal hidden
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            items.append(Item(folder, prefix.rstrip("/") or ".", "a symlinked folder already visited (a loop, or a second link to it); not followed"))
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            items.append(Item(folder, prefix.rstrip("/") or ".", f"folder cannot be read ({exc.strerror})"))
            return
        for e in entries:
            rel = prefix + e.name
            if e.name.startswith("."):
                hidden += 1
                continue
            path = Path(e.path)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
                is_file = e.is_file(follow_symlinks=True)
            except OSError as exc:
                items.append(Item(path, rel, f"cannot be read ({exc.strerror})"))
                continue
            if e.is_symlink() and not path.exists():
                try:
                    os.stat(path)
                    problem = "a broken symlink"
                except OSError as exc:
                    problem = "a symlink loop" if exc.errno == errno.ELOOP else "a broken symlink"
                items.append(Item(path, rel, problem))
            elif is_dir:
                walk(path, rel + "/")
            elif is_file:
                items.append(Item(path, rel))
            else:
                items.append(Item(path, rel, "not a regular file (device, pipe or socket)"))

    walk(inp, "")
    return sorted(items, key=lambda it: it.rel), hidden


def output_name(rel: str, virtual: bool = False) -> str:
    stem = Path(rel).with_suffix("").as_posix() if Path(rel).suffix else rel
    return stem + (VIRTUAL_SUFFIX if virtual else ".png")


def check_paths(inp: Path, out: Path) -> None:
    """The output folder must be new or a folder, and neither the input nor inside it (nor, for one
    photo, the folder the photo is in: anonymized copies never sit beside originals)."""
    if out.exists() and not out.is_dir():
        raise ClinicError(f"output {out} is a file; give a folder")
    i, o = inp.resolve(), out.resolve()
    if inp.is_dir():
        if o == i or i in o.parents:
            raise ClinicError("the output folder must not be the input folder or inside it")
    elif o == i.parent:
        raise ClinicError(f"the output folder is the folder that holds {inp.name}; give another folder")


def clashes(items: list[Item]) -> dict[str, str]:
    """rel -> reason for inputs that would be written under the same output name."""
    by_name: dict[str, list[str]] = {}
    for it in items:
        if it.problem is None:
            by_name.setdefault(output_name(it.rel).casefold(), []).append(it.rel)
    out = {}
    for rels in by_name.values():
        if len(rels) > 1:
            for rel in rels:
                out[rel] = f"{', '.join(rels)} would all be written as {output_name(rels[0])}; rename all but one"
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


# --- the output folder ---------------------------------------------------------------------------------

class OutputLock:
    """An exclusive lock on the output folder (flock on ``.mema.lock``; released by the kernel on a kill)."""

    def __init__(self, out: Path):
        self.path = out / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ClinicError(f"another mema run is writing to {self.path.parent} (lock {LOCK_NAME}); wait for it to finish") from None
            try:  # the file may have been removed by the run that held it: lock the one on disk
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)
        raise ClinicError(f"cannot lock {self.path.parent}: the lock file keeps changing")

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def remove_stale_temporaries(out: Path) -> None:
    """Temporary files a killed run left (only ours: hidden, with our prefix). Call under the lock."""
    for root, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(TMP_PREFIX) and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(root, name))
                except OSError:
                    pass


def foreign_files(out: Path, owned: set[tuple[str, str]], ignore: set[Path]) -> list[str]:
    """Non-hidden files under ``out`` that the audit log does not show this tool wrote."""
    found = []
    for root, dirs, files in os.walk(out):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.resolve() in ignore:
                continue
            rel = path.relative_to(out).as_posix()
            if path.is_symlink() or (rel, _file_sha256(path)) not in owned:
                found.append(rel)
    return found


# --- one run -------------------------------------------------------------------------------------------

class Run:
    """Shared machinery of the three actions: inputs, ownership, writing, the audit log, the summary."""

    def __init__(self, action: Action, inp: Path, out: Path, audit: AuditLog, *, key: Key | None, overwrite: bool, progress: bool):
        self.action, self.inp, self.out, self.audit, self.key = action, Path(inp), Path(out), audit, key
        self.overwrite, self.progress = overwrite, progress
        self.summary = Summary()
        self.user, self.host = who()
        self.key_id = key.key_id if key is not None else None

    def start(self) -> list[Item]:
        items, self.summary.hidden = find_inputs(self.inp)
        if not items:
            hidden = f" ({self.summary.hidden} hidden file(s) ignored)" if self.summary.hidden else ""
            raise ClinicError(f"no files under {self.inp}{hidden}")
        check_paths(self.inp, self.out)
        self.audit.check(inputs=self.inp)
        self.input_files = {it.path.resolve() for it in items if it.problem is None}
        self.input_dir = self.inp.resolve() if self.inp.is_dir() else None
        self.clash = clashes(items)
        return items

    def prepare_output(self) -> None:
        entries = self.audit.entries()
        self.entries = entries
        self.owned = {(e.output, e.output_sha256) for e in entries}
        remove_stale_temporaries(self.out)

    def skip(self, rel: str, reason: str) -> None:
        self.summary.skipped.append((rel, reason))

    def already_done(self, name: str, in_sha: str, method: tuple[str, str] | None = None) -> bool:
        for e in reversed(self.entries):
            if e.output == name and e.action == self.action:
                if e.input_sha256 != in_sha or e.key_id != self.key_id or (method and (e.method, e.method_version) != method):
                    return False
                return _file_sha256(self.out / name) == e.output_sha256
        return False

    def may_write(self, name: str, data: bytes) -> str | None:
        """None when ``data`` may be written as ``name``, else why not."""
        target = self.out / name
        real = target.resolve()
        if real in self.input_files or (self.input_dir is not None and (real == self.input_dir or self.input_dir in real.parents)):
            return f"{name} would overwrite an input (the output path leads into the input)"
        if target.is_symlink():
            return f"{name} in the output folder is a symlink; not replaced"
        if target.exists():
            if not target.is_file():
                return f"{name} in the output folder is not a file; not replaced"
            sha = _file_sha256(target)
            if sha == _sha256(data) or self.overwrite or (name, sha) in self.owned:
                return None
            return f"{name} exists in the output folder and the audit log does not show mema wrote it; move it away or use --overwrite"
        return None

    def write(self, rel: str, name: str, data: bytes, in_sha: str, method: tuple[str, str], note: str) -> bool:
        why = self.may_write(name, data)
        if why is not None:
            self.skip(rel, why)
            return False
        try:
            atomic_write_bytes(self.out / name, data)  # the file first: a logged hash always has its file
        except OSError as exc:
            if exc.errno in STOP_ERRNOS:
                raise ClinicError(f"stopped: cannot write {name} in {self.out}: {exc.strerror}; {self.summary.written} image(s) "
                                  "written before; fix it and run the same command again to resume") from None
            raise
        sha = _sha256(data)
        entry = AuditEntry(time=now_utc(), user=self.user, host=self.host, action=self.action, method=method[0], method_version=method[1],
                           key_id=self.key_id if self.action != "release" else None, input_sha256=in_sha, output_sha256=sha,
                           output=name, note=note)
        try:
            self.audit.append(entry)
        except OSError as exc:
            raise ClinicError(f"stopped: cannot append to the audit log {self.audit.path}: {exc.strerror}; "
                              f"{name} was written; run the same command again to resume") from None
        self.owned.add((name, sha))
        self.summary.written += 1
        return True

    def read(self, item: Item) -> tuple[bytes, str] | None:
        if item.problem:
            self.skip(item.rel, item.problem)
            return None
        if item.rel in self.clash:
            self.skip(item.rel, self.clash[item.rel])
            return None
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            self.skip(item.rel, f"cannot be read ({exc.strerror})")
            return None
        return data, _sha256(data)

    def decode(self, item: Item, data: bytes) -> np.ndarray | None:
        try:
            rgb, note = read_rgb(item.path, data)
        except ImageFileError as exc:
            self.skip(item.rel, exc.reason)
            return None
        if note:
            self.summary.notes.append((item.rel, note))
        return rgb


def _lock_and_run(run: Run, body: Callable[[], None], total: int, unit: str) -> Summary:
    try:
        run.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClinicError(f"cannot create the output folder {run.out}: {exc.strerror}") from None
    try:
        lock = OutputLock(run.out)
        lock.__enter__()
    except OSError as exc:
        raise ClinicError(f"cannot write to the output folder {run.out}: {exc.strerror}") from None
    try:
        run.prepare_output()
        with tqdm(total=total, desc=run.action, unit=unit, disable=not run.progress) as run.bar:
            body()
    finally:
        lock.__exit__()
    return run.summary


# --- anonymize -----------------------------------------------------------------------------------------

def crop_method(method: Method):
    """What anonymizes the crops: a sealed method's wrapped method (the photo gets its own seal)."""
    from mema.sealing import Sealed

    return method.inner if isinstance(method, Sealed) else method


def crop_size(method: Method) -> int:
    from mema.photo import DEFAULT_SIZE

    size = method.info.params.get("image_size", getattr(method, "image_size", None))
    return int(size) if size else DEFAULT_SIZE


def anonymize(method: Method, key: Key | None, inp: Path, out: Path, audit: AuditLog, *, seal: bool | None = None,
              detector=None, batch_size: int = 32, overwrite: bool = False, progress: bool = True) -> Summary:
    """Anonymize every photo under ``inp`` into ``out``. ``seal`` defaults to the method being reversible.

    The method is called once per photo (``batch_size`` faces at most per call): a photo's output then
    does not depend on which other photos a run holds, so a resumed run writes the same bytes."""
    from mema.photo import CHUNK, PhotoError, container_chunk, crop, find_regions, paste

    info = method.info
    seal = info.reversible if seal is None else seal
    if seal and key is None:
        raise ClinicError("sealing needs a key: give --key FILE (make one with 'mema keygen FILE')")
    run = Run("anonymize", inp, out, audit, key=key if seal else None, overwrite=overwrite, progress=progress)
    items = run.start()
    inner = crop_method(method)
    size = crop_size(method)
    ident = (info.name, info.version)
    if detector is None:
        from mema.faces.detection import FaceDetector

        detector = FaceDetector()

    def faces_of(item: Item, crops: np.ndarray) -> np.ndarray | None:
        outs = []
        for i in range(0, len(crops), batch_size):
            part = crops[i : i + batch_size]
            ids = [f"{item.rel}#face{i + j + 1}" for j in range(len(part))]
            try:
                outs.append(check_output(inner.info.name, part, inner.anonymize(part, key=key), ids))
            except Exception as exc:  # noqa: BLE001  (the method's own failure, reported per photo)
                msg = str(exc).splitlines()[0] if str(exc) else ""
                run.skip(item.rel, f"not all {len(crops)} face(s) could be anonymized, so nothing was written "
                                   f"({inner.info.name}: {type(exc).__name__}: {msg})")
                return None
        return np.concatenate(outs)

    def one(item: Item) -> None:
        got = run.read(item)
        if got is None:
            return
        data, in_sha = got
        name = output_name(item.rel)
        if run.already_done(name, in_sha, ident):
            run.summary.already_done += 1
            return
        rgb = run.decode(item, data)
        if rgb is None:
            return
        try:
            regions = find_regions(rgb, detector, size)
        except PhotoError as exc:
            run.skip(item.rel, str(exc))
            return
        if not regions:
            run.skip(item.rel, "no face found, so nothing was written (is it a photo of a face? a face smaller than "
                               "1/64 of the photo's long side can be missed)")
            return
        try:
            crops = np.stack([crop(rgb, r, size) for r in regions])
        except (cv2.error, ValueError, MemoryError) as exc:
            run.skip(item.rel, f"its {len(regions)} face(s) could not be cut out, so nothing was written ({type(exc).__name__})")
            return
        faces = faces_of(item, crops)
        if faces is None:
            return
        try:
            pixels = paste(rgb, faces, regions)
        except (cv2.error, ValueError, MemoryError) as exc:
            run.skip(item.rel, f"its {len(regions)} face(s) could not be pasted back, so nothing was written ({type(exc).__name__})")
            return
        chunk = container_chunk(pixels, rgb, regions, method=ident, key=key, seal=seal)
        note = next((n for r, n in run.summary.notes if r == item.rel), "")
        what = f"{len(regions)} face(s)" + ("; sealed" if seal else "")
        if run.write(item.rel, name, png_bytes(pixels, [(CHUNK, chunk)], PNG_LEVEL), in_sha, ident, "; ".join(n for n in (what, note) if n)):
            run.summary.faces += len(regions)

    def body() -> None:
        for item in items:
            one(item)
            run.bar.update()

    return _lock_and_run(run, body, len(items), "photo")


# --- restore -------------------------------------------------------------------------------------------

def _virtual(method: Method, key: Key, rgb: np.ndarray, container, detector) -> np.ndarray:
    """The method's learned restore of each face pasted back: a key-dependent face, not the patient."""
    from mema.photo import crop, find_regions, paste
    from mema.sealing import learned_restore

    restore = learned_restore(method)
    if restore is None:
        raise MethodError(f"method {method.info.name!r} has no learned restore, so no virtual face was written")
    size = crop_size(method)
    regions = container.regions() if container is not None and container.regions() else None
    if regions is None:
        if detector is None:
            from mema.faces.detection import FaceDetector

            detector = FaceDetector()
        regions = find_regions(rgb, detector, size)
    if not regions:
        raise MethodError("no face found for a virtual restore")
    crops = np.stack([crop(rgb, r, size) for r in regions])
    faces = check_output(method.info.name, crops, restore(crops, key=key), [str(i) for i in range(len(crops))], "restore")
    return paste(rgb, faces, regions)


def restore(key: Key, inp: Path, out: Path, audit: AuditLog, *, method_factory: Callable[[], Method] | None = None,
            allow_virtual: bool = False, detector=None, overwrite: bool = False, progress: bool = True) -> Summary:
    """Restore every photo under ``inp`` whose seal ``key`` opens; skip (and list) every other one."""
    from mema.photo import PhotoError, open_container, read_container
    from mema.sealing import open_seal

    run = Run("restore", inp, out, audit, key=key, overwrite=overwrite, progress=progress)
    items = run.start()
    method_cache: list = []

    def method() -> Method:
        if not method_cache:
            if method_factory is None:
                raise MethodError("no method given for a virtual restore")
            method_cache.append(method_factory())
        return method_cache[0]

    def one(item: Item) -> None:
        got = run.read(item)
        if got is None:
            return
        data, in_sha = got
        name = output_name(item.rel)
        if run.already_done(name, in_sha):
            run.summary.already_done += 1
            return
        rgb = run.decode(item, data)
        if rgb is None:
            return
        container = None
        try:
            container = read_container(data)
            if container is not None:
                original = open_container(rgb, container, key)
                ident, note = container.method, "sealed original, bit-exact"
            else:
                opened = open_seal(rgb, key)
                if not opened.ok:
                    raise PhotoError("carries no mema seal (never anonymized by mema with a seal, or re-encoded, converted or "
                                     "its metadata stripped since)" if opened.status == "no-seal" else opened.reason(key))
                original = opened.original
                ident = ("low-bit-seal", "MRS2" if opened.key_id else "MRS1")
                note = "sealed original in the low bits, bit-exact" if opened.lossless else "sealed JPEG copy in the low bits (not bit-exact)"
        except PhotoError as exc:
            reason = f"not restored, nothing written: {exc}"
            vname = output_name(item.rel, virtual=True)
            if allow_virtual and run.already_done(vname, in_sha):
                run.skip(item.rel, f"not restored: {exc}; its virtual face is in {vname} (written before, not the patient)")
                return
            if allow_virtual:
                try:
                    m = method()
                    fake = _virtual(m, key, rgb, container, detector)
                except MethodError as why:
                    run.skip(item.rel, f"{reason}; {why}")
                    return
                if run.write(item.rel, vname, png_bytes(fake, compress_level=PNG_LEVEL), in_sha, (m.info.name, m.info.version),
                             "virtual face: the method's learned restore, not the patient"):
                    run.summary.virtual.append(vname)
                    reason = f"not restored: {exc}; its virtual face was written as {vname} (not the patient)"
            run.skip(item.rel, reason)
            return
        if run.write(item.rel, name, png_bytes(original, compress_level=PNG_LEVEL), in_sha, ident, note) and "JPEG" in note:
            run.summary.lossy.append(item.rel)

    def body() -> None:
        if not overwrite:
            ignore = {run.audit.path.resolve(), (run.out / LOCK_NAME).resolve()}
            foreign = foreign_files(run.out, run.owned, ignore)
            if foreign:
                raise ClinicError(f"the output folder {run.out} holds {len(foreign)} file(s) mema did not write (first: {foreign[0]}); "
                                  "restore into a new or empty folder (or use --overwrite)")
        for item in items:
            one(item)
            run.bar.update()

    return _lock_and_run(run, body, len(items), "photo")


# --- release -------------------------------------------------------------------------------------------

def release(inp: Path, out: Path, audit: AuditLog, *, overwrite: bool = False, progress: bool = True) -> Summary:
    """Copies of anonymized images with every seal removed: nothing in them restores the original."""
    from mema.photo import CHUNK, PhotoError, read_container, released_chunk
    from mema.sealing import scrub, seal_magic

    run = Run("release", inp, out, audit, key=None, overwrite=overwrite, progress=progress)
    items = run.start()

    def one(item: Item) -> None:
        got = run.read(item)
        if got is None:
            return
        data, in_sha = got
        name = output_name(item.rel)
        if run.already_done(name, in_sha):
            run.summary.already_done += 1
            return
        rgb = run.decode(item, data)
        if rgb is None:
            return
        try:
            container = read_container(data)
        except PhotoError as exc:
            run.skip(item.rel, f"{exc}; cannot tell that it was anonymized, so it was not released")
            return
        low = seal_magic(rgb) is not None
        if container is None and not low:
            run.skip(item.rel, "not an image mema anonymized (no mema chunk or seal); only anonymized images are released")
            return
        if container is not None and container.state == "anonymized" and not container.header.faces:
            run.skip(item.rel, "its mema chunk records no anonymized face; not released")
            return
        pixels = scrub(rgb)
        chunk = released_chunk(container, faces=None if container else 1)
        notes = [n for n, on in (("seal removed", container is not None and container.sealed), ("low-bit seal scrubbed", low)) if on]
        ident = container.method if container is not None and container.method[0] else ("low-bit-seal", "MRS")
        run.write(item.rel, name, png_bytes(pixels, [(CHUNK, chunk)], PNG_LEVEL), in_sha, ident, "; ".join(notes) or "no seal to remove")

    def body() -> None:
        for item in items:
            one(item)
            run.bar.update()

    return _lock_and_run(run, body, len(items), "image")
