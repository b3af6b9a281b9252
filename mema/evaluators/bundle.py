"""Frozen, shipped reference evaluators: one bundle per registered corpus, so every submitter has the same judges.

A bundle (``mema/evaluators/shipped/<name>-<version>/``) holds what a corpus's evaluation needs beyond the
pretrained zoo: the disease classifier, the nnU-Net lesion segmenter (weights without optimizer state),
the periocular recogniser, the calibrated same-person thresholds and the reference embeddings of the
dev/val/test/gallery photos (which take the longest to compute). ``bundle.json`` lists every file with its
sha256 and the corpus manifest it was made from; ``bundle.json`` itself is an entry of the weights
manifest, so loading a bundle checks the manifest hash of ``bundle.json`` and then each file against it.
On first use a verified bundle is copied into the evaluator cache, where the harness reads it as if it had
trained the evaluators itself; results record the bundle's hash, and the leaderboard refuses an entry scored
with other evaluators.

``mema-train evaluators --dataset PATH`` trains the same set for any corpus (seeded; the seeds and library
versions are recorded), and ``--export DIR`` writes a bundle from it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

SHIPPED = Path(__file__).parent / "shipped"
BUNDLE_JSON = "bundle.json"
SEGMENTER_DIR = "nnunet-eyes"
FILES = ("classifier.pt", "classifier.json", "periocular.pt", "periocular.json", "average_face_112.png", "thresholds.json",
         "embeddings_sface.npz", "embeddings_dlib-resnet.npz", "embeddings_periocular.npz", "embeddings_periocular-sface.npz")
SEGMENTER_FILES = ("segmenter.json", "results/Dataset501_MeMaSeg/nnUNetTrainer__nnUNetPlansCPU__2d/plans.json",
                   "results/Dataset501_MeMaSeg/nnUNetTrainer__nnUNetPlansCPU__2d/dataset.json",
                   "results/Dataset501_MeMaSeg/nnUNetTrainer__nnUNetPlansCPU__2d/dataset_fingerprint.json",
                   "results/Dataset501_MeMaSeg/nnUNetTrainer__nnUNetPlansCPU__2d/fold_all/checkpoint_final.pth")


class BundleError(RuntimeError):
    pass


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_name(name: str, version: str) -> str:
    return "evaluators_" + f"{name}_{version}".replace("-", "_").replace(".", "_")


def shipped_dir(name: str, version: str) -> Path:
    return SHIPPED / f"{name}-{version}"


def bundle_files(folder: Path) -> list[str]:
    files = [f for f in FILES if (folder / f).exists()]
    if (folder / SEGMENTER_DIR / "segmenter.json").exists():
        files += [f"{SEGMENTER_DIR}/{f}" for f in SEGMENTER_FILES]
    return files


def export_bundle(cache: Path, dest: Path, corpus_info, training: dict) -> dict:
    """Copy a trained evaluator folder's frozen files to ``dest`` and write ``bundle.json``."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    files = {}
    for rel in bundle_files(cache):
        src, out = cache / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("checkpoint_final.pth"):  # inference needs the weights, not the optimizer
            ckpt = torch.load(src, map_location="cpu", weights_only=False)
            ckpt.pop("optimizer_state", None)
            ckpt.pop("grad_scaler_state", None)
            torch.save(ckpt, out)
        else:
            shutil.copy2(src, out)
        files[rel] = _sha(out)
    body = {"corpus": {"name": corpus_info.name, "version": corpus_info.version, "manifest_sha256": corpus_info.manifest_sha256},
            "files": files, "training": training}
    (dest / BUNDLE_JSON).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return body


