"""Build a procedural corpus folder: resumable, parallel, deterministic.

The build runs on the one corpus-job runner (:mod:`mema.generation.runner`): ``<out>/.build/plan.json``
(the config and how landmarks are obtained), one ``<out>/.build/done/<identity>.json`` per finished
identity, written atomically after its PNGs, and a lock so two builds of one folder never interleave.
A killed build resumes from those files; ``dataset.json`` is written last, so its presence means
the corpus is complete.

Landmarks and age/gender come from the shipped recorded plan of the config when there is one
(``generation/recorded/<name>-<version>.npz``; :mod:`mema.generation.recorded`), so every machine builds
the registered bytes; otherwise (custom configs, ``live=True``) the models run live. ``record_to`` runs
them live and writes down what they answered, which is how a recorded plan is made.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mema.corpus.schema import ImageRecord, Provenance
from mema.corpus.store import DATASET_JSON, load_info, write_index
from mema.generation.presets import CorpusConfig
from mema.generation.runner import provenance
from mema.generation.sampling_plan import IdentityPlan, identity_plan
from mema.imageio import atomic_write_bytes, write_png

BUILD_DIR = ".build"


class BuildError(RuntimeError):
    pass


def default_root() -> Path:
    """Where named corpora are cached: ``$MEMA_HOME/corpora`` (default ``~/.cache/mema/corpora``)."""
    home = Path(os.environ.get("MEMA_HOME", Path.home() / ".cache" / "mema")).expanduser()
    return home / "corpora"


def corpus_dir(cfg: CorpusConfig) -> Path:
    return default_root() / f"{cfg.name}-{cfg.version}"


# --- worker side -------------------------------------------------------------------------------

_renderer = None


def _init_worker(cfg_json: str, mode: str, plan_path: str | None) -> None:
    global _renderer
    import torch

    torch.set_num_threads(1)  # one process per core
    from mema.generation.procedural import ProceduralRenderer
    from mema.generation.recorded import RecordedPlan

    replay = RecordedPlan.load(Path(plan_path)).identities if mode == "replay" else None
    _renderer = ProceduralRenderer(CorpusConfig.model_validate_json(cfg_json), replay, record=mode == "record")


def _render(plan_json: str):
    plan = IdentityPlan.model_validate_json(plan_json)
    return _renderer.render(plan)


# --- main side ---------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _weights_used() -> dict[str, str]:
    from mema.weights import entry

    return {name: entry(name).sha256 for name in ("dcgan_digiface", "face_landmarker", "age_v1", "gender_v1")}


def _save_identity(root: Path, run, rendered, weights: dict[str, str]) -> list[dict]:
    plan = rendered.plan
    records = []
    for photo in rendered.photos:
        file_name = f"{photo.id}.png"
        sha = write_png(root / photo.split / file_name, photo.image)
        mask_file = mask_sha = None
        if photo.mask is not None:
            mask_file = f"masks/{photo.split}/{photo.id}.png"
            mask_sha = write_png(root / mask_file, photo.mask)
        rec = ImageRecord(
            file_name=file_name,
            id=photo.id,
            sha256=sha,
            split=photo.split,
            identity=plan.identity,
            disease=plan.disease,
            severity=plan.severity,
            age=rendered.age,
            gender=rendered.gender,
            width=photo.image.shape[1],
            height=photo.image.shape[0],
            mask_file=mask_file,
            mask_sha256=mask_sha,
            provenance=Provenance(**provenance("procedural", seed=photo.seed, attempt=photo.attempt, weights=weights)),
        )
        records.append(rec.model_dump(mode="json"))
    done = {"identity": plan.identity, "records": records, "embedding": [float(x) for x in rendered.embedding]}
    if rendered.recording is not None:
        done["recording"] = rendered.recording.to_json()
    run.mark_done(plan.identity, done)
    return records


def build_corpus(
    cfg: CorpusConfig,
    out: Path | None = None,
    *,
    workers: int = 2,
    force: bool = False,
    progress: bool = True,
    live: bool = False,
    record_to: Path | None = None,
) -> Path:
    """Build (or resume, or reuse) the corpus for ``cfg``; returns its folder."""
    from mema.generation.recorded import RecordedPlan, ReplayError, shipped_plan_path


    root = Path(out) if out is not None else corpus_dir(cfg)
    plan_file = shipped_plan_path(cfg.name, cfg.version)
    if record_to is not None:
        mode, plan_path = "record", None
    elif not live and plan_file.exists() and RecordedPlan.load(plan_file).config_sha256 == cfg.sha256():
        mode, plan_path = "replay", plan_file
    else:  # other settings than the registered corpus (e.g. another seed): the models run on this machine
        mode, plan_path = "live", None
    from mema.generation.runner import start_run
    from mema.generation.stage import StageError

    if force and root.exists():
        shutil.rmtree(root)
    if (root / DATASET_JSON).exists():
        info = load_info(root)
        if info.builder.get("config_sha256") == cfg.sha256():
            return root
        raise BuildError(f"{root} holds a different corpus ({info.name} {info.version}); pass --force to rebuild it or choose --out")
    plans = identity_plan(cfg)
    settings = {**cfg.model_dump(mode="json"), "landmarks": mode}
    try:
        # One runner for every corpus job (mema.generation.runner): plan, locks, done records, resume.
        run = start_run(root, settings, lambda: {"identities": [p.identity for p in plans]}, state=root / BUILD_DIR,
                        what="corpus build")
    except StageError as exc:
        raise BuildError(f"{exc}; pass --force to start over") from None
    todo = [p for p in plans if not run.is_done(p.identity)]
    weights = _weights_used()
    t0 = time.time()
    bar = tqdm(total=len(plans), initial=len(plans) - len(todo), desc=f"build {cfg.name}", unit="id", disable=not progress)
    init_args = (cfg.model_dump_json(), mode, str(plan_path) if plan_path else None)
    try:
        with run.shard_lock(0, 1):
            if todo and workers > 1:
                ctx = mp.get_context("spawn")  # MediaPipe and torch do not survive fork safely
                with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
                    for rendered in pool.imap_unordered(_render, [p.model_dump_json() for p in todo], chunksize=4):
                        _save_identity(root, run, rendered, weights)
                        bar.update(1)
            elif todo:
                _init_worker(*init_args)
                try:
                    for plan in todo:
                        _save_identity(root, run, _render(plan.model_dump_json()), weights)
                        bar.update(1)
                finally:
                    _renderer.close()
    except ReplayError as exc:
        raise BuildError(str(exc)) from None
    except StageError as exc:
        raise BuildError(str(exc)) from None
    bar.close()
    build_seconds = time.time() - t0

    records, embeddings, recordings = [], {}, {}
    for plan in plans:
        done = run.record(plan.identity)
        records += [ImageRecord.model_validate(r) for r in done["records"]]
        embeddings[plan.identity] = (plan.split, np.array(done["embedding"], dtype=np.float32))
        if mode == "record":
            from mema.generation.recorded import IdentityRecording

            recordings[plan.identity] = IdentityRecording.from_json(done["recording"])
    if mode == "record":
        RecordedPlan(cfg.sha256(), recordings).save(Path(record_to))

    from mema.generation.card import write_card_assets

    card_body = write_card_assets(root, cfg, records, embeddings)
    info = write_index(
        root,
        records,
        name=cfg.name,
        version=cfg.version,
        description="Synthetic patient faces with procedurally drawn eye-disease signs (MeMa's eight classes).",
        licence="Research only: derived from a DCGAN trained on DigiFace-1M (research-only licence)",
        research_only=True,
        builder={
            "backend": "procedural",
            "config_sha256": cfg.sha256(),
            "seed": cfg.seed,
            "landmarks": ("recorded plan " + _file_sha256(plan_file)[:16]) if mode == "replay" else "live (MediaPipe, this machine)",
            "mema_version": __import__("mema").__version__,
            "python": platform.python_version(),
            "last_run_seconds": round(build_seconds, 1),
        },
        card_body=card_body,
    )
    from mema.generation.card import write_procedural_croissant

    write_procedural_croissant(root, info, records)  # the same Croissant writer as `mema-generate card`
    return root
