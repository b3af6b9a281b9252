"""``mema-leaderboard verify ENTRY``: re-run the method with ``mema-eval`` and compare figures.

The re-run uses the entry's recorded evaluation config (split, tasks, recognisers, FAR, seed) on
the same corpus version (checked by manifest hash). Reversible methods run under a fresh key, so
figures agree only within the tolerances below, which are also what a different machine's
nnU-Net or classifier float noise needs. The outcome is a new file in ``verifications/``; the
entry itself is never edited.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from .board import Board, BoardError
from .schema import Entry, Verification, is_board_metric

# (pattern, absolute tolerance); first match wins.
TOLERANCES = (
    (r"^privacy\.(worst_case_protection(_face)?|protection\.[a-z0-9][a-z0-9_.-]*)$", 0.03),
    (r"\.face_detected_rate$", 0.03),
    (r"^gate\.realism$", 0.05),
    (r"\.id_dis$", 0.03),
    (r"\.(protection_rate|same_person_rate|same_person_rate_restored|wrong_key_protection_rate)$", 0.03),
    (r"\.(top1|top1_original|auroc_macro|sensitivity)$", 0.03),
    (r"\.kappa_vs_original$", 0.05),
    (r"\.(dice|dice_original|dice_ratio)$", 0.05),
    (r"\.landmark_error_\w+$", 0.02),
    (r"\.gaze_\w+_error$", 1.0),
    (r"\.psnr$", 1.0),
    (r"\.ssim$", 0.02),
)


def tolerance(metric: str) -> float:
    for pattern, tol in TOLERANCES:
        if re.search(pattern, metric):
            return tol
    raise KeyError(metric)


def compare(entry: Entry, measured: dict[str, float | None]) -> list[str]:
    """Differences beyond tolerance between an entry's claimed board figures and a re-run."""
    diffs = []
    for name in sorted(k for k in entry.metrics if is_board_metric(k)):
        claimed, got = entry.metrics[name].value, measured.get(name)
        if claimed is None and got is None:
            continue
        if claimed is None or got is None:
            diffs.append(f"{name}: claimed {claimed}, re-run {got}")
        elif abs(claimed - got) > tolerance(name):
            diffs.append(f"{name}: claimed {claimed:.4f}, re-run {got:.4f} (|diff| {abs(claimed - got):.4f} > {tolerance(name)})")
    return diffs


def _corpus_root(entry: Entry, dataset: str | None, progress: bool) -> Path:
    from mema.cli.data import resolve_dataset
    from mema.generation.build import build_corpus
    from mema.generation.presets import PRESETS

    if dataset:
        return resolve_dataset(dataset)
    from mema.generation.real_track import NAME as REAL_NAME
    from mema.generation.real_track import VERSION as REAL_VERSION

    if (entry.corpus.name, entry.corpus.version) == (REAL_NAME, REAL_VERSION):
        from mema.cli.data import REAL_TRACK
        from mema.generation.real_track import build_real_faces

        return build_real_faces(resolve_dataset(REAL_TRACK), progress=progress)  # reused when already built
    preset = next((k for k, cfg in PRESETS.items() if cfg.name == entry.corpus.name and cfg.version == entry.corpus.version), None)
    if preset is None:
        raise BoardError(f"corpus {entry.corpus.name} {entry.corpus.version} is not a built-in preset; give --dataset PATH")
    root = resolve_dataset(preset)
    if not (root / "dataset.json").exists():
        print(f"building the {preset} corpus first (cached afterwards)")
        build_corpus(PRESETS[preset], root, progress=progress)
    return root


def verify_entry(board: Board, entry_file: str, *, out: Path, method_spec: str | None = None, dataset: str | None = None,
                 progress: bool = True, device: str = "cpu") -> Verification:
    from mema.corpus.store import load_corpus
    from mema.evaluation.harness import EvalConfig, Evaluation
    from mema.evaluation.results import SUITE_VERSION
    from mema.methods import get_method

    rel = _entry_rel(board, entry_file)
    item = next(i for i in board.index().entries if i.file == rel)
    entry = board.load_entry(rel)
    corpus = load_corpus(_corpus_root(entry, dataset, progress))
    if corpus.info.manifest_sha256 != entry.corpus.manifest_sha256:
        raise BoardError(f"the corpus at hand ({corpus.info.name} {corpus.info.version}, {corpus.info.manifest_sha256[:12]}...) "
                         f"is not the entry's ({entry.corpus.manifest_sha256[:12]}...)")
    method = get_method(method_spec or entry.method.name)
    diffs = []
    if method.info.version != entry.method.version:
        diffs.append(f"method version: entry {entry.method.version}, installed {method.info.version}")
    cfg = EvalConfig(**{k: v for k, v in entry.config.items() if k in EvalConfig.model_fields})
    results = Evaluation(corpus, method, out, cfg, progress=progress, device=device).run()
    measured = {k: m.value for k, m in results.metrics.items() if is_board_metric(k)}
    diffs += compare(entry, measured)
    v = Verification(
        entry=rel, entry_sha256=item.sha256, status="mismatch" if diffs else "verified",
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), suite_version=SUITE_VERSION,
        git_hash=results.git_hash, differences=diffs,
        tolerances={k: tolerance(k) for k in entry.metrics if is_board_metric(k)}, measured=measured,
    )
    board.add_verification(v)
    return v


def _entry_rel(board: Board, spec: str) -> str:
    """An entry by its index path, file name or stem."""
    items = board.index().entries
    for cand in (spec, f"entries/{spec}", f"entries/{spec}.json", f"entries/{Path(spec).name}"):
        if any(i.file == cand for i in items):
            return cand
    active = ", ".join(Path(i.file).stem for i in items if i.status == "active")
    raise BoardError(f"no entry {spec!r} on the board (active: {active or 'none'})")
