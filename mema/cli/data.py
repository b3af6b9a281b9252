"""``mema-data``: build, verify and export corpora.

    mema-data build mini                 build (or reuse the cached) MeMa-mini
    mema-data verify PATH|mini           check a corpus and print a summary
    mema-data export-nnunet PATH|mini    write nnU-Net v2 raw format
    mema-data path mini                  print where a named corpus lives
    mema-data weights                    check every pretrained file in the weights manifest
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mema import runtime  # noqa: F401  (offline variables first)


REAL_TRACK = "real-faces"


def resolve_dataset(spec: str) -> Path:
    """A named corpus ('mini', 'tiny', 'real-faces') maps to its cache folder; anything else is a path."""
    from mema.generation.build import corpus_dir, default_root
    from mema.generation.presets import PRESETS

    if spec in PRESETS:
        return corpus_dir(PRESETS[spec])
    if spec == REAL_TRACK:
        from mema.generation.real_track import NAME, VERSION

        return default_root() / f"{NAME}-{VERSION}"
    return Path(spec)


def corpus_names() -> list[str]:
    from mema.generation.presets import PRESETS

    return sorted(PRESETS) + [REAL_TRACK]


def _cmd_build(args) -> int:
    from mema.generation.build import BuildError, build_corpus
    from mema.generation.presets import PRESETS

    if args.preset == REAL_TRACK:
        return _build_real_track(args)
    cfg = PRESETS[args.preset]
    if args.seed is not None:
        cfg = cfg.model_copy(update={"seed": args.seed})
    if args.record is not None and args.record.exists():
        print(f"mema-data build: {args.record} exists; choose a new file for the recorded plan", file=sys.stderr)
        return 2
    try:
        root = build_corpus(cfg, args.out, workers=args.workers, force=args.force, progress=not args.quiet,
                            live=args.live, record_to=args.record)
    except BuildError as exc:
        print(f"mema-data build: {exc}", file=sys.stderr)
        return 2
    from mema.corpus.registry import registered_hash
    from mema.corpus.store import load_info

    info = load_info(root)
    print(f"{info.name} {info.version}: {info.n_images} images in {root}")
    print(f"manifest sha256 {info.manifest_sha256}")
    expected = registered_hash(info.name, info.version)
    if args.seed is None and expected is not None and expected != info.manifest_sha256:
        print(f"mema-data build: this build differs from the registered {info.name} {info.version} ({expected[:12]}...); "
              "it can be scored, but not under the registered name", file=sys.stderr)
        return 1
    if args.export_card:
        _export_card(root, Path(args.export_card))
        print(f"data card copied to {args.export_card}")
    return 0


def _build_real_track(args) -> int:
    from mema.corpus.registry import registered_hash
    from mema.corpus.store import load_info
    from mema.generation.real_track import TrackError, build_real_faces

    if args.seed is not None or args.live or args.record is not None:
        print("mema-data build real-faces: --seed, --live and --record apply to the procedural corpora only", file=sys.stderr)
        return 2
    try:
        root = build_real_faces(args.out or resolve_dataset(REAL_TRACK), force=args.force, progress=not args.quiet)
    except TrackError as exc:
        print(f"mema-data build: {exc}", file=sys.stderr)
        return 2
    info = load_info(root)
    print(f"{info.name} {info.version}: {info.n_images} images in {root}")
    print(f"manifest sha256 {info.manifest_sha256}")
    if args.export_card:
        _export_card(root, Path(args.export_card))
    expected = registered_hash(info.name, info.version)
    if expected is not None and expected != info.manifest_sha256:
        print(f"mema-data build: this build differs from the registered {info.name} {info.version}", file=sys.stderr)
        return 1
    return 0


def _export_card(root: Path, dest: Path) -> None:
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    text = (root / "README.md").read_text()
    body = text.split("---\n", 2)[2] if text.startswith("---\n") else text  # drop the loader header
    (dest / "README.md").write_text(body)
    (dest / "card").mkdir(exist_ok=True)
    for png in sorted((root / "card").glob("*")):
        shutil.copy2(png, dest / "card" / png.name)
    shutil.copy2(root / "dataset.json", dest / "dataset.json")


def _cmd_verify(args) -> int:
    from mema.corpus.verify import format_report, report_json, verify_corpus

    report = verify_corpus(resolve_dataset(args.path), embedding_sample=args.embedding_sample, progress=not args.quiet)
    print(report_json(report) if args.json else format_report(report))
    return 0 if report.ok else 1


def _cmd_export(args) -> int:
    from mema.corpus.nnunet import export_nnunet
    from mema.corpus.store import CorpusError, load_corpus

    try:
        corpus = load_corpus(resolve_dataset(args.path))
        folder = export_nnunet(corpus, Path(args.out), dataset_id=args.dataset_id, name=args.name)
    except (CorpusError, ValueError) as exc:
        print(f"mema-data export-nnunet: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    return 0


def _cmd_path(args) -> int:
    print(resolve_dataset(args.name))
    return 0


def _cmd_weights(args) -> int:
    from mema.weights import check_all, load_manifest

    status = check_all()
    manifest = load_manifest()
    bad = 0
    for name, msg in status.items():
        e = manifest[name]
        flag = " [research-only]" if e.research_only else ""
        print(f"{'ok     ' if msg == 'ok' else 'MISSING'} {name:16s} {e.file} ({e.licence}){flag}")
        if msg != "ok":
            print(f"        {msg}")
            bad += 1
    from mema.weights.local import local_inputs

    for name, spec in local_inputs().items():  # never shipped: the user passes a path
        flag = " [research-only]" if spec.get("research_only") else ""
        print(f"path   {name:16s} {spec['flag']} ({spec['licence']}){flag}")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    from mema.generation.presets import PRESETS

    parser = argparse.ArgumentParser(prog="mema-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="build a procedural corpus (cached; resumes after a kill)")
    p.add_argument("preset", choices=sorted(PRESETS) + [REAL_TRACK],
                   help="mini: MeMa-mini (10,400 synthetic images); tiny: a few dozen, for tests; "
                        "real-faces: the real-face track (205 real photos, research-only)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: $MEMA_HOME/corpora/NAME-VERSION)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    p.add_argument("--force", action="store_true", help="delete an existing or partial build in the folder first")
    p.add_argument("--export-card", metavar="DIR", help="also copy the data card and grids to DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--live", action="store_true",
                   help="run the landmark and age/gender models instead of the shipped recorded plan (not the registered bytes)")
    p.add_argument("--record", type=Path, default=None, metavar="FILE",
                   help="run the models live and write what they answered to FILE (how a recorded plan is made)")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("verify", help="check files, hashes, schema and split disjointness")
    p.add_argument("path", help="corpus folder or a name (mini, tiny, real-faces)")
    p.add_argument("--embedding-sample", type=int, default=100, help="identities per split for the face-embedding check (0 skips, -1 all)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("export-nnunet", help="write the lesion-masked images in nnU-Net v2 raw format")
    p.add_argument("path", help="corpus folder or a preset name")
    p.add_argument("--out", required=True, help="nnUNet_raw folder to write Dataset{ID}_{NAME} into")
    p.add_argument("--dataset-id", type=int, default=501)
    p.add_argument("--name", default="MeMaSeg")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("path", help="print the folder of a named corpus")
    p.add_argument("name", choices=sorted(PRESETS) + [REAL_TRACK])
    p.set_defaults(func=_cmd_path)

    p = sub.add_parser("weights", help="check every file of the weights manifest (hash, licence)")
    p.set_defaults(func=_cmd_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a user-facing CLI: one clear line, the traceback only on request
        from mema.weights import WeightsError

        if isinstance(exc, WeightsError):
            print(f"mema-data: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
