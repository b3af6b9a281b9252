"""``mema-train rofi``: train the ROFI baseline on a MeMa corpus;
``mema-train evaluators``: train a corpus's reference evaluators (and export them as a shipped bundle).

    mema-train evaluators --dataset PATH [--seed 0] [--export DIR]

    mema-train rofi --dataset mini --output_dir runs/rofi-train [--seed 0] [--mixed_precision fp16]
                    [--identity_steps N] [--detector_steps N] [--translator_steps N] [--translator_depth 6]

Stages (each resumes from its latest checkpoint in OUTPUT_DIR/checkpoints after a kill; a finished
stage is skipped): identity (the training-only identity network, not an evaluation recogniser),
detector (weakly supervised sign detector), translator (protector + restorer + critics). The output
folder is self-contained: config.json, train_log.jsonl, detector_eval.json, checkpoints/ and
rofi.pt (the inference weights, fp16), which ``mema-eval --method rofi`` uses with
``MEMA_ROFI_WEIGHTS=OUTPUT_DIR/rofi.pt``. Runs on GPUs through accelerate
(``accelerate launch -m mema.cli.train rofi ...``); on a CPU by default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mema import runtime


def build_parser() -> argparse.ArgumentParser:
    from mema.baselines.rofi.train import TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(prog="mema-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=["rofi", "evaluators"], help="what to train")
    p.add_argument("--dataset", default="mini", help="corpus folder or preset name (default mini)")
    p.add_argument("--output_dir", type=Path, help="rofi: the run folder (required)")
    p.add_argument("--export", type=Path, help="evaluators: also write the frozen bundle to this folder")
    p.add_argument("--device", default=None, help="evaluators: cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=d.seed)
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
    return p


def _train_evaluators(args) -> int:
    from mema.cli.data import resolve_dataset
    from mema.corpus.store import CorpusError, load_corpus
    from mema.evaluators.bundle import export_bundle
    from mema.evaluators.train_all import train_evaluators

    try:
        corpus = load_corpus(resolve_dataset(args.dataset))
    except CorpusError as exc:
        print(f"mema-train: {exc}", file=sys.stderr)
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
    if args.output_dir is None:
        print("mema-train rofi: --output_dir is required", file=sys.stderr)
        return 2
    from pydantic import ValidationError

    from mema.baselines.rofi.config import ROFIConfig
    from mema.baselines.rofi.train import TrainConfig
    from mema.cli.data import resolve_dataset
    from mema.corpus.store import CorpusError, load_corpus

    try:
        cfg = TrainConfig(
            seed=args.seed, mixed_precision=args.mixed_precision, identity_steps=args.identity_steps,
            detector_steps=args.detector_steps, translator_steps=args.translator_steps,
            translator_batch_size=args.translator_batch_size, learning_rate=args.learning_rate,
            checkpointing_steps=args.checkpointing_steps, rofi=ROFIConfig(translator_depth=args.translator_depth),
        )
    except ValidationError as exc:
        print(f"mema-train: bad option: {exc.errors()[0]['loc'][-1]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    root = resolve_dataset(args.dataset)
    try:
        corpus = load_corpus(root)
    except CorpusError as exc:
        hint = f" (build it: mema-data build {args.dataset})" if not root.exists() else ""
        print(f"mema-train: {exc}{hint}", file=sys.stderr)
        return 2
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    body = {"dataset": corpus.fingerprint, "limit": args.limit, "train": cfg.model_dump(mode="json")}
    if saved.exists() and json.loads(saved.read_text()) != body:
        print(f"mema-train: {out} holds a run with other settings (config.json); use a new --output_dir", file=sys.stderr)
        return 2
    saved.write_text(json.dumps(body, indent=1))
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
