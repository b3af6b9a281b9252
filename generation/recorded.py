"""A recorded plan: the landmark and age/gender readings a procedural build used, so other machines rebuild it exactly.

MediaPipe and the age/gender network run in float32 with CPU-specific kernels, so the landmark points (and
rarely a detection or an age) of the same face differ in the last digits between machines, and the eyes are
drawn a hair elsewhere. A registered corpus is therefore built from a plan recorded once (``mema-data build
NAME --record FILE``) and shipped with the package: every call the renderer makes to the landmark detector
and the age/gender estimator is answered from the recording, in call order. Each answer is bound to an
8-byte hash of the image it was computed on, so a machine whose face generator produced other pixels stops
with an error naming the identity instead of building a different corpus under the registered name.

Only the points the renderer reads are kept (:data:`RECORDED_POINTS`: eye corners, cheeks, and the five
alignment points); the other points of a replayed face are NaN (a renderer that read one would draw NaN
geometry; tests/test_build.py checks that a replay gives the registered bytes).

Scope: bit-exact on x86-64 CPUs with AVX2 (tested across oneDNN, ATen and numpy kernel levels). OpenCV's
cubic warp, used for the pose jitter, gives other bytes without AVX2 (ARM, old x86); there the replay stops
with an error on the first such face rather than building another corpus under the registered name.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mema.faces.landmarks import CHEEKS, EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, MOUTH_CORNERS, NOSE_TIP, FaceLandmarks

RECORDED_POINTS: tuple[int, ...] = (*EYE_IMAGE_LEFT["corners"], *EYE_IMAGE_RIGHT["corners"], *CHEEKS,
                                    EYE_IMAGE_LEFT["iris"], EYE_IMAGE_RIGHT["iris"], NOSE_TIP, *MOUTH_CORNERS)
N_POINTS = 478
GENDER_CODES = ("female", "male")
RECORDED_DIR = Path(__file__).parent / "recorded"


class ReplayError(RuntimeError):
    """The recording does not fit this build (other settings, other pixels, or too few calls)."""


def image_hash(img: np.ndarray) -> int:
    """Signed 64-bit hash of an image's bytes and shape (fits numpy int64 storage)."""
    digest = hashlib.sha256(np.ascontiguousarray(img).tobytes() + repr(img.shape).encode()).digest()
    return int.from_bytes(digest[:8], "little", signed=True)


@dataclass
class IdentityRecording:
    """Everything one identity's render asked of the models, in order."""

    calls: list[tuple[int, np.ndarray | None]] = field(default_factory=list)  # (image hash, points or None)
    age_gender: tuple[int, int, str] | None = None  # (image hash, age, gender)
    # SFace embedding of the identity's first photo, for the data card's split-disjointness figure only
    # (never part of the manifest); replay takes it from here instead of running the recogniser.
    embedding: np.ndarray | None = None

    def to_json(self) -> dict:
        return {"calls": [[h, None if p is None else p.tolist()] for h, p in self.calls],
                "age_gender": list(self.age_gender) if self.age_gender else None,
                "embedding": None if self.embedding is None else [float(x) for x in self.embedding]}

    @classmethod
    def from_json(cls, raw: dict) -> "IdentityRecording":
        calls = [(int(h), None if p is None else np.asarray(p, np.float32)) for h, p in raw["calls"]]
        ag = raw.get("age_gender")
        emb = raw.get("embedding")
        return cls(calls, (int(ag[0]), int(ag[1]), str(ag[2])) if ag else None,
                   None if emb is None else np.asarray(emb, np.float32))


class RecordingDetector:
    """Live landmarks, with each answer written down."""

    def __init__(self, live, recording: IdentityRecording):
        self.live, self.recording = live, recording

    def detect(self, img: np.ndarray) -> FaceLandmarks | None:
        lm = self.live.detect(img)
        pts = None if lm is None else lm.points[list(RECORDED_POINTS)].astype(np.float32)
        self.recording.calls.append((image_hash(img), pts))
        return lm


