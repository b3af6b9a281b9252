"""Small inputs for the generation tests: a fake 'real patient set' of offline DCGAN faces and tiny weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REAL_DISEASES = ("Ptosis", "BCC", "Normal", "TAO")


def dcgan_faces(n: int, seed: int, size: int = 128) -> list[np.ndarray]:
    """``n`` DCGAN faces in which the landmark detector finds a face."""
    from mema.faces.landmarks import LandmarkDetector
    from mema.generation.dcgan import FaceGenerator

    gen, rng, out = FaceGenerator(size), np.random.default_rng(seed), []
    with LandmarkDetector() as det:
        while len(out) < n:
            face = gen.generate(rng.standard_normal((1, 100)))[0]
            if det.detect(face) is not None:
                out.append(face)
    return out


def write_real_set(root: Path, faces: list[np.ndarray], extra_rows: list[dict] | None = None) -> Path:
    """A real-set folder: patient_XX.png + metadata.jsonl (two photos per 'patient')."""
    from mema.imageio import write_png

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, face in enumerate(faces):
        name = f"patient_{i:02d}.png"
        write_png(root / name, face)
        rows.append({"file_name": name, "disease": REAL_DISEASES[(i // 2) % 4], "identity": f"patient-{i // 2}",
                     "age": 30 + 5 * i, "gender": ("female", "male")[(i // 2) % 2]})
    rows += extra_rows or []
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def tiny_generation_inputs(root: Path, *, real_faces: int, seed: int, num_faces: int, real_dir: str = "real") -> Path:
    """A real set, tiny random SD 1.5 / IP-Adapter weights (root/w) and public reference faces (root/faces)
    under ``root``, as the generation tests start from; returns the real set's folder."""
    from mema.cli.generate import main

    real = write_real_set(root / real_dir, dcgan_faces(real_faces, seed=seed))
    assert main(["tiny-weights", "--output_dir", str(root / "w")]) == 0
    assert main(["reference-faces", "--output_dir", str(root / "faces"), "--num_faces", str(num_faces), "--size", "64"]) == 0
    return real
