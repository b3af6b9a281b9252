"""Public reference faces for IP-Adapter injection, indexed by age and gender.

MeMa draws them from FFHQ labelled by an age/gender model. A user who has FFHQ (or any public,
licensed face set) passes its folder; labels come from its ``metadata.jsonl`` (file_name, age, gender)
or are estimated by the offline age/gender model (Cydral, CC0). Without one, ``mema-generate
reference-faces`` writes faces from the offline DCGAN (DigiFace-1M, research-only licence).
Faces are referred to by sha256 in plans and provenance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mema.generation.stage import StageError, write_stage
from mema.imageio import ImageFileError, atomic_write_bytes, read_rgb, write_png

INDEX = "metadata.jsonl"


@dataclass(frozen=True)
class ReferenceFace:
    sha256: str
    age: int
    gender: str
    file_name: str


def add_arguments(p) -> None:
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_faces", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)


def run(args) -> Path:
    """Write DCGAN faces in which a face is found, with estimated age/gender."""
    from mema.faces.landmarks import LandmarkDetector
    from mema.generation.dcgan import FaceGenerator
    from mema.generation.age_gender import age_gender_estimator
    from mema.weights import entry

    out = Path(args.output_dir)
    rng = np.random.default_rng(args.seed)
    gen, est = FaceGenerator(size=args.size), age_gender_estimator()
    rows = []
    with LandmarkDetector() as det:
        tries = 0
        while len(rows) < args.num_faces:
            tries += 1
            if tries > 4 * args.num_faces + 20:
                raise StageError(f"only {len(rows)} of {args.num_faces} DCGAN faces had a detectable face")
            face = gen.generate(rng.standard_normal((1, 100)))[0]
            if det.detect(face) is None:
                continue
            age, gender = est.predict(face)
            sha = hashlib.sha256(face.tobytes()).hexdigest()[:16]
            name = f"dcgan-{args.seed}-{len(rows):05d}.png"
            file_sha = write_png(out / name, face)
            rows.append({"file_name": name, "sha256": file_sha, "age": age, "gender": gender,
                         "source": "dcgan_digiface", "pixel_hash": sha})
    atomic_write_bytes(out / INDEX, "".join(json.dumps(r) + "\n" for r in rows).encode())
    e = entry("dcgan_digiface")
    write_stage(out, "reference-faces", vars(args) | {"func": None}, weights={"dcgan_digiface": e.sha256},
                extra={"licence": e.licence, "n_faces": len(rows), "age_gender": est.name})
    print(f"{len(rows)} reference faces in {out}")
    return out


def load_reference_faces(folder: str | Path) -> list[ReferenceFace]:
    """Index a reference-face folder; estimate missing age/gender labels. Unreadable files are refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError(f"--reference_faces {folder} is not a folder; pass FFHQ (or any licensed public face set),"
                         " or make offline DCGAN faces with `mema-generate reference-faces --output_dir DIR`")
    labels = {}
    if (folder / INDEX).is_file():
        for line in (folder / INDEX).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                labels[r["file_name"]] = r
    files = sorted(labels) if labels else sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise StageError(f"--reference_faces {folder} holds no images")
    est = None
    faces = []
    for name in files:
        path = folder / name
        try:
            rgb, _ = read_rgb(path)
        except ImageFileError as exc:
            raise StageError(f"reference face {name}: {exc.reason}") from None
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        lab = labels.get(name, {})
        age, gender = lab.get("age"), lab.get("gender")
        if age is None or gender is None:
            from mema.generation.age_gender import age_gender_estimator

            est = est or age_gender_estimator()
            est_age, est_gender = est.predict(rgb)
            age = est_age if age is None else age
            gender = est_gender if gender is None else gender
        faces.append(ReferenceFace(sha, int(age), str(gender), name))
    return faces


def pick_reference(faces: list[ReferenceFace], age: int, gender: str, rng: np.random.Generator) -> ReferenceFace:
    """A random face of the same gender among the ~8 closest in age (all faces when no gender match)."""
    same = [f for f in faces if f.gender == gender] or faces
    same = sorted(same, key=lambda f: (abs(f.age - age), f.sha256))[: max(8, len(same) // 20)]
    return same[int(rng.integers(len(same)))]
