"""The data card of the real-face track: what it holds, how the signs were drawn, every file's origin and licence."""

from __future__ import annotations

from collections import Counter

from mema.corpus.schema import DISEASES, SPLITS, ImageRecord


def real_card(records: list[ImageRecord], sources: dict) -> str:
    crops = {c["id"]: c for c in sources["crops"]}
    splits = [s for s in SPLITS if any(r.split == s for r in records)]
    counts = Counter((r.split, r.disease) for r in records)
    ids = {s: len({r.identity for r in records if r.split == s}) for s in splits}
    gallery_ids = {r.identity for r in records if r.split == "gallery"}
    impostors = sorted({r.identity for r in records if r.split == "val" and r.identity not in gallery_ids})
    lines = [
        "# mema-real-faces 1.0: the real-face track",
        "",
        f"{len(records)} aligned 128 px crops of real photos of {len({r.identity for r in records})} people, in the MeMa",
        "corpus format, with ophthalmic signs drawn onto the real eyes. Built by `mema-data build real-faces` from the",
        "crops vendored in `mema/corpus/vendored/real-faces/` (no model runs at build time).",
        "",
        "## What it is for",
        "Checking privacy claims on real faces: a synthetic corpus is a proxy, and its drawn eyes carry less identity",
        "than real ones. **Research only.** The photos are public test images of face-recognition projects; they are",
        "not patients, and the drawn signs are not clinical findings. Some recognisers may have seen the LFW",
        "identities in training. Methods are also checked on other real photos; tune nothing to these.",
        "",
        "## How it was made",
        "- Faces: MediaPipe FaceLandmarker on each photo (EXIF orientation applied), a similarity fit of five points",
        "  (eye centres, nose tip, mouth corners) to MeMa-mini's 128 px frame, area pre-shrink and a cubic warp;",
        "  landmarks of the crop vendored with it; age and gender estimated once on the crop (offline Cydral models, CC0).",
        f"- Skipped photos: {len(sources.get('skipped', []))}"
        + ("".join(f"; {s['file']} ({s['reason']})" for s in sources.get("skipped", []))) + ".",
        "- Splits by identity (seeded): people with two or more photos go to test, dev or val; one untouched photo",
        "  of each is its gallery (ID) photo, the others are probes with one drawn sign each, classes balanced per split.",
        f"  People with a single photo ({len(impostors)}: {', '.join(impostors)}) are val impostors for threshold",
        "  calibration only (no gallery photo, never probes).",
        "- Signs drawn on the real eye (`mema.generation.real_signs`): Conj = sclera reddened with vessels; Uveitis =",
        "  ciliary flush and a hazy iris; Ptosis = the upper lid warped down over the iris; TAO = the upper lid warped",
        "  up with the eye's own sclera colour filling the exposed band, and lid swelling; Strab = the iris moved along",
        "  the eye by a warp confined to the opening; BCC / SCC = MeMa-mini's lesion drawings painted on the lid, with",
        "  masks. Not drawn (not credible on a photo): pupil size, lens opacity, proptosis, signs on closed eyes.",
        "",
        "## Counts (images)",
        "| class | " + " | ".join(splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    for d in DISEASES:
        lines.append(f"| {d} | " + " | ".join(str(counts[(s, d)]) for s in splits) + " |")
    lines.append("| identities | " + " | ".join(str(ids[s]) for s in splits) + " |")
    lines += [
        "",
        f"Lesion masks: {sum(r.mask_file is not None for r in records)}.",
        "",
        "## Licences",
        "| source | licence |",
        "|---|---|",
    ]
    for key, lic in sorted(sources["licences"].items()):
        lines.append(f"| {key} | {lic} |")
    lines += [
        "",
        "The repositories' licences cover their code; the photos' copyright stays with their owners. Do not relicense them.",
        "",
        "## Files",
        "| id | split | identity | source | original file | how | sha256 of the original |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: r.id):
        c = crops[r.id]
        lines.append(f"| {r.id} | {r.split} | {r.identity} | {c['source']} | {c['original_path']} | {c['how']} | {c['source_sha256'][:16]}... |")
    return "\n".join(lines) + "\n"
