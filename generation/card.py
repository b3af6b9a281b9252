"""Data card and sample grids for a built corpus (the README.md body and ``card/*.png``)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from mema.corpus.schema import DISEASE_NAMES, DISEASES, EVAL_SPLITS, SPLITS, ImageRecord
from mema.corpus.verify import embedding_disjointness
from mema.imageio import atomic_write_bytes, read_rgb, write_png
from mema.weights import entry

GRID_COLUMNS = 6


def _grid(root: Path, recs: list[ImageRecord], columns: int) -> np.ndarray:
    tiles = [read_rgb(root / r.split / r.file_name)[0] for r in recs]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * h, columns * w, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        grid[(i // columns) * h : (i // columns + 1) * h, (i % columns) * w : (i % columns + 1) * w] = t
    return grid


def sample_for_grid(records: list[ImageRecord], disease: str, n: int) -> list[ImageRecord]:
    """First photo of up to ``n`` training identities, severities interleaved (slight, mid, heavy, ...)."""
    by_sev: dict[str, list[ImageRecord]] = defaultdict(list)
    seen = set()
    for r in sorted(records, key=lambda r: r.id):
        if r.split == "train" and r.disease == disease and r.identity not in seen:
            seen.add(r.identity)
            by_sev[r.severity].append(r)
    order = [by_sev[s] for s in ("none", "slight", "mid", "heavy") if by_sev[s]]
    out = []
    while len(out) < n and any(order):
        for lst in order:
            if lst and len(out) < n:
                out.append(lst.pop(0))
    return out


def write_card_assets(root: Path, cfg, records: list[ImageRecord], embeddings: dict) -> str:
    """Write ``card/`` grids and stats; return the Markdown body of the data card."""
    card_dir = root / "card"
    grids = []
    for disease in DISEASES:
        recs = sample_for_grid(records, disease, 2 * GRID_COLUMNS)
        if recs:
            write_png(card_dir / f"grid_{disease}.png", _grid(root, recs, GRID_COLUMNS))
            grids.append(disease)
    overview = [r for d in DISEASES for r in sample_for_grid(records, d, GRID_COLUMNS)]
    if overview:
        write_png(card_dir / "grid_all.png", _grid(root, overview, GRID_COLUMNS))

    from mema.faces.recognisers import SFace

    disjoint = embedding_disjointness(embeddings, SFace.info.reference_threshold)
    ids_by_split = defaultdict(set)
    for r in records:
        ids_by_split[r.split].add(r.identity)
    shared = {
        f"{a}-{b}": len(ids_by_split[a] & ids_by_split[b])
        for i, a in enumerate(("train", *EVAL_SPLITS)) for b in EVAL_SPLITS[i:]
    }
    gallery_ok = ids_by_split["gallery"] <= set().union(*(ids_by_split[s] for s in EVAL_SPLITS))
    stats = {
        "identities_shared_between_splits": shared,
        "gallery_identities_subset_of_eval": gallery_ok,
        "embedding_disjointness": disjoint,
    }
    atomic_write_bytes(card_dir / "stats.json", json.dumps(stats, indent=2).encode())
    return _markdown(cfg, records, stats, grids)


def _markdown(cfg, records: list[ImageRecord], stats: dict, grids: list[str]) -> str:
    splits = [s for s in SPLITS if any(r.split == s for r in records)]
    counts = Counter((r.split, r.disease) for r in records)
    lines = [
        f"# {cfg.name} {cfg.version}",
        "",
        "Synthetic patient faces with procedurally drawn eye-disease signs in MeMa's eight classes, built by",
        f"`mema-data build {'mini' if cfg.name == 'mema-mini' else cfg.name}` (MeMa procedural backend, seed {cfg.seed}).",
        "",
        "## What it is for",
        "Testing pipelines and developing de-identification methods on any machine, offline.",
        "**Not for clinical validation**: the signs are drawn by rules, not photographed, and the faces are",
        "synthetic. No real person or patient is depicted.",
        "",
        "## How it was made",
        f"- Identities: faces from a DCGAN (64x64, trained on DigiFace-1M) upscaled to {cfg.image_size} px; each photo of an",
        f"  identity perturbs the identity's latent (sigma {cfg.latent_sigma}) and adds pose jitter (+-6 deg, +-5% scale, +-3 px)",
        "  and photometric jitter (contrast, brightness, colour balance, noise).",
        "- Eyes are located with MediaPipe FaceLandmarker and redrawn (sclera, iris, pupil, lids), because the",
        "  generator's own eyes are too faint to carry signs.",
        "- Each identity has its own periocular traits, fixed across its photos and different between identities",
        "  (as a real person's eye region is a biometric): eye shape (lid heights, canthal tilt, lid curve, apex),",
        "  lid crease (or none), brows (gap, arch, thickness, length, colour, a fixed hair pattern), iris colour and",
        "  texture, and periocular skin (tint, 0-3 moles, dark circles, crow's feet). Only lid heights, gaze and",
        "  brow height wobble a little per photo. Signs are drawn on top: Ptosis = upper lid lowered over the iris;",
        "  Strab = one iris displaced; TAO = lid retraction with sclera above the iris and lid swelling;",
        "  Conj = reddened sclera with vessels; Uveitis = ciliary flush, clouded iris, small pupil;",
        "  BCC = pearly nodule with rolled border and telangiectasia; SCC = red scaly plaque with crust.",
        "  Severity slight / mid / heavy scales each sign. BCC and SCC images carry a lesion mask (MeMa-Seg analogue).",
        "- Age and gender: predicted once per identity on its clean face by the Cydral age/gender models (CC0).",
        "- Splits are identity-disjoint: train (evaluators, attackers and methods learn here), dev (method",
        "  development: tune here), val (calibration of the reference evaluators only; never scored), test (reported",
        "  figures). Each dev/val/test identity also has a gallery photo (a different photo of the same face) for",
        "  face-matching attacks.",
        "- Reproducible on x86-64 machines: the generator runs in float64 and the landmark and age/gender readings",
        "  come from a recorded plan shipped with the package (`generation/recorded/`), so `mema-data build` gives the",
        "  registered manifest hash (on CPUs without AVX2, e.g. ARM, OpenCV's warp differs and the build stops).",
        "",
        "## Licences",
        "| part | licence |",
        "|---|---|",
    ]
    for name in ("dcgan_digiface", "face_landmarker", "age_v1", "gender_v1", "sface_int8"):
        e = entry(name)
        lines.append(f"| {e.file} ({e.used_for.split(';')[0]}) | {e.licence} |")
    lines += [
        "",
        "**The corpus is research-only**, because its faces come from a generator trained on DigiFace-1M.",
        "",
        "## Class balance (images)",
        "| class | " + " | ".join(splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    for d in DISEASES:
        lines.append(f"| {d} ({DISEASE_NAMES[d]}) | " + " | ".join(str(counts[(s, d)]) for s in splits) + " |")
    lines.append("| total | " + " | ".join(str(sum(counts[(s, d)] for d in DISEASES)) for s in splits) + " |")
    ages = np.array([r.age for r in records if r.age is not None])
    genders = Counter(r.gender for r in records)
    emb = stats["embedding_disjointness"]
    lines += [
        "",
        f"Lesion masks: {sum(r.mask_file is not None for r in records)}. Age (years): median {np.median(ages):.0f},",
        f"5-95% {np.percentile(ages, 5):.0f}-{np.percentile(ages, 95):.0f}. Gender: "
        + ", ".join(f"{k} {v}" for k, v in sorted(genders.items())) + ".",
        "",
        "## Identity disjointness",
        "- By identity id, identities shared between splits: "
        + ", ".join(f"{k} {v}" for k, v in stats["identities_shared_between_splits"].items())
        + f"; gallery identities all from dev/val/test: {stats['gallery_identities_subset_of_eval']}.",
        f"- By face embedding (SFace, one photo per identity, {sum(emb['n_identities'].values())} identities): minimum"
        f" cross-split L2 {emb['min_l2']}; near-duplicates (L2 < {emb['near_duplicate_threshold']}): {len(emb['near_duplicates'])}.",
    ]
    for pair, v in emb["pairs"].items():
        lines.append(
            f"  - {pair}: min L2 {v['min_l2']}, {v['below_reference_threshold']} of {v['n_pairs']} pairs under SFace's"
            " published same-person threshold (synthetic faces are less distinct than real people)."
        )
    lines += ["", "## Sample grids (training images, severities interleaved)", "![all classes](card/grid_all.png)", ""]
    lines += [f"- {d}: ![{d}](card/grid_{d}.png)" for d in grids]
    return "\n".join(lines) + "\n"


# Croissant columns of a metadata line; nested provenance and nullable mask fields stay in the JSON lines.
CROISSANT_FIELDS = (("id", "sc:Text"), ("file_name", "sc:Text"), ("split", "sc:Text"), ("identity", "sc:Text"),
                    ("disease", "sc:Text"), ("severity", "sc:Text"), ("age", "sc:Integer"), ("gender", "sc:Text"),
                    ("sha256", "sc:Text"), ("width", "sc:Integer"), ("height", "sc:Integer"))
CITE_AS = ("@misc{mema, title={MeMa: medical-aware face de-identification toolkit}, "
           "note={synthetic patient-face corpora built with mema-data / mema-generate}}")


def croissant_jsonld(root: Path, info, *, licence: str, collection: str, sensitive: str, biases: str, limitations: str,
                     annotation: str, label_note: str | None = None, date_published: str | None = None) -> dict:
    """Croissant 1.0 JSON-LD (with the RAI fields) for a written corpus folder; shared by every backend.

    Per split: the metadata lines (a FileSet of one JSON-lines file) and the images (a FileSet of PNGs),
    each its own record set. ``dataset.json`` is a FileObject with its sha256: it carries the manifest hash
    that pins every record line, and every line carries its image's sha256. Only ``info`` and
    ``dataset.json`` are read, so the file can be rewritten for a shipped card without the images."""
    from mema.weights import sha256_file

    splits = [s for s in SPLITS if s in info.splits]
    disease_doc = "Disease class (one of " + ", ".join(info.classes) + ")" + (f"; {label_note}" if label_note else "")
    docs = {"disease": disease_doc, "severity": "none, slight, mid or heavy" + (f"; {label_note}" if label_note else ""),
            "sha256": "sha256 of the image file", "identity": "synthetic identity id (identity-disjoint splits)"}
    distribution = [{"@type": "cr:FileObject", "@id": "dataset.json", "name": "dataset.json", "contentUrl": "dataset.json",
                     "encodingFormat": "application/json", "sha256": sha256_file(Path(root) / "dataset.json"),
                     "description": f"Corpus index; manifest_sha256 {info.manifest_sha256} pins every metadata line."}]
    record_sets = []
    for s in splits:
        distribution += [
            {"@type": "cr:FileSet", "@id": f"{s}-metadata", "name": f"{s}-metadata", "includes": f"{s}/metadata.jsonl",
             "encodingFormat": "application/jsonlines"},
            {"@type": "cr:FileSet", "@id": f"{s}-images", "name": f"{s}-images", "includes": f"{s}/*.png", "encodingFormat": "image/png"},
        ]
        record_sets += [
            {"@type": "cr:RecordSet", "@id": s, "name": s, "description": f"{info.splits[s].images} image records of the {s} split",
             "field": [{"@type": "cr:Field", "@id": f"{s}/{f}", "name": f, "dataType": t,
                        **({"description": docs[f]} if f in docs else {}),
                        "source": {"fileSet": {"@id": f"{s}-metadata"}, "extract": {"column": f}}} for f, t in CROISSANT_FIELDS]},
            {"@type": "cr:RecordSet", "@id": f"{s}-image-files", "name": f"{s}-image-files", "description": f"the {s} split's PNG files",
             "field": [{"@type": "cr:Field", "@id": f"{s}-image-files/file_name", "name": "file_name", "dataType": "sc:Text",
                        "source": {"fileSet": {"@id": f"{s}-images"}, "extract": {"fileProperty": "filename"}}},
                       {"@type": "cr:Field", "@id": f"{s}-image-files/image", "name": "image", "dataType": "sc:ImageObject",
                        "source": {"fileSet": {"@id": f"{s}-images"}, "extract": {"fileProperty": "content"}}}]},
        ]
    return {
        "@context": {"@language": "en", "@vocab": "https://schema.org/", "cr": "http://mlcommons.org/croissant/",
                     "rai": "http://mlcommons.org/croissant/RAI/", "sc": "https://schema.org/", "dct": "http://purl.org/dc/terms/",
                     "citeAs": "cr:citeAs", "column": "cr:column", "conformsTo": "dct:conformsTo", "data": {"@id": "cr:data", "@type": "@json"},
                     "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "equivalentProperty": "cr:equivalentProperty", "examples": {"@id": "cr:examples", "@type": "@json"},
                     "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
                     "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
                     "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
                     "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
                     "replace": "cr:replace", "samplingRate": "cr:samplingRate", "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField",
                     "transform": "cr:transform"},
        "@type": "sc:Dataset", "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": info.name, "version": info.version, "description": info.description, "license": licence, "citeAs": CITE_AS,
        **({"datePublished": date_published} if date_published else {}),
        "distribution": distribution,
        "recordSet": record_sets,
        "rai:dataCollection": collection,
        "rai:dataCollectionType": ["Synthetic data generation"],
        "rai:personalSensitiveInformation": sensitive,
        "rai:dataBiases": biases,
        "rai:dataLimitations": limitations,
        "rai:dataUseCases": "Developing and benchmarking medical-aware face de-identification methods.",
        "rai:dataSocialImpact": "A privacy-safer stand-in for patient photos; residual re-identification risk is reported in the card.",
        "rai:annotationsPerItem": "1",
        "rai:dataAnnotationProtocol": annotation,
        "rai:dataReleaseMaintenancePlan": "Regenerate with the recorded builder settings; every image carries its seed and weight hashes.",
    }


def procedural_croissant(root: Path, info) -> dict:
    """The Croissant document of a MeMa-mini-style corpus (``mema-data build``)."""
    return croissant_jsonld(
        root, info, licence=info.licence,
        collection="Procedural: faces from an offline DCGAN (trained on DigiFace-1M) with eye-disease signs drawn by rules "
                   "at MediaPipe landmarks; no real patient data is used.",
        sensitive="No real person or patient is depicted; no real health data.",
        biases="Classes are balanced by construction; age and gender follow the DCGAN's faces (estimated by the Cydral models).",
        limitations="Not for clinical validation: signs are drawn by rules, not photographed.",
        annotation="Labels are the rendering conditions; lesion masks are the drawn lesions.",
    )


def write_procedural_croissant(root: Path, info, records: list[ImageRecord] | None = None) -> None:
    """croissant.json for a MeMa-mini-style corpus (``mema-data build``); the manifest is unaffected."""
    atomic_write_bytes(Path(root) / "croissant.json", (json.dumps(procedural_croissant(root, info), indent=2) + "\n").encode())
