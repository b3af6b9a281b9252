"""``mema-eval``: score a de-identification method on a MeMa corpus.

    mema-eval --method NAME [--dataset PATH|mini] [--tasks identity,classification,...] [--out DIR] [--key FILE]
    mema-eval ls

NAME is a built-in method (see ``mema-eval ls``), the name of a ``mema.methods`` entry point, or
``package.module:Class``. The run anonymizes the evaluation split (and, for reversible methods,
restores it with the right key and with a fixed wrong key), then measures:

  identity        per recogniser (sface, dlib-resnet): ID-Dis (L2 of unit embeddings, original vs
                  output), same-person rate under the threshold calibrated at --far on the val split,
                  rank-1 face matching against the gallery split and protection rate = 1 - rank-1,
                  TAR@FAR of outputs against their own gallery photo
  classification  frozen eye-crop reference classifier: top-1 (overall, per disease, by age band and
                  gender), macro AUROC, sensitivity/specificity, Cohen's kappa vs predictions on originals
  segmentation    frozen nnU-Net v2 (2D) lesion segmenter: Dice and Jaccard on outputs, on originals,
                  and their ratio (BCC/SCC images; empty reference and prediction -> NaN, nanmean)
  geometry        landmark error (eye, mouth, nose; / inter-ocular distance), geometric gaze error,
                  face-detected rate of outputs
  reversibility   PSNR, SSIM, restored ID-Dis and same-person rate, top-1 on restored, wrong-key protection
  key-security    optional, not in the default run (minutes per method; reversible methods only):
                  brute force (1,000 random keys x 8 images: keys whose restoration is judged the
                  original's person), universal key (a gradient-optimised key vector: protection rate
                  and PSNR on held-out images), BIM identity spoofing through the right key at L_inf
                  0.01/0.03/0.05 with and without a noise defence, key diversity (100 keys: pixel std,
                  identity cosine distance). Judged by SFace at its calibrated threshold; the last two
                  need the method's restore_tensor. Sizes: --key-security-config FILE (JSON fields of
                  mema.evaluation.attacks.KeySecurityConfig). Add it with --tasks ...,key-security

Every metric carries n and a 95% bootstrap CI (identities resampled). Output folder (default
runs/NAME): results.json, samples.jsonl (per-sample hashes and results), report.html, and the
images as PNG. An interrupted run resumes from the images already written. Reference evaluators
are trained or computed once per corpus and cached under $MEMA_HOME/evaluators.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mema import runtime


def _cmd_ls() -> int:
    from mema.methods import available, get_method

    for name, origin in available().items():
        try:
            info = get_method(name).info
            rev = "reversible" if info.reversible else "irreversible"
            print(f"{name:12s} {rev:12s} {origin:10s} {info.description}")
        except Exception as exc:  # an entry point that fails to load is listed, not fatal
            print(f"{name:12s} {'?':12s} {origin:10s} (cannot load: {exc})")
    return 0


def _key_security_config(path: Path | None):
    from pydantic import ValidationError

    from mema.evaluation.attacks import KeySecurityConfig

    if path is None:
        return KeySecurityConfig()
    try:
        return KeySecurityConfig.model_validate_json(path.read_text())
    except OSError as exc:
        raise ValueError(f"--key-security-config {path}: cannot read ({exc.strerror})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"--key-security-config {path}: {problems}") from None


def build_parser() -> argparse.ArgumentParser:
    from mema.evaluation.harness import DEFAULT_RECOGNISERS, OPTIONAL_TASKS, TASKS

    p = argparse.ArgumentParser(prog="mema-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["ls"], help="ls: list the available methods")
    p.add_argument("--method", help="method name, entry point or package.module:Class")
    p.add_argument("--dataset", default="mini", help="corpus folder or name: mini, tiny, real-faces (default: mini; built if missing)")
    p.add_argument("--split", default="test", choices=["test", "dev", "val"],
                   help="evaluation split (default test; dev for method development; val calibrates the evaluators and is refused)")
    p.add_argument("--tasks", default=",".join(TASKS),
                   help=f"comma-separated subset of {','.join(TASKS)} (default: all of these), plus optional {','.join(OPTIONAL_TASKS)}")
    p.add_argument("--recognisers", default=",".join(DEFAULT_RECOGNISERS),
                   help="comma-separated zoo (sface, dlib-resnet, periocular, periocular-sface; arcface/facenet with local weights)")
    p.add_argument("--out", type=Path, help="output folder (default runs/METHOD)")
    p.add_argument("--key", type=Path, help="key file for reversible methods (default: the fixed evaluation key key_from_seed(7000000), so re-runs agree; only key ids are recorded)")
    p.add_argument("--limit", type=int, help="evaluate N samples: whole identities in a seeded order, so every class is present (smoke runs, ablations; recorded in results)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--far", type=float, default=0.01, help="false accept rate of the same-person threshold (0.01 or 0.001)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--key-security-config", type=Path, help="JSON file with attack sizes for the key-security task (see above)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "ls":
        return _cmd_ls()
    if not args.method:
        print("mema-eval: give --method NAME (see 'mema-eval ls') or the ls command", file=sys.stderr)
        return 2
    runtime.set_torch_threads()
    from mema.cli.data import resolve_dataset
    from mema.corpus.store import CorpusError, load_corpus
    from mema.evaluation.harness import EvalConfig, EvalError, Evaluation
    from mema.evaluation.integrity import IntegrityError
    from mema.evaluation.report import print_summary, write_report
    from mema.keys import KeyFileError, read_key
    from mema.methods import MethodError, get_method
    from mema.weights import WeightsError

    try:
        method = get_method(args.method)
        key = read_key(args.key) if args.key else None
        root = resolve_dataset(args.dataset)
        if args.split == "val":
            raise EvalError("split 'val' calibrates the reference evaluators and is never scored; use test (reported) or dev (development)")
        if not (root / "dataset.json").exists() and args.dataset in ("mini", "tiny", "real-faces"):
            print(f"building the {args.dataset} corpus first (cached afterwards)")
            if args.dataset == "real-faces":
                from mema.generation.real_track import build_real_faces

                build_real_faces(root, progress=not args.quiet)
            else:
                from mema.generation.build import build_corpus
                from mema.generation.presets import PRESETS

                build_corpus(PRESETS[args.dataset], root, progress=not args.quiet)
        corpus = load_corpus(root)
        cfg = EvalConfig(split=args.split, tasks=[t for t in args.tasks.split(",") if t], recognisers=[r for r in args.recognisers.split(",") if r],
                         batch_size=args.batch_size, limit=args.limit, seed=args.seed, far=args.far,
                         key_security=_key_security_config(args.key_security_config))
        out = args.out or Path("runs") / method.info.name
        evaluation = Evaluation(corpus, method, out, cfg, key, progress=not args.quiet, device=args.device or runtime.default_device())
        results = evaluation.run()
        write_report(out, results, evaluation)
    except (MethodError, KeyFileError, CorpusError, EvalError, IntegrityError, WeightsError, ValueError) as exc:
        print(f"mema-eval: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print_summary(results)
    print(f"wrote {out / 'results.json'}, {out / 'samples.jsonl'}, {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
