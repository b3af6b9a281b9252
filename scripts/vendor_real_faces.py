"""Maintainer script: align the real-face photos to 128 px crops and vendor them into the package.

    .venv/bin/python scripts/vendor_real_faces.py /path/to/real-faces

Reads every photo listed in the folder's SOURCES.md (EXIF orientation applied), finds the face with the
MediaPipe landmarker, aligns it to MeMa-mini's frame (mema.faces.align.align_to_mema), runs the landmarker
again on the crop, and writes into ``mema/corpus/vendored/real-faces/``: one PNG per photo, ``sources.json``
(identity, origin, licence, original file and estimated age/gender of each crop) and ``landmarks.npz`` (the 478 points of each
crop, so the track's build needs no landmark model and gives the same bytes on every machine).
A photo whose face cannot be found is listed in ``sources.json`` under ``skipped`` with the reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mema.faces.align import align_to_mema, five_points
from mema.faces.landmarks import LandmarkDetector
from mema.imageio import write_png

OUT = Path(__file__).resolve().parent.parent / "mema" / "corpus" / "vendored" / "real-faces"


def parse_sources(md: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Per-file rows of the 'Files' table and the licence of each source key ('Sources' table)."""
    licences, files = {}, {}
    section = None
    for line in md.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| key") or line.startswith("| file"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if section == "Sources":
            licences[cells[0]] = cells[-1]
        elif section == "Files":
            name, identity, key, path, box, face_px, how, note, md5 = cells
            files[name] = {"identity": identity, "source": key, "original_path": path, "crop_box": box,
                           "how": how, "note": note, "original_md5": md5}
    return files, licences


def main(src: Path) -> int:
    files, licences = parse_sources((src / "SOURCES.md").read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    rows, skipped, names, points = [], [], [], []
    from mema.generation.age_gender import OfflineEstimator

    estimator = OfflineEstimator()  # recorded here, so the track's labels do not depend on the machine that builds it
    with LandmarkDetector(pad_fraction=0.1) as full_det, LandmarkDetector() as crop_det:
        for name in sorted(files):
            meta = files[name]
            img = np.asarray(ImageOps.exif_transpose(Image.open(src / name)).convert("RGB"))
            lm = full_det.detect(img)
            if lm is None:
                skipped.append({"file": name, "reason": "no face found by the landmarker in the photo"})
                continue
            crop = align_to_mema(img, five_points(lm))
            lm_crop = crop_det.detect(crop)
            if lm_crop is None:
                skipped.append({"file": name, "reason": "no face found by the landmarker in the aligned crop"})
                continue
            stem = re.sub(r"[^a-z0-9_]+", "_", Path(name).stem.lower())
            sha = write_png(OUT / f"{stem}.png", crop)
            age, gender = estimator.predict(crop)
            rows.append({"id": stem, "file": f"{stem}.png", "sha256": sha, "source_file": name, **meta,
                         "age": int(age), "gender": str(gender), "age_gender": "estimated (offline Cydral models)",
                         "licence": licences.get(meta["source"], "unknown"),
                         "source_sha256": hashlib.sha256((src / name).read_bytes()).hexdigest()})
            names.append(stem)
            points.append(lm_crop.points.astype(np.float32))
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=np.array(names), points=np.stack(points))
    (OUT / "landmarks.npz").write_bytes(buf.getvalue())
    (OUT / "sources.json").write_text(json.dumps({"licences": licences, "crops": rows, "skipped": skipped}, indent=1) + "\n")
    print(f"{len(rows)} crops written to {OUT}; {len(skipped)} skipped")
    for s in skipped:
        print(f"  skipped {s['file']}: {s['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
