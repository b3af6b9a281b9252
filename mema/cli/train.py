"""``mema-train rofi``: train the ROFI baseline on a MeMa corpus;
``mema-train medsem-deid``: train MedSem-DeID (MeMa's baseline, docs/methods/medsem-deid.md);
``mema-train evaluators``: train a corpus's reference evaluators (and export them as a shipped bundle).

    mema-train evaluators --dataset PATH [--seed 0] [--export DIR]

    mema-train medsem-deid --dataset mini --output_dir runs/medsem-train [--seed 0] [--mixed_precision fp16]
                    [--identity_steps N] [--semantic_steps N] [--warmup_steps N] [--deid_steps N] [--batch_size 8]

    mema-train rofi --dataset mini --output_dir runs/rofi-train [--seed 0] [--mixed_precision fp16]
                    [--identity_steps N] [--detector_steps N] [--translator_steps N] [--translator_depth 6]

Stages (each resumes from its latest checkpoint in OUTPUT_DIR/checkpoints after a kill; a finished
stage is skipped): identity (the training-only identity network, not an evaluation recogniser),
detector (weakly supervised sign detector), translator (protector + restorer + critics). The output
folder is self-contained: config.json, train_log.jsonl, detector_eval.json, checkpoints/ and
rofi.pt (the inference weights, fp16), which ``mema-eval --method rofi`` uses with
``MEMA_ROFI_WEIGHTS=OUTPUT_DIR/rofi.pt``. Runs on GPUs through accelerate
(``accelerate launch -m mema.cli.train rofi ...``); on a CPU by default.

MedSem-DeID's stages: identity (the same kind of training-only identity network), semantic (a small
diffusion UNet trained on the train split; its first blocks become the frozen medical encoder),
warmup (autoencoder start), deid (the paper's objective). Its folder holds medsem-deid.pt, used by
``mema-eval --method medsem-deid`` with ``MEMA_MEDSEM_WEIGHTS=OUTPUT_DIR/medsem-deid.pt``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mema import runtime


def _common(p: argparse.ArgumentParser, seed: int) -> None:
    p.add_argument("--dataset", default="mini", help="corpus folder or preset name (default mini)")
    p.add_argument("--seed", type=int, default=seed)


def _rofi_flags(p: argparse.ArgumentParser) -> None:
    from mema.baselines.rofi.train import TrainConfig

    d = TrainConfig()
    _common(p, d.seed)
    p.add_argument("--output_dir", type=Path, required=True, help="the run folder")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=d.mixed_precision)
    p.add_argument("--identity_steps", type=int, default=d.identity_steps)
    p.add_argument("--detector_steps", type=int, default=d.detector_steps)
    p.add_argument("--translator_steps", type=int, default=d.translator_steps)
    p.add_argument("--translator_batch_size", type=int, default=d.translator_batch_size)
    p.add_argument("--learning_rate", type=float, default=d.learning_rate)
    p.add_argument("--checkpointing_steps", type=int, default=d.checkpointing_steps)
    p.add_argument("--translator_depth", type=int, default=d.rofi.translator_depth, help="transformer blocks in the translator (paper: 6)")
    p.add_argument("--limit", type=int, help="use only the first N training images (pipeline tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _medsem_flags(p: argparse.ArgumentParser) -> None:
    from mema.baselines.medsem.train import TrainConfig

    d = TrainConfig()
    _common(p, d.seed)
    p.add_argument("--output_dir", type=Path, required=True, help="the run folder")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=d.mixed_precision)
    p.add_argument("--identity_steps", type=int, default=d.identity_steps, help="training-only identity network")
    p.add_argument("--semantic_steps", type=int, default=d.semantic_steps, help="diffusion UNet (medical semantics encoder)")
    p.add_argument("--semantic_batch_size", type=int, default=d.semantic_batch_size)
    p.add_argument("--warmup_steps", type=int, default=d.warmup_steps, help="autoencoder start (0: none)")
    p.add_argument("--deid_steps", type=int, default=d.deid_steps, help="the paper's objective")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="warmup and deid batch size (paper: 16)")
    p.add_argument("--learning_rate", type=float, default=d.learning_rate, help="paper: 2e-4, halved at half")
    p.add_argument("--checkpointing_steps", type=int, default=d.checkpointing_steps)
    p.add_argument("--encryptor_depth", type=int, default=d.medsem.encryptor_depth, help="transformer blocks in the ID-Encryptor")
    p.add_argument("--decryptor_depth", type=int, default=d.medsem.decryptor_depth, help="transformer blocks in the ID-Decryptor")
    p.add_argument("--no_identity_jitter", action="store_true", help="the identity network sees images as they are")
    p.add_argument("--limit", type=int, help="use only the first N training images (pipeline tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mema-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="model", required=True, metavar="{rofi,medsem-deid,evaluators}", help="what to train")
    _rofi_flags(sub.add_parser("rofi", help="the ROFI baseline"))
    _medsem_flags(sub.add_parser("medsem-deid", help="MedSem-DeID (MeMa's baseline)"))
    ev = sub.add_parser("evaluators", help="a corpus's reference evaluators")
    _common(ev, 0)
    ev.add_argument("--export", type=Path, help="also write the frozen bundle to this folder")
    ev.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _load(dataset: str):
    """The corpus, or a one-line message (and exit code 2)."""
    from mema.cli.data import resolve_dataset
    from mema.corpus.store import CorpusError, load_corpus

    root = resolve_dataset(dataset)
    try:
        return load_corpus(root)
    except CorpusError as exc:
        hint = f" (build it: mema-data build {dataset})" if not root.exists() else ""
        print(f"mema-train: {exc}{hint}", file=sys.stderr)
        return None


def _claim(out: Path, body: dict) -> bool:
    """Write OUTPUT_DIR/config.json, refusing a folder that holds a run with other settings."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    if saved.exists() and json.loads(saved.read_text()) != body:
        print(f"mema-train: {out} holds a run with other settings (config.json); use a new --output_dir", file=sys.stderr)
        return False
    saved.write_text(json.dumps(body, indent=1))
    return True