class ReplayDetector:
    """Answers from a recording, checking that each question is the recorded one."""

    def __init__(self, recording: IdentityRecording, identity: str):
        self.recording, self.identity, self.next = recording, identity, 0

    def detect(self, img: np.ndarray) -> FaceLandmarks | None:
        if self.next >= len(self.recording.calls):
            raise ReplayError(f"identity {self.identity}: the build asked for more landmarks than were recorded")
        h, pts = self.recording.calls[self.next]
        self.next += 1
        if h != image_hash(img):
            raise ReplayError(f"identity {self.identity}: face {self.next} differs from the recorded one: this machine renders "
                              "other pixels (the generator or the pose warp), so the registered corpus cannot be rebuilt here "
                              "bit-exactly; `mema-data build --live` builds an unregistered copy")
        if pts is None:
            return None
        full = np.full((N_POINTS, 2), np.nan, np.float32)
        full[list(RECORDED_POINTS)] = pts
        return FaceLandmarks(points=full)

    def finish(self) -> None:
        if self.next != len(self.recording.calls):
            raise ReplayError(f"identity {self.identity}: {len(self.recording.calls) - self.next} recorded landmark calls were not used")


class RecordingEstimator:
    def __init__(self, live, recording: IdentityRecording):
        self.live, self.recording = live, recording

    def predict(self, img: np.ndarray) -> tuple[int, str]:
        age, gender = self.live.predict(img)
        self.recording.age_gender = (image_hash(img), int(age), str(gender))
        return age, gender


class ReplayEstimator:
    def __init__(self, recording: IdentityRecording, identity: str):
        self.recording, self.identity = recording, identity

    def predict(self, img: np.ndarray) -> tuple[int, str]:
        if self.recording.age_gender is None:
            raise ReplayError(f"identity {self.identity}: no recorded age/gender")
        h, age, gender = self.recording.age_gender
        if h != image_hash(img):
            raise ReplayError(f"identity {self.identity}: its base face differs from the recorded one (other generator pixels)")
        return age, gender


@dataclass
class RecordedPlan:
    """Recordings of every identity of one corpus config, by identity name."""

    config_sha256: str
    identities: dict[str, IdentityRecording]

    def save(self, path: Path) -> None:
        names = sorted(self.identities)
        call_owner, call_hash, call_found, call_points = [], [], [], []
        ag_hash, ages, genders, embeddings = [], [], [], []
        for k, name in enumerate(names):
            rec = self.identities[name]
            for h, pts in rec.calls:
                call_owner.append(k)
                call_hash.append(h)
                call_found.append(pts is not None)
                call_points.append(pts if pts is not None else np.zeros((len(RECORDED_POINTS), 2), np.float32))
            h, age, gender = rec.age_gender if rec.age_gender else (0, -1, "female")
            ag_hash.append(h)
            ages.append(age)
            genders.append(GENDER_CODES.index(gender))
            embeddings.append(rec.embedding if rec.embedding is not None else np.full(128, np.nan, np.float32))
        buf = io.BytesIO()
        np.savez_compressed(
            buf, config_sha256=np.array(self.config_sha256), names=np.array(names), points_index=np.array(RECORDED_POINTS),
            call_owner=np.array(call_owner, np.int32), call_hash=np.array(call_hash, np.int64), call_found=np.array(call_found),
            call_points=np.array(call_points, np.float32).reshape(-1, len(RECORDED_POINTS), 2),
            age_hash=np.array(ag_hash, np.int64), age=np.array(ages, np.int16), gender=np.array(genders, np.uint8),
            embedding=np.array(embeddings, np.float32).reshape(-1, 128))
        from mema.imageio import atomic_write_bytes

        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "RecordedPlan":
        with np.load(path) as data:
            if tuple(data["points_index"].tolist()) != RECORDED_POINTS:
                raise ReplayError(f"{path}: recorded with other landmark points")
            names = data["names"].tolist()
            recs = {name: IdentityRecording() for name in names}
            for owner, h, found, pts in zip(data["call_owner"], data["call_hash"], data["call_found"], data["call_points"]):
                recs[names[owner]].calls.append((int(h), pts.copy() if found else None))
            for name, h, age, g in zip(names, data["age_hash"], data["age"], data["gender"]):
                if age >= 0:
                    recs[name].age_gender = (int(h), int(age), GENDER_CODES[int(g)])
            if "embedding" in data.files:
                for name, emb in zip(names, data["embedding"]):
                    recs[name].embedding = emb.copy()
            return cls(str(data["config_sha256"]), recs)


def shipped_plan_path(name: str, version: str) -> Path:
    return RECORDED_DIR / f"{name}-{version}.npz"
