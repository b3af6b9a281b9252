"""One resumable runner for every corpus job (``mema-generate sample`` and ``mema-data build``).

A job is a fixed list of units (a sample, an identity), each with an id, run in a state folder::

    <state>/plan.json               settings, their sha256 and the job's payload (the plan), written once
    <state>/run.lock                flock'ed while a process starts, or checks whether the job is complete
    <state>/done/<unit>.json        one finished unit's record, written atomically after its files
    <state>/shards/<i>-of-<n>.lock  held while shard i of n runs (host, pid)

- **start** (:func:`start_run`): under ``run.lock``, the first process writes ``plan.json``; every other one
  (started at the same moment, a later shard, a resume) compares its settings with it and is refused,
  naming the settings that differ. A folder that holds anything but the runner's own files and has no plan
  is refused before anything is written to it.
- **resume**: units with a ``done`` record are skipped; entry ``i`` of a plan depends only on the
  settings, so a killed run finishes with the result of an uninterrupted one.
- **shards**: ``--shard i/n`` takes the units with index mod n = i under its own lock. A lock held by a
  live process on this host means the shard was given twice (refused); one left by a dead process is
  taken over; one from another host is refused (a shared filesystem cannot tell whether it still runs).
- **finish** (:meth:`Run.finish_once`): under ``run.lock``, whichever process sees every unit done first
  writes the job's outputs, once.

Every image record's provenance comes from :func:`provenance`, whatever made the image.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from mema.corpus.schema import Provenance
from mema.generation.sampling_plan import settings_hash
from mema.generation.stage import StageError
from mema.imageio import atomic_write_bytes

PLAN = "plan.json"
RUN_LOCK = "run.lock"
DONE = "done"
SHARDS = "shards"
# What the runner itself puts in a state folder (temporary files of atomic writes start with '.')
OWN = {PLAN, RUN_LOCK, DONE, SHARDS}

# generator names, one place: what made an image, per backend
GENERATORS = {"procedural": "dcgan-digiface+signs-v2", "dcgan": "dcgan-digiface"}


def provenance(backend: str, *, seed: int, weights: dict[str, str], attempt: int = 0, prompt: str | None = None,
               adapter_scale: float | None = None, reference_face_sha256: str | None = None, route: str = "ip-adapter") -> dict:
    """The provenance of one image (``mema.corpus.schema.Provenance``), for every backend and runner.

    ``backend`` is the renderer: ``procedural`` (MeMa-mini's), ``dcgan`` (bare DCGAN faces; the corpus format
    records it as procedural, generator ``dcgan-digiface``) or ``diffusion`` (``route``: the face injection)."""
    if backend == "diffusion":
        generator = "sd15-lora" + (f"+{route}" if adapter_scale is not None else "")
    elif backend in GENERATORS:
        generator = GENERATORS[backend]
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return Provenance(backend="diffusion" if backend == "diffusion" else "procedural", generator=generator, seed=seed,
                      attempt=attempt, prompt=prompt, adapter_scale=adapter_scale, reference_face_sha256=reference_face_sha256,
                      weights=weights).model_dump(mode="json")


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n); None stays None (the caller picks, e.g. the accelerate process)."""
    if spec is None:
        return None
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise StageError(f"--shard {spec!r}: expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise StageError(f"--shard {spec!r}: need 0 <= i < n")
    return i, n


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ShardLock:
    """``shards/<i>-of-<n>.lock`` created exclusively; see the module docstring for who may take it over."""

    def __init__(self, state: Path, i: int, n: int):
        self.path = Path(state) / SHARDS / f"{i}-of-{n}.lock"
        self.label = f"{i}/{n}"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(self.path.read_text() or "{}")
                except (json.JSONDecodeError, FileNotFoundError):
                    holder = {}
                if holder.get("host") == me["host"] and holder.get("pid") and not _pid_alive(int(holder["pid"])):
                    self.path.unlink(missing_ok=True)  # left by a killed run
                    continue
                raise StageError(f"shard {self.label} is already running (host {holder.get('host')}, pid {holder.get('pid')}); "
                                 f"the same shard was given twice. If that run is dead, delete {self.path}") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            return self
        raise StageError(f"could not take {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


@contextmanager
def _locked(state: Path):
    """Exclusive ``run.lock`` (POSIX advisory lock: processes of this host, and NFS hosts with lockd)."""
    with open(state / RUN_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _foreign(root: Path, state: Path) -> list[str]:
    """Entries of ``root`` the runner did not make (a state folder inside ``root`` counts as the runner's)."""
    if not root.is_dir():
        return []
    own = OWN | ({state.name} if state != root and state.parent == root else set())
    return sorted(p.name for p in root.iterdir() if p.name not in own and not p.name.startswith("."))


class Run:
    """A started job in its state folder."""

    def __init__(self, state: Path, plan: dict):
        self.state = state
        self.plan = plan
        self.done_dir = state / DONE

    def is_done(self, unit: str) -> bool:
        return (self.done_dir / f"{unit}.json").is_file()

    def pending(self, units: Iterable[tuple[int, str]], shard: tuple[int, int] = (0, 1)) -> list[str]:
        """Ids of the (index, id) units of this shard that have no done record."""
        i, n = shard
        return [u for k, u in units if k % n == i and not self.is_done(u)]

    def mark_done(self, unit: str, record: dict) -> None:
        """The unit's record, written atomically after the unit's own files: its presence means finished."""
        atomic_write_bytes(self.done_dir / f"{unit}.json", json.dumps(record).encode())

    def record(self, unit: str) -> dict:
        return json.loads((self.done_dir / f"{unit}.json").read_text())

    def shard_lock(self, i: int, n: int) -> ShardLock:
        return ShardLock(self.state, i, n)

    def finish_once(self, units: list[str], finished: Callable[[], bool], write: Callable[[], None]) -> bool | None:
        """Under ``run.lock``: when every unit is done and ``finished()`` is false, ``write()`` the outputs.
        Returns True when this call wrote them, False when another process already had, None when units remain."""
        with _locked(self.state):
            if any(not self.is_done(u) for u in units):
                return None
            if finished():
                return False
            write()
            return True


def start_run(root: str | Path, settings: dict, payload: Callable[[], dict], *, state: str | Path | None = None,
              what: str = "job") -> Run:
    """Start or resume the job whose outputs go to ``root`` (its state in ``state``, default ``root``).

    ``payload()`` is called only by the process that writes the plan (it may be costly)."""
    root = Path(root)
    state_dir = Path(state) if state is not None else root
    digest = settings_hash(settings)
    plan_path = state_dir / PLAN

    def check(old: dict) -> None:
        if old.get("settings_sha256") != digest:
            prev = old.get("settings", {})
            diff = sorted(k for k in set(prev) | set(settings) if prev.get(k) != settings.get(k))
            raise StageError(f"{root} holds a {what} made with other settings (differ: {', '.join(diff) or 'format'}); "
                             "resume with the same arguments, or choose another output folder")

    if plan_path.is_file():
        check(json.loads(plan_path.read_text()))
    elif _foreign(root, state_dir) or (state_dir != root and _foreign(state_dir, state_dir)):
        raise StageError(f"{root} exists and is not a {what} folder; choose an empty output folder")
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir):
        if plan_path.is_file():  # written by a process that started at the same time
            plan = json.loads(plan_path.read_text())
            check(plan)
        else:
            if _foreign(root, state_dir):
                raise StageError(f"{root} exists and is not a {what} folder; choose an empty output folder")
            plan = {"settings_sha256": digest, "settings": settings, **payload()}
            atomic_write_bytes(plan_path, json.dumps(plan, indent=1).encode())
    (state_dir / DONE).mkdir(exist_ok=True)
    return Run(state_dir, plan)
