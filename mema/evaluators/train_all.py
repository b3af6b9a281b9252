"""Train every reference evaluator of a corpus once (``mema-train evaluators``), in a fixed order and seeded.

Order: original landmarks, disease classifier, nnU-Net segmenter (when the corpus has lesion masks in its
training split), periocular recogniser, reference embeddings of every zoo recogniser, calibrated thresholds.
Each step is cached, so a killed run resumes at the step it was in. The record written beside them
(``training.json``) holds the seeds, the library versions and each step's time.
"""

from __future__ import annotations

import json
import time

from mema.evaluators.reference import ReferenceEvaluators

ZOO = ("sface", "dlib-resnet", "periocular", "periocular-sface")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "numpy", "mediapipe", "onnxruntime", "opencv-contrib-python", "dlib-bin", "nnunetv2", "scikit-learn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def train_evaluators(corpus, *, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    ref = ReferenceEvaluators(corpus, progress=progress, device=device)
    steps = {}

    def step(name, fn):
        t0 = time.time()
        fn()
        steps[name] = round(time.time() - t0, 1)

    step("landmarks", ref.landmarks)
    step("classifier", lambda: ref.classifier(seed=seed))
    step("segmenter", ref.segmenter)
    step("periocular", lambda: ref.periocular(seed=seed))
    for name in ZOO:
        rec = ref.recogniser(name)
        step(f"embeddings_{name}", lambda rec=rec, name=name: ref.embeddings(rec, name))
        step(f"thresholds_{name}", lambda rec=rec, name=name: ref.thresholds(rec, name))
    record = {"corpus": corpus.fingerprint, "seed": seed, "device": device, "libraries": library_versions(), "seconds": steps,
              "bundle": ref.bundle is not None}
    (ref.folder / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    return {"folder": str(ref.folder), **record}
