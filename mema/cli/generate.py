"""``mema-generate``: regenerate a MeMa-style corpus from a real patient set, one stage per command.

    mema-generate finetune --pretrained_model_name_or_path SD15 --train_data_dir REAL --output_dir lora/
    mema-generate sample   --pretrained_model_name_or_path SD15 --lora_dir lora/ --ip_adapter IPA \
                           --reference_faces FACES --num_samples 4000 --output_dir samples/ [--shard i/n]
                           [--face_injection faceid --ip_adapter_faceid DIR --arcface_onnx FILE]   (research-only weights)
                           [--backend procedural|dcgan --real_stats stats/real_stats.json]      (offline backends)
    mema-generate filter   --samples samples/ --train_data_dir REAL --output_dir filtered/ [--holdout arcface=FILE.onnx]
    mema-generate review export --samples samples/ --filter filtered/ --output_dir review/
    mema-generate review import --review review/ [--decisions reviewed.csv]
    mema-generate card     --samples samples/ --filter filtered/ [--review review/] --output_dir corpus/
                           [--train_data_dir REAL [--classifier DIR]]   (age, gender and signs measured on the images)
                           [--labels intended]                          (required for --backend dcgan: it draws no signs)
    mema-generate stats    --train_data_dir REAL --output_dir stats/   (distributions only; for the offline backends)
    mema-generate reference-faces --output_dir faces/ --num_faces 200     (offline DCGAN faces, age/gender labelled)
    mema-generate tiny-weights --output_dir w/      (random tiny SD + IP-Adapter, for tests and dry runs)

Every stage writes a self-contained folder with ``stage.json``; see docs/generation.md.
"""

from __future__ import annotations

import argparse
import sys

from mema import runtime  # noqa: F401  (offline variables first)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mema-generate", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True)

    from mema.generation.diffusion import finetune, sample
    from mema.generation import datacard, leakage, reference_faces, review

    from mema.generation import real_set

    p = sub.add_parser("stats", help="check the real set and write its disease/age/gender distributions")
    real_set.add_stats_arguments(p)
    p.set_defaults(func=real_set.run_stats)
    p = sub.add_parser("finetune", help="LoRA-finetune SD 1.5 on the real set")
    finetune.add_arguments(p)
    p.set_defaults(func=finetune.run)
    p = sub.add_parser("sample", help="real-guided sampling with IP-Adapter face injection")
    sample.add_arguments(p)
    p.set_defaults(func=sample.run)
    p = sub.add_parser("filter", help="drop samples within the same-person threshold of any real patient (held-out recognisers only measure)")
    leakage.add_arguments(p)
    p.set_defaults(func=leakage.run)
    p = sub.add_parser("review", help="physician review sheet: export, then import decisions")
    review.add_arguments(p)
    p = sub.add_parser("card", help="write the corpus with a data card generated from the run's records, measured attributes and Croissant")
    datacard.add_arguments(p)
    p.set_defaults(func=datacard.run)
    p = sub.add_parser("reference-faces", help="write offline DCGAN reference faces with age/gender labels")
    reference_faces.add_arguments(p)
    p.set_defaults(func=reference_faces.run)
    p = sub.add_parser("tiny-weights", help="write tiny random SD 1.5 + IP-Adapter weights (tests, dry runs)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_tiny)
    return ap


def _tiny(args):
    from mema.generation.diffusion.tiny import write_tiny_weights

    for k, v in write_tiny_weights(args.output_dir, args.seed).items():
        print(f"--{k} {v}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runtime.set_torch_threads()
    import os

    from mema.generation.real_set import RealSetError
    from mema.generation.stage import StageError
    from mema.weights import WeightsError

    try:
        args.func(args)
    except (StageError, RealSetError, WeightsError, FileNotFoundError) as exc:
        if os.environ.get("MEMA_DEBUG"):
            raise
        print(f"mema-generate {args.stage}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
