"""Frozen reference evaluators of a corpus, trained or computed once and cached by corpus fingerprint.

``$MEMA_HOME/evaluators/<name>-<version>-<manifest12>/`` holds:
    landmarks.npz        MediaPipe points of every original image (NaN rows: no face found)
    classifier.pt/.json  the eye-crop disease classifier and its training record
    embeddings_<rec>.npz recogniser embeddings of the original images
    thresholds.json      same-person thresholds per recogniser, calibrated at fixed FAR on val
    periocular.pt/.json  the periocular recogniser trained on the train split (or dev, for the real-face track)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mema.corpus.schema import DISEASES
from mema.corpus.store import Corpus
from mema.faces.landmarks import FaceLandmarks
from mema.imageio import atomic_write_bytes

N_POINTS = 478
CALIBRATION_FARS = (0.01, 0.001)


def evaluator_home() -> Path:
    home = Path(os.environ.get("MEMA_HOME", Path.home() / ".cache" / "mema")).expanduser()
    return home / "evaluators"


def _save_npz(path: Path, **arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


EVALUATORS_VERSION = "2"  # bump when a reference evaluator's recipe changes: cached evaluators are keyed by it


def cache_key(corpus: Corpus) -> str:
    """Everything the cached evaluators depend on: corpus (name, version, manifest), recipe version, libraries."""
    from importlib.metadata import PackageNotFoundError, version

    libs = []
    for dist in ("torch", "mediapipe", "onnxruntime", "opencv-contrib-python", "dlib-bin", "nnunetv2", "numpy"):
        try:
            libs.append(f"{dist}={version(dist)}")
        except PackageNotFoundError:
            libs.append(f"{dist}=none")
    digest = hashlib.sha256(f"{EVALUATORS_VERSION}|{'|'.join(libs)}".encode()).hexdigest()[:8]
    return f"{corpus.fingerprint}-e{EVALUATORS_VERSION}-{digest}"


class ReferenceEvaluators:
    def __init__(self, corpus: Corpus, *, progress: bool = True, device: str = "cpu"):
        from mema.evaluators.bundle import install

        self.corpus = corpus
        self.folder = evaluator_home() / cache_key(corpus)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bundle = install(self.folder, corpus.info)  # the shipped, frozen evaluators of a registered corpus
        self.progress = progress
        self.device = device
        self._landmarks: dict[str, np.ndarray] | None = None

    # --- landmarks of originals ----------------------------------------------------------------
    def landmarks(self) -> dict[str, np.ndarray]:
        if self._landmarks is None:
            path = self.folder / "landmarks.npz"
            if path.exists():
                data = np.load(path)
                self._landmarks = dict(zip(data["ids"].tolist(), data["points"]))
            else:
                from mema.faces.landmarks import LandmarkDetector

                ids, pts = [], []
                with LandmarkDetector() as det:
                    for rec in tqdm(self.corpus.records, desc="reference landmarks", unit="img", disable=not self.progress):
                        lm = det.detect(self.corpus.load_image(rec))
                        ids.append(rec.id)
                        pts.append(lm.points if lm is not None else np.full((N_POINTS, 2), np.nan, np.float32))
                _save_npz(path, ids=np.array(ids), points=np.stack(pts).astype(np.float32))
                self._landmarks = dict(zip(ids, pts))
        return self._landmarks

    def landmarks_of(self, record_id: str) -> FaceLandmarks | None:
        pts = self.landmarks().get(record_id)
        return None if pts is None or np.isnan(pts).any() else FaceLandmarks(points=pts)

    # --- disease classifier ----------------------------------------------------------------------
    def eye_crops(self, records, images: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Periocular crops in the frame of each original's landmarks; (crops, has_face mask)."""
        from mema.faces.eyecrop import CROP_H, CROP_W, apply_eye_crop, eye_crop_matrix

        crops = np.zeros((len(records), CROP_H, CROP_W, 3), np.uint8)
        ok = np.zeros(len(records), bool)
        for i, rec in enumerate(records):
            lm = self.landmarks_of(rec.id)
            img = images[i] if images is not None else self.corpus.load_image(rec)
            if lm is None:
                continue
            crops[i] = apply_eye_crop(img, eye_crop_matrix(lm))
            ok[i] = True
        return crops, ok

    def classifier(self, *, seed: int = 0):
        from mema.evaluators.classifier import load_classifier, save_classifier, train_classifier

        if (self.folder / "classifier.pt").exists():
            return load_classifier(self.folder, self.device)
        label = {d: i for i, d in enumerate(DISEASES)}
        val = self.corpus.split("val")
        xva, okva = self.eye_crops(val)
        yva = np.array([label[r.disease] for r in val])
        if self.corpus.split("train"):
            train = self.corpus.split("train")
            xtr, oktr = self.eye_crops(train)
            ytr = np.array([label[r.disease] for r in train])
            source = "train split"
        else:  # the real-face track: signs drawn afresh on its dev identities' photos (mema.generation.real_track)
            from mema.faces.eyecrop import apply_eye_crop, eye_crop_matrix
            from mema.generation.real_track import sign_training_set

            images, ytr, _, points = sign_training_set(self.corpus)
            xtr = np.stack([apply_eye_crop(img, eye_crop_matrix(FaceLandmarks(points=p))) for img, p in zip(images, points)])
            oktr = np.ones(len(xtr), bool)
            source = "signs drawn on the dev identities' photos (every class and severity, 3 variants)"
        result = train_classifier(xtr[oktr], ytr[oktr], xva[okva], yva[okva], seed=seed, device=self.device, progress=self.progress)
        save_classifier(result, self.folder, {"corpus": self.corpus.fingerprint, "seed": seed, "trained_on": source,
                                               "n_train": int(oktr.sum()), "n_val": int(okva.sum()),
                                               "train_without_face": int((~oktr).sum())})
        return load_classifier(self.folder, self.device)

    # --- lesion segmenter ------------------------------------------------------------------------
    def segmenter(self):
        """nnU-Net v2 trained on the training split's lesion images (cached); None if the corpus has no masks."""
        from mema.evaluators.segmenter import CACHE_FOLDER, Segmenter, train_segmenter

        folder = self.folder / CACHE_FOLDER
        if not (folder / "segmenter.json").exists():
            if not any(r.mask_file for r in self.corpus.split("train")):
                if not any(r.mask_file for r in self.corpus.records):
                    return None
                # The real-face track has lesions but no train split; they are MeMa-mini's lesion drawings, on
                # which MeMa-mini's segmenter transfers (Dice 0.88-0.90 on the track's dev/val lesions).
                from mema.evaluators.bundle import copy_pretrained_segmenter

                if not copy_pretrained_segmenter(folder):
                    return None
                return Segmenter(folder, device=self.device)
            if self.progress:
                print("training the reference nnU-Net lesion segmenter (once per corpus)")
            # Schedule overridable for quick pipeline tests; the defaults are what results report.
            train_segmenter(self.corpus, folder, device=self.device,
                            epochs=int(os.environ.get("MEMA_NNUNET_EPOCHS", 30)), iterations=int(os.environ.get("MEMA_NNUNET_ITERATIONS", 50)))
        return Segmenter(folder, device=self.device)

    # --- recogniser embeddings and calibrated thresholds -----------------------------------------
    # --- the recogniser zoo ----------------------------------------------------------------------
    def recogniser(self, name: str):
        """A zoo recogniser by name; ``periocular`` is this corpus's own (trained once, or shipped) and
        ``periocular-sface`` SFace on the periocular band over this corpus's average face."""
        if name == "periocular":
            return self.periocular()
        if name == "periocular-sface":
            return self.periocular_sface()
        from mema.faces.recognisers import get_recogniser

        return get_recogniser(name)

    def periocular(self, *, seed: int = 0, epochs: int | None = None):
        from mema.attackers.periocular import PeriocularRecogniser, load_net, state_bytes, train_periocular
        from mema.faces.eyecrop import periocular_crop
        from mema.weights import sha256_file

        path = self.folder / "periocular.pt"
        if not path.exists():
            split = "train" if self.corpus.split("train") else "dev"
            recs = [r for r in self.corpus.split(split)]
            if split == "dev":  # the real-face track: dev identities and their gallery photos
                dev_ids = {r.identity for r in recs}
                recs += [g for g in self.corpus.split("gallery") if g.identity in dev_ids]
            lms = [self.landmarks_of(r.id) for r in recs]
            keep = [i for i, lm in enumerate(lms) if lm is not None]
            if len({recs[i].identity for i in keep}) < 2:
                raise RuntimeError(f"corpus {self.corpus.info.name} has too few identities with landmarks to train a periocular recogniser")
            crops = np.stack([periocular_crop(self.corpus.load_image(recs[i]), lms[i]) for i in keep])
            labels = np.array([recs[i].identity for i in keep])
            if self.progress:
                print(f"training the periocular recogniser on {len(keep)} {split} photos of {len(set(labels))} identities (once per corpus)")
            init, init_from = None, None
            if split == "dev":  # too few people to learn from scratch: start from MeMa-mini's shipped recogniser
                from mema.evaluators.bundle import pretrained_periocular

                init, init_from = pretrained_periocular()
            net, report = train_periocular(crops, labels, seed=seed, device=self.device, progress=self.progress, init=init,
                                           lr=5e-4 if init is not None else 2e-3,
                                           epochs=epochs or int(os.environ.get("MEMA_PERIOCULAR_EPOCHS", 14 if init is None else 30)))
            atomic_write_bytes(path, state_bytes(net))
            meta = {**report.__dict__, "split": split, "corpus": self.corpus.fingerprint, "without_landmarks": len(recs) - len(keep),
                    "initialised_from": init_from}
            atomic_write_bytes(self.folder / "periocular.json", json.dumps(meta, indent=2).encode())
        meta = json.loads((self.folder / "periocular.json").read_text()) if (self.folder / "periocular.json").exists() else {}
        return PeriocularRecogniser(load_net(path), {"name": "periocular", "file": path.name, "sha256": sha256_file(path),
                                                     "licence": "trained here on the corpus", "trained_on": meta.get("split")})

    def periocular_sface(self):
        """The training-free periocular matcher; its average face comes from the train split's (or dev's) originals."""
        from mema.attackers.periocular import PeriocularSFace, mean_face
        from mema.faces.align import align_crop, five_points
        from mema.imageio import read_rgb, write_png

        path = self.folder / "average_face_112.png"
        if not path.exists():
            split = "train" if self.corpus.split("train") else "dev"
            recs = sorted(self.corpus.split(split), key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())[:1000]
            crops = [align_crop(self.corpus.load_image(r), five_points(lm)) for r in recs if (lm := self.landmarks_of(r.id)) is not None]
            if not crops:
                raise RuntimeError(f"corpus {self.corpus.info.name} has no {split} photos with landmarks for an average face")
            write_png(path, mean_face(np.stack(crops)))
        from mema.weights import sha256_file

        return PeriocularSFace(read_rgb(path)[0], sha256_file(path))

    def embeddings(self, recogniser, name: str, splits=("dev", "val", "test", "gallery")) -> dict[str, np.ndarray]:
        path = self.folder / f"embeddings_{name}.npz"
        if path.exists():
            data = np.load(path)
            return dict(zip(data["ids"].tolist(), data["emb"]))
        recs = [r for r in self.corpus.records if r.split in splits]
        ids = [r.id for r in recs]
        lms = [self.landmarks_of(r.id) for r in recs]
        if hasattr(recogniser, "embed_many"):
            emb = recogniser.embed_many([self.corpus.load_image(r) for r in recs], lms).astype(np.float32)
        else:
            embs = []
            for rec, lm in tqdm(list(zip(recs, lms)), desc=f"reference embeddings ({name})", unit="img", disable=not self.progress):
                embs.append(recogniser.embed(self.corpus.load_image(rec), lm) if lm is not None else np.full(128, np.nan))
            emb = np.stack(embs).astype(np.float32)
        _save_npz(path, ids=np.array(ids), emb=emb)
        return dict(zip(ids, emb))

    def on_originals(self, kind: str, judge: dict, records, compute) -> np.ndarray:
        """Per-record values of a judge on the original images (``compute(records) -> (n, ...) array``), cached
        here: they do not depend on the method scored. The cache is keyed by the judge's record (weights hash)."""
        path = self.folder / f"originals_{kind}.npz"
        fp = hashlib.sha256(json.dumps(judge, sort_keys=True, default=str).encode()).hexdigest()
        table: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as data:
                if str(data["judge"]) == fp:
                    table = dict(zip(data["ids"].tolist(), data["values"]))
        missing = [r for r in records if r.id not in table]
        if missing:
            table.update(zip([r.id for r in missing], np.asarray(compute(missing))))
            ids = sorted(table)
            _save_npz(path, judge=np.array(fp), ids=np.array(ids), values=np.stack([table[i] for i in ids]))
        return np.stack([table[r.id] for r in records]) if records else np.zeros((0,))

    def thresholds(self, recogniser, name: str) -> dict:
        """Same-person thresholds at FAR 1% and 0.1%, calibrated on val photos vs the gallery."""
        from mema.metrics.identity import accept_rate, calibrate_threshold, pairwise_l2

        path = self.folder / "thresholds.json"
        table = json.loads(path.read_text()) if path.exists() else {}
        if name in table:
            return table[name]
        emb = self.embeddings(recogniser, name)
        val = [r for r in self.corpus.split("val") if np.isfinite(emb[r.id]).all()]
        gal = [r for r in self.corpus.split("gallery") if np.isfinite(emb[r.id]).all() and r.identity in {v.identity for v in val}]
        d = pairwise_l2(np.stack([emb[r.id] for r in val]), np.stack([emb[r.id] for r in gal]))
        same = np.array([[v.identity == g.identity for g in gal] for v in val])
        genuine, impostor = d[same], d[~same]
        entry = {"calibration": "val photos vs gallery photos of val identities", "n_genuine": int(len(genuine)),
                 "n_impostor": int(len(impostor)), "reference_threshold": recogniser.info.reference_threshold}
        for far in CALIBRATION_FARS:
            t = calibrate_threshold(impostor, far)
            entry[f"far_{far:g}"] = {"threshold": t, "tar": accept_rate(genuine, t), "far": accept_rate(impostor, t)}
        table[name] = entry
        atomic_write_bytes(path, json.dumps(table, indent=2).encode())
        return entry