def _bad_option(exc) -> int:
    print(f"mema-train: bad option: {exc.errors()[0]['loc'][-1]}: {exc.errors()[0]['msg']}", file=sys.stderr)
    return 2


def _train_medsem(args) -> int:
    from pydantic import ValidationError

    from mema.baselines.medsem.config import MedSemConfig
    from mema.baselines.medsem.train import TrainConfig

    try:
        cfg = TrainConfig(
            seed=args.seed, mixed_precision=args.mixed_precision, identity_steps=args.identity_steps,
            semantic_steps=args.semantic_steps, semantic_batch_size=args.semantic_batch_size,
            warmup_steps=args.warmup_steps, warmup_batch_size=args.batch_size, deid_steps=args.deid_steps,
            batch_size=args.batch_size, learning_rate=args.learning_rate, checkpointing_steps=args.checkpointing_steps,
            identity_jitter=not args.no_identity_jitter,
            medsem=MedSemConfig(encryptor_depth=args.encryptor_depth, decryptor_depth=args.decryptor_depth),
        )
    except ValidationError as exc:
        return _bad_option(exc)
    corpus = _load(args.dataset)
    if corpus is None:
        return 2
    if not _claim(args.output_dir, {"model": "medsem-deid", "dataset": corpus.fingerprint, "limit": args.limit,
                                    "train": cfg.model_dump(mode="json")}):
        return 2
    from mema.baselines.medsem.pipeline import train_medsem

    try:
        result = train_medsem(corpus, cfg, args.output_dir, limit=args.limit, progress=not args.quiet)
    except ValueError as exc:
        print(f"mema-train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


def _train_evaluators(args) -> int:
    from mema.evaluators.bundle import export_bundle
    from mema.evaluators.train_all import train_evaluators

    corpus = _load(args.dataset)
    if corpus is None:
        return 2
    if args.export is not None and args.export.exists() and any(args.export.iterdir()):
        print(f"mema-train: {args.export} is not empty; choose a new folder for the bundle", file=sys.stderr)
        return 2
    record = train_evaluators(corpus, seed=args.seed, device=args.device or runtime.default_device(), progress=not args.quiet)
    if args.export is not None:
        from pathlib import Path as _P

        export_bundle(_P(record["folder"]), args.export, corpus.info, {k: v for k, v in record.items() if k != "folder"})
        print(f"bundle written to {args.export}")
    print(json.dumps({k: v for k, v in record.items() if k != "folder"}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime.set_torch_threads()
    if args.model == "evaluators":
        return _train_evaluators(args)
    if args.model == "medsem-deid":
        return _train_medsem(args)
    from pydantic import ValidationError

    from mema.baselines.rofi.config import ROFIConfig
    from mema.baselines.rofi.train import TrainConfig

    try:
        cfg = TrainConfig(
            seed=args.seed, mixed_precision=args.mixed_precision, identity_steps=args.identity_steps,
            detector_steps=args.detector_steps, translator_steps=args.translator_steps,
            translator_batch_size=args.translator_batch_size, learning_rate=args.learning_rate,
            checkpointing_steps=args.checkpointing_steps, rofi=ROFIConfig(translator_depth=args.translator_depth),
        )
    except ValidationError as exc:
        return _bad_option(exc)
    corpus = _load(args.dataset)
    if corpus is None:
        return 2
    out: Path = args.output_dir
    if not _claim(out, {"dataset": corpus.fingerprint, "limit": args.limit, "train": cfg.model_dump(mode="json")}):
        return 2
    from mema.baselines.rofi.pipeline import train_rofi

    try:
        result = train_rofi(corpus, cfg, out, limit=args.limit, progress=not args.quiet)
    except ValueError as exc:
        print(f"mema-train: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
