"""Digital FaceDefender's avatar bank: synthetic faces by sex and age band (5-85 years, 10-year steps).

The paper generated one StyleGAN2 avatar per sex and age; offline there is no StyleGAN, so the default
bank comes from the project's DCGAN face generator (64 px, trained on DigiFace-1M: research-only
licence). Candidates are labelled with the offline age/gender estimator (Cydral, CC0) and must pass a
usability check (a face is found, near-frontal, both eyes open). A seeded search fills every cell to
``per_cell`` avatars: first random latents, then, for cells still short (the DCGAN's faces are mostly
20-50 years old), a hill-climb in latent space from the candidate nearest the cell. Cells the search
cannot fill borrow the nearest filled cell at look-up time (recorded in ``bank.json``).

A user's own folder of generated faces can replace the default bank (``MEMA_FACEDEFENDER_BANK`` or
``FaceDefender(bank_dir=...)``): every image with a detectable face becomes an avatar; sex and age come
from ``labels.csv`` (columns ``file,sex,age``) when present, else from the same estimator. Labels are
cached under ``$MEMA_HOME``; nothing is written into the user's folder.

Building is resumable: every evaluated candidate is checkpointed, and a rerun replays them.

    python -m mema.baselines.facedefender_bank --help
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SEXES = ("female", "male")
AGE_BANDS = tuple(range(5, 86, 10))  # band centres; a band spans centre - 5 .. centre + 4 years
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CHUNK = 64


class BankError(ValueError):
    """An avatar bank that cannot be built or read."""


def age_band(age: float) -> int:
    """The band centre of an age: 0-9 -> 5, 10-19 -> 15, ..., 80 and over -> 85."""
    return int(min(max(10 * int(np.floor(max(age, 0) / 10)) + 5, AGE_BANDS[0]), AGE_BANDS[-1]))


def cell_name(sex: str, band: int) -> str:
    return f"{sex}-{band:02d}"


class BankConfig(BaseModel):
    """How the default (DCGAN) bank is searched. Its hash names the cache folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_cell: int = Field(default=4, ge=1, le=64)
    seed: int = 0
    size: int = Field(default=128, ge=64, le=512)
    random_candidates: int = Field(default=4096, ge=0)
    climb_steps: int = Field(default=40, ge=0)
    climb_children: int = Field(default=16, ge=1)
    climb_sigma: float = Field(default=0.3, gt=0)
    min_opening: float = Field(default=0.15, ge=0)  # both eyes' lid gap over eye width
    max_yaw: float = Field(default=20.0, gt=0)  # degrees

    def fingerprint(self) -> str:
        from mema.weights import weight_record

        blob = json.dumps({"config": self.model_dump(), "generator": weight_record("dcgan_digiface")["sha256"],
                           "estimator": ESTIMATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


ESTIMATOR_VERSION = "offline-cydral-v1"


@dataclass
class Avatar:
    id: str
    sex: str
    band: int
    age: float  # estimated (or labelled) age
    image: np.ndarray  # (H, W, 3) uint8
    points: np.ndarray  # (478, 2) MediaPipe points in the avatar's pixels


@dataclass
class AvatarBank:
    avatars: list[Avatar]
    source: str  # "dcgan:<fingerprint>" or "folder:<fingerprint>": never a path
    record: dict  # what built it (config, counts per cell, candidates evaluated, estimator)

    def __post_init__(self):
        if not self.avatars:
            raise BankError(f"avatar bank {self.source} holds no usable avatar")
        self.cells: dict[tuple[str, int], list[Avatar]] = {}
        for a in self.avatars:
            self.cells.setdefault((a.sex, a.band), []).append(a)

    def lookup(self, sex: str | None, age: float | None) -> tuple[list[Avatar], tuple[str, int]]:
        """Avatars of the sex and age band asked for, or of the nearest filled cell (same sex first)."""
        band = age_band(age) if age is not None else 35
        sexes = [sex] + [s for s in SEXES if s != sex] if sex in SEXES else list(SEXES)
        for s in sexes:
            filled = sorted((abs(b - band), -b, b) for (cs, b) in self.cells if cs == s)
            if filled:
                b = filled[0][2]
                return self.cells[(s, b)], (s, b)
        raise BankError("empty avatar bank")  # unreachable: __post_init__ refuses empty banks

    def default(self) -> Avatar:
        """The avatar shown when a photo has no detectable face: the first of the cell nearest 35 years."""
        return self.lookup(None, 35)[0][0]

    def summary(self) -> dict[str, int]:
        return {cell_name(s, b): len(self.cells.get((s, b), [])) for s in SEXES for b in AGE_BANDS}


def mema_home() -> Path:
    return Path(os.environ.get("MEMA_HOME", Path.home() / ".cache" / "mema")).expanduser()


def _save_npz(path: Path, **arrays) -> None:
    from mema.imageio import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# --- assessing a candidate face ------------------------------------------------------------------------------
class _Assessor:
    """Landmarks, usability and (sex, age) of a face; one MediaPipe and one estimator instance."""

    def __init__(self):
        from mema.baselines.digital_mask_model import Landmarker3D
        from mema.generation.age_gender import OfflineEstimator

        self.det = Landmarker3D()
        self.est = OfflineEstimator()

    def close(self):
        self.det.close()

    def points(self, img: np.ndarray):
        return self.det.detect_xyz(img)

    def usable(self, pts: np.ndarray, min_opening: float, max_yaw: float) -> bool:
        from mema.baselines.digital_mask_model import face_frame, fit_eyelids, head_angles

        try:
            yaw, pitch, _ = head_angles(face_frame(pts))
            opening = min(fit_eyelids(pts[:, :2], s).opening for s in ("left", "right"))
        except (ValueError, np.linalg.LinAlgError):
            return False
        return abs(yaw) <= max_yaw and abs(pitch) <= 2 * max_yaw and opening >= min_opening

    def sex_age(self, img: np.ndarray, pts: np.ndarray) -> tuple[str, int]:
        return estimate_sex_age(self.est, img, pts)


def face_box_crop(img: np.ndarray, pts: np.ndarray, margin: float = 0.12, min_side: int = 64) -> np.ndarray:
    """The landmarks' bounding box with a margin, clipped to the image; small crops upscaled."""
    import cv2

    h, w = img.shape[:2]
    (x0, y0), (x1, y1) = pts[:, :2].min(0), pts[:, :2].max(0)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    x1, y1 = int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my)))
    crop = img[y0:y1, x0:x1] if x1 - x0 >= 2 and y1 - y0 >= 2 else img
    if min(crop.shape[:2]) < min_side:
        f = min_side / min(crop.shape[:2])
        crop = cv2.resize(crop, (int(round(crop.shape[1] * f)), int(round(crop.shape[0] * f))), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(crop)


def estimate_sex_age(est, img: np.ndarray, pts: np.ndarray) -> tuple[str, int]:
    age, sex = est.predict(face_box_crop(img, pts))
    return sex, age


# --- the default bank: a seeded search over the DCGAN's latent space ------------------------------------------
class _Search:
    """Evaluated candidates in order; replayed from the checkpoint on a rerun, computed after it."""

    def __init__(self, cfg: BankConfig, folder: Path, progress: bool):
        from mema.generation.dcgan import LATENT_DIM, FaceGenerator

        self.cfg, self.folder, self.progress = cfg, folder, progress
        self.state = folder / "search_state.npz"
        self.z = np.zeros((0, LATENT_DIM), np.float32)
        self.sex = np.zeros(0, "<U6")
        self.age = np.zeros(0, np.float32)
        self.ok = np.zeros(0, bool)
        if self.state.exists():
            d = np.load(self.state)
            self.z, self.sex, self.age, self.ok = d["z"], d["sex"], d["age"], d["ok"]
        self.cursor = 0
        self._gen_cls = FaceGenerator
        self._gen = self._assessor = None

    def evaluate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sex, age, usable) of each latent; cached results when this batch was evaluated before."""
        n = len(z)
        lo, hi = self.cursor, self.cursor + n
        if hi <= len(self.z):
            if not np.allclose(self.z[lo:hi], z):
                raise BankError(f"the search checkpoint {self.state} does not match this configuration; delete it to restart")
        else:
            if self._gen is None:
                self._gen, self._assessor = self._gen_cls(self.cfg.size), _Assessor()
            imgs = self._gen.generate(z)
            sex, age, ok = [], [], []
            for img in imgs:
                pts = self._assessor.points(img)
                good = pts is not None and self._assessor.usable(pts, self.cfg.min_opening, self.cfg.max_yaw)
                s, a = self._assessor.sex_age(img, pts) if good else ("", -1)
                sex.append(s), age.append(a), ok.append(good)
            self.z = np.concatenate([self.z, z.astype(np.float32)])
            self.sex = np.concatenate([self.sex, np.array(sex, "<U6")])
            self.age = np.concatenate([self.age, np.array(age, np.float32)])
            self.ok = np.concatenate([self.ok, np.array(ok)])
            _save_npz(self.state, z=self.z, sex=self.sex, age=self.age, ok=self.ok)
        self.cursor = hi
        return self.sex[lo:hi], self.age[lo:hi], self.ok[lo:hi]

    def close(self):
        if self._assessor is not None:
            self._assessor.close()


def bank_folder(cfg: BankConfig) -> Path:
    return mema_home() / "facedefender" / f"bank-{cfg.fingerprint()}"


def build_bank(cfg: BankConfig | None = None, progress: bool = True) -> AvatarBank:
    """The default bank for ``cfg`` (cached under ``$MEMA_HOME/facedefender``; built, resumably, if absent)."""
    from tqdm import tqdm

    from mema.generation.dcgan import LATENT_DIM

    cfg = cfg or BankConfig()
    folder = bank_folder(cfg)
    if (folder / "bank.json").exists():
        return load_bank(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"facedefender: building the avatar bank ({len(SEXES) * len(AGE_BANDS)} cells x {cfg.per_cell}) in {folder}", file=sys.stderr)
    search = _Search(cfg, folder, progress)
    members: dict[tuple[str, int], list[int]] = {(s, b): [] for s in SEXES for b in AGE_BANDS}

    def take(sex, age, ok, base, only=None):
        for k in range(len(ok)):
            if not ok[k]:
                continue
            cell = (str(sex[k]), age_band(float(age[k])))
            if (only is None or cell == only) and cell in members and len(members[cell]) < cfg.per_cell:
                members[cell].append(base + k)

    def full():
        return all(len(v) >= cfg.per_cell for v in members.values())

    try:
        n_chunks = -(-cfg.random_candidates // CHUNK)
        with tqdm(total=n_chunks * CHUNK, desc="avatar search (random)", unit="face", disable=not progress) as bar:
            for c in range(n_chunks):
                if full():
                    break
                z = np.random.default_rng([cfg.seed, 0, c]).standard_normal((CHUNK, LATENT_DIM)).astype(np.float32)
                base = search.cursor
                take(*search.evaluate(z), base)
                bar.update(CHUNK)
        short = [cell for cell, v in members.items() if len(v) < cfg.per_cell]
        with tqdm(total=len(short) * cfg.climb_steps, desc="avatar search (climb)", unit="step", disable=not progress) as bar:
            for ci, cell in enumerate(members):
                if cell not in short:
                    continue
                sex, band = cell
                seen = np.flatnonzero(search.ok[: search.cursor] & (search.sex[: search.cursor] == sex))
                if not len(seen):
                    bar.update(cfg.climb_steps)
                    continue
                parent = int(seen[np.argmin(np.abs(search.age[seen] - band))])
                pz, pgap = search.z[parent], abs(float(search.age[parent]) - band)
                for step in range(cfg.climb_steps):
                    if len(members[cell]) >= cfg.per_cell:
                        bar.update(cfg.climb_steps - step)
                        break
                    noise = np.random.default_rng([cfg.seed, 1, ci, step]).standard_normal((cfg.climb_children, LATENT_DIM))
                    z = (pz + cfg.climb_sigma * noise).astype(np.float32)
                    base = search.cursor
                    s, a, ok = search.evaluate(z)
                    take(s, a, ok, base, only=cell)
                    good = np.flatnonzero(ok & (s == sex))
                    if len(good):
                        k = int(good[np.argmin(np.abs(a[good] - band))])
                        if abs(float(a[k]) - band) <= pgap:  # move on ties too, so the walk explores
                            pz, pgap = z[k], abs(float(a[k]) - band)
                    bar.update(1)
    finally:
        search.close()
    chosen = [i for v in members.values() for i in v]
    if not chosen:
        raise BankError("the avatar search found no usable face; raise random_candidates")
    return _finalise(cfg, folder, search, members)


def _finalise(cfg: BankConfig, folder: Path, search: _Search, members) -> AvatarBank:
    from mema.generation.dcgan import FaceGenerator
    from mema.imageio import atomic_write_bytes, write_png
    from mema.weights import weight_record

    gen, assessor = FaceGenerator(cfg.size), _Assessor()
    avatars, entries = [], []
    (folder / "avatars").mkdir(exist_ok=True)
    try:
        for (sex, band), idx in members.items():
            if not idx:
                continue
            imgs = gen.generate(search.z[idx])
            for k, (i, img) in enumerate(zip(idx, imgs)):
                pts = assessor.points(img)
                if pts is None:  # cannot happen for a deterministic generator and detector; guard anyway
                    continue
                aid = f"{cell_name(sex, band)}-{k}"
                write_png(folder / "avatars" / f"{aid}.png", img)
                avatars.append(Avatar(aid, sex, band, float(search.age[i]), img, pts[:, :2].astype(np.float32)))
                entries.append({"id": aid, "sex": sex, "band": band, "age_estimate": float(search.age[i]), "candidate": int(i)})
    finally:
        assessor.close()
    _save_npz(folder / "avatars.npz", ids=np.array([a.id for a in avatars]), points=np.stack([a.points for a in avatars]),
              z=np.stack([search.z[e["candidate"]] for e in entries]))
    counts = {cell_name(s, b): len(v) for (s, b), v in members.items()}
    record = {"source": f"dcgan:{cfg.fingerprint()}", "config": cfg.model_dump(), "generator": weight_record("dcgan_digiface"),
              "estimator": ESTIMATOR_VERSION, "candidates_evaluated": int(search.cursor),
              "usable_candidates": int(search.ok[: search.cursor].sum()), "per_cell": counts,
              "empty_cells": [c for c, n in counts.items() if n == 0], "avatars": entries,
              "licence": "avatars from a DCGAN trained on DigiFace-1M: research-only (non-commercial)"}
    atomic_write_bytes(folder / "bank.json", (json.dumps(record, indent=1) + "\n").encode())
    search.state.unlink(missing_ok=True)
    return AvatarBank(avatars, record["source"], record)


def load_bank(folder: Path) -> AvatarBank:
    from mema.imageio import read_rgb

    record = json.loads((folder / "bank.json").read_text())
    d = np.load(folder / "avatars.npz")
    pts = dict(zip(d["ids"].tolist(), d["points"]))
    avatars = [Avatar(e["id"], e["sex"], int(e["band"]), float(e["age_estimate"]), read_rgb(folder / "avatars" / f"{e['id']}.png")[0], pts[e["id"]])
               for e in record["avatars"]]
    return AvatarBank(avatars, record["source"], record)


# --- a user's own folder of generated faces ------------------------------------------------------------------
def _read_labels(root: Path) -> dict[str, tuple[str, float]]:
    path = root / "labels.csv"
    if not path.exists():
        return {}
    out, problems = {}, []
    with open(path, newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), 2):
            f, sex, age = (row.get("file") or "").strip(), (row.get("sex") or "").strip().lower(), (row.get("age") or "").strip()
            if sex not in SEXES:
                problems.append(f"line {n}: sex {sex!r} is not one of {', '.join(SEXES)}")
                continue
            try:
                out[f] = (sex, float(age))
            except ValueError:
                problems.append(f"line {n}: age {age!r} is not a number")
    if problems:
        raise BankError(f"labels.csv of the avatar folder: {len(problems)} problem(s): " + "; ".join(problems[:5]))
    return out


def folder_fingerprint(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.iterdir()):
        if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or p.name == "labels.csv"):
            h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:12]


def bank_from_folder(root: str | Path, progress: bool = True) -> AvatarBank:
    """Avatars from a folder of face images (labels from labels.csv or the estimator; cached by content)."""
    from tqdm import tqdm

    from mema.imageio import ImageFileError, atomic_write_bytes, read_rgb

    root = Path(root).expanduser()
    if not root.is_dir():
        raise BankError("the avatar folder (MEMA_FACEDEFENDER_BANK / bank_dir) is not a folder")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BankError(f"the avatar folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    fp = folder_fingerprint(root)
    cache = mema_home() / "facedefender" / f"folder-{fp}.json"
    labels = _read_labels(root)
    cached = json.loads(cache.read_text()) if cache.exists() else None
    assessor = None
    avatars, entries, skipped = [], [], {"unreadable": 0, "no_face": 0}
    try:
        for p in tqdm(files, desc="avatar folder", unit="img", disable=not progress or cached is not None):
            try:
                img = read_rgb(p)[0]
            except ImageFileError:
                skipped["unreadable"] += 1
                continue
            if cached is not None:
                e = cached["avatars"].get(p.name)
                if e is None:
                    skipped["no_face"] += 1
                    continue
                avatars.append(Avatar(p.stem, e["sex"], int(e["band"]), float(e["age"]), img, np.array(e["points"], np.float32)))
                continue
            assessor = assessor or _Assessor()
            pts = assessor.points(img)
            if pts is None:
                skipped["no_face"] += 1
                continue
            sex, age = labels[p.name] if p.name in labels else assessor.sex_age(img, pts)
            avatars.append(Avatar(p.stem, sex, age_band(age), float(age), img, pts[:, :2].astype(np.float32)))
            entries.append((p.name, {"sex": sex, "band": age_band(age), "age": float(age), "labelled": p.name in labels,
                                     "points": np.round(pts[:, :2], 3).tolist()}))
    finally:
        if assessor is not None:
            assessor.close()
    if cached is None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, json.dumps({"fingerprint": fp, "skipped": skipped, "avatars": dict(entries)}).encode())
    else:
        skipped = cached["skipped"]
    if not avatars:
        raise BankError(f"no image in the avatar folder has a detectable face ({len(files)} tried)")
    bank = AvatarBank(avatars, f"folder:{fp}", {"source": f"folder:{fp}", "images": len(files), "skipped": skipped,
                                                 "labelled_from": "labels.csv" if labels else "estimator " + ESTIMATOR_VERSION})
    bank.record["per_cell"] = bank.summary()
    return bank


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mema.baselines.facedefender_bank",
                                description="Build (or resume building) Digital FaceDefender's default avatar bank, or label a folder of avatars. "
                                            "The bank is cached under $MEMA_HOME/facedefender.")
    p.add_argument("--folder", type=Path, help="label this folder of generated faces instead of searching the DCGAN")
    for name, field in BankConfig.model_fields.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(field.default), default=field.default, help=f"default {field.default}")
    a = p.parse_args(argv)
    from pydantic import ValidationError

    try:
        if a.folder:
            bank = bank_from_folder(a.folder)
        else:
            bank = build_bank(BankConfig(**{k: getattr(a, k) for k in BankConfig.model_fields}))
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"error: --{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}", file=sys.stderr)
        return 2
    except BankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"source": bank.source, "avatars": len(bank.avatars), "per_cell": bank.summary()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