def load_shipped(corpus_info) -> tuple[Path, dict] | None:
    """(folder, bundle.json) of the verified shipped bundle for this corpus, or None when none ships."""
    from mema.weights import WeightsError, entry, weight_path

    folder = shipped_dir(corpus_info.name, corpus_info.version)
    if not (folder / BUNDLE_JSON).exists():
        return None
    try:
        entry(manifest_name(corpus_info.name, corpus_info.version))
    except WeightsError:
        raise BundleError(f"{folder / BUNDLE_JSON} is not listed in the weights manifest; it cannot be trusted") from None
    path = weight_path(manifest_name(corpus_info.name, corpus_info.version))  # checks the manifest sha256
    body = json.loads(path.read_text())
    if body["corpus"]["manifest_sha256"] != corpus_info.manifest_sha256:
        return None  # made for another build of this name: the corpus check refuses it elsewhere
    for rel, want in body["files"].items():
        got = _sha(folder / rel) if (folder / rel).exists() else "missing"
        if got != want:
            raise BundleError(f"shipped evaluator {folder.name}/{rel}: sha256 {got[:12]}... differs from bundle.json ({want[:12]}...); "
                              "restore it from the repository")
    return folder, body


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy through the project's atomic write, so a crash never leaves a half-written evaluator."""
    from mema.imageio import atomic_write_bytes

    atomic_write_bytes(dst, Path(src).read_bytes())


def install(cache: Path, corpus_info) -> dict | None:
    """Copy the verified shipped bundle into ``cache``; returns its record for results, or None.

    Every cached file is re-hashed on each install (11 MB, well under a second): an evaluator edited or
    truncated in the cache is replaced from the verified shipped copy, never used."""
    shipped = load_shipped(corpus_info)
    if shipped is None:
        return None
    folder, body = shipped
    stamp = cache / BUNDLE_JSON
    current = stamp.exists() and json.loads(stamp.read_text()) == body
    for rel, want in body["files"].items():
        if not current or not (cache / rel).exists() or _sha(cache / rel) != want:
            _copy_atomic(folder / rel, cache / rel)
    if not current:
        _copy_atomic(folder / BUNDLE_JSON, stamp)
    return {"bundle": f"{corpus_info.name}-{corpus_info.version}", "sha256": _sha(folder / BUNDLE_JSON),
            "files": body["files"]}


def _mini_bundle() -> tuple[Path, dict] | None:
    """MeMa-mini 2.0's shipped bundle.json, verified against the weights manifest (None when it does not ship)."""
    from mema.weights import weight_path

    folder = shipped_dir("mema-mini", "2.0")
    if not (folder / BUNDLE_JSON).exists():
        return None
    return folder, json.loads(weight_path(manifest_name("mema-mini", "2.0")).read_text())  # checks the manifest sha256


def pretrained_periocular() -> tuple[dict | None, str | None]:
    """(state dict, what it is) of MeMa-mini's shipped periocular recogniser, to fine-tune from; (None, None) if absent."""
    import torch

    shipped = _mini_bundle()
    if shipped is None:
        return None, None
    folder, body = shipped
    want = body["files"].get("periocular.pt")
    if want is None:
        return None, None
    if _sha(folder / "periocular.pt") != want:
        raise BundleError("shipped periocular.pt differs from its bundle.json; restore it from the repository")
    state = torch.load(folder / "periocular.pt", map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, f"mema-mini-2.0 periocular.pt {want[:12]}"


def copy_pretrained_segmenter(dest: Path) -> bool:
    """Copy MeMa-mini 2.0's shipped nnU-Net segmenter (verified against its bundle) to ``dest``; False if absent."""
    shipped = _mini_bundle()
    if shipped is None:
        return False
    folder, body = shipped
    files = {rel: sha for rel, sha in body["files"].items() if rel.startswith(SEGMENTER_DIR + "/")}
    if not files:
        return False
    for rel, want in files.items():
        if _sha(folder / rel) != want:
            raise BundleError(f"shipped segmenter file {rel} differs from its bundle.json; restore it from the repository")
    for rel in files:
        _copy_atomic(folder / rel, Path(dest) / Path(rel).relative_to(SEGMENTER_DIR))
    return True


def shipped_bundle_sha256(name: str, version: str) -> str | None:
    """The registered evaluators of a corpus version: the manifest's sha256 of its bundle.json (None if none ships)."""
    from mema.weights import WeightsError, entry

    try:
        return entry(manifest_name(name, version)).sha256
    except WeightsError:
        return None
