"""Procedural backend: DCGAN identities + redrawn eyes with drawn signs (MeMa-mini).

One identity is one unit of work: a base latent (re-drawn until landmarks are found), age and gender
from the offline age/gender model on the clean base face, then each photo = perturbed latent + pose
jitter -> landmarks -> periocular traits, eyes and sign -> photometric jitter. Everything is seeded by
(seed, identity index), so a worker pool or a resume give the same pixels. Across machines the float32
landmark and age/gender models differ in their last digits; a registered corpus is therefore rendered from
a recorded plan (:mod:`mema.generation.recorded`) that answers those models' calls, and the generator runs
in float64, so another machine gives the same pixels too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mema.generation.presets import CorpusConfig
from mema.generation.recorded import (IdentityRecording, RecordingDetector, RecordingEstimator, ReplayDetector,
                                      ReplayEstimator)
from mema.generation.sampling_plan import IdentityPlan
from mema.generation.signs import jitter_plan, plan_sign, render_signs
from mema.corpus.schema import LESION_DISEASES

MAX_ATTEMPTS = 25


@dataclass
class RenderedPhoto:
    id: str
    split: str
    image: np.ndarray
    mask: np.ndarray | None
    seed: int
    attempt: int


@dataclass
class RenderedIdentity:
    plan: IdentityPlan
    age: int
    gender: str
    photos: list[RenderedPhoto]
    embedding: np.ndarray  # SFace embedding of the first photo, for the split-disjointness check
    recording: IdentityRecording | None = None  # what the models answered (recording builds only)


class ProceduralRenderer:
    """Holds the models a worker needs; build one per process."""

    def __init__(self, cfg: CorpusConfig, replay: dict[str, IdentityRecording] | None = None, *, record: bool = False):
        """``replay``: recordings to answer the models from (no MediaPipe, no age/gender network);
        ``record``: run the models live and return what they answered with each identity."""
        from mema.faces.recognisers import SFace
        from mema.generation.dcgan import FaceGenerator

        self.cfg = cfg
        self.faces = FaceGenerator(size=cfg.image_size)
        self.recogniser = SFace() if replay is None or any(r.embedding is None for r in replay.values()) else None
        self.replay, self.record = replay, record
        self._live_landmarks = self._live_age_gender = None
        if replay is None:
            from mema.faces.landmarks import LandmarkDetector
            from mema.generation.age_gender import OfflineEstimator

            self._live_landmarks = LandmarkDetector()
            # Always the offline models, never deepface: MeMa-mini's labels are pinned by its manifest hash.
            self._live_age_gender = OfflineEstimator()

    def close(self) -> None:
        if self._live_landmarks is not None:
            self._live_landmarks.close()

    def render(self, plan: IdentityPlan) -> RenderedIdentity:
        recording = None
        if self.replay is not None:
            if plan.identity not in self.replay:
                from mema.generation.recorded import ReplayError

                raise ReplayError(f"identity {plan.identity} is not in the recorded plan")
            self.landmarks = ReplayDetector(self.replay[plan.identity], plan.identity)
            self.age_gender = ReplayEstimator(self.replay[plan.identity], plan.identity)
        elif self.record:
            recording = IdentityRecording()
            self.landmarks = RecordingDetector(self._live_landmarks, recording)
            self.age_gender = RecordingEstimator(self._live_age_gender, recording)
        else:
            self.landmarks, self.age_gender = self._live_landmarks, self._live_age_gender
        rendered = self._render(plan)
        if self.replay is not None:
            self.landmarks.finish()
        if recording is not None:
            recording.embedding = np.asarray(rendered.embedding, np.float32)
        rendered.recording = recording
        return rendered

    def _pose_jitter(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = img.shape[0]
        angle, scale = rng.uniform(-6, 6), rng.uniform(0.95, 1.05)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-3, 3, size=2)
        return cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)

    @staticmethod
    def _photometric_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = img.astype(np.float32)
        mean = np.float32(img.mean(dtype=np.float64))  # a float64 sum rounds the same on every CPU
        x = (x - mean) * rng.uniform(0.88, 1.12) + mean * rng.uniform(0.88, 1.12)
        x *= rng.uniform(0.95, 1.05, size=3)
        x += rng.normal(0, rng.uniform(0.5, 2.5), size=x.shape)
        return np.clip(np.round(x), 0, 255).astype(np.uint8)

    def _render(self, plan: IdentityPlan) -> RenderedIdentity:
        rng = np.random.default_rng([self.cfg.seed, plan.index])
        for attempt in range(MAX_ATTEMPTS):
            z = rng.standard_normal(100)
            base = self.faces.generate(z[None])[0]
            if self.landmarks.detect(base) is None:
                continue
            try:
                photos = self._photos(plan, z, rng)
            except _NoFace:
                continue
            age, gender = self.age_gender.predict(base)
            first = photos[0]
            lm = self.landmarks.detect(first.image)
            recorded = self.replay[plan.identity].embedding if self.replay is not None else None
            if recorded is not None:
                embedding = recorded
            else:
                embedding = self.recogniser.embed(first.image, lm) if lm is not None else np.full(128, np.nan, np.float32)
            for p in photos:
                p.attempt += attempt
            return RenderedIdentity(plan, age, gender, photos, embedding)
        raise RuntimeError(f"identity {plan.identity}: no usable face in {MAX_ATTEMPTS} latents")

    def _photos(self, plan: IdentityPlan, z: np.ndarray, rng: np.random.Generator) -> list[RenderedPhoto]:
        sign = plan_sign(plan.disease, plan.severity, rng)
        out = []
        for photo in plan.photos:
            seed = int(rng.integers(2**31))
            prng = np.random.default_rng(seed)
            for attempt in range(MAX_ATTEMPTS):
                face = self.faces.generate((z + self.cfg.latent_sigma * prng.standard_normal(100))[None])[0]
                face = self._pose_jitter(face, prng)
                lm = self.landmarks.detect(face)
                if lm is None:
                    continue
                image, mask = render_signs(face, lm, jitter_plan(sign, prng), prng)
                if plan.disease in LESION_DISEASES and mask.sum() < 4:
                    continue  # lesion fell outside the frame: redraw rather than keep an unlabelled sign
                image = self._photometric_jitter(image, prng)
                out.append(RenderedPhoto(photo.id, photo.split, image, mask if plan.disease in LESION_DISEASES else None, seed, attempt))
                break
            else:
                raise _NoFace
        return out


class _NoFace(Exception):
    pass
