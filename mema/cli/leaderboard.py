"""``mema-leaderboard``: submit, validate, verify and render the MeMa leaderboard.

    mema-leaderboard submit RESULTS [--paper TEXT] [--code-url URL] [--licence SPDX] [--trained-on TEXT]
                                    [--adaptive NAME=RESULTS ...]
    mema-leaderboard validate [BOARD] [--previous INDEX.json] [--readme README.md] [--no-history]
    mema-leaderboard verify ENTRY [--method SPEC] [--dataset PATH|mini] [--out DIR]
    mema-leaderboard render [--out DIR] [--readme README.md]
    mema-leaderboard check-html [PAGE]

submit    turns a mema-eval results.json into leaderboard/entries/<method>__<corpus>-<version>.json
          (method card from the method's metadata plus the flags), stores the results file beside it
          and lists both in index.json; a newer result for the same method and corpus supersedes.
          --adaptive adds the identity figures of a run under a stronger attacker (the board shows
          the worst case).
validate  checks every entry (schema, ranges, hashes, figures against their results.json), that
          nothing listed in an earlier index.json (every committed version, and --previous) was removed
          or changed, and that LEADERBOARD.md, index.html and the README block are what render writes.
          A checkout without that history (not git, shallow, never committed) fails unless --no-history.
verify    re-runs the entry's method with mema-eval under the entry's config and records
          verified/mismatch in leaderboard/verifications/ (tolerances: docs/leaderboard.md).
render    writes LEADERBOARD.md and index.html (self-contained; opens from file://) and, with
          --readme, replaces the block between <!-- leaderboard:start --> and <!-- leaderboard:end -->.
check-html  loads the page in headless Chromium and checks the tables sort, the plots are drawn and
          every text lies inside its box (no label overlaps another).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mema import runtime

def _board(args):
    from mema.leaderboard.board import BOARD_DIR, Board

    return Board(args.board or BOARD_DIR)


def _cmd_submit(args) -> int:
    from mema.leaderboard.board import adaptive_from_results, entry_from_results, load_results

    board = _board(args)
    results, raw = load_results(args.results)
    adaptive = []
    for spec in args.adaptive or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adaptive takes NAME=RESULTS, got {spec!r}")
        res, _ = load_results(Path(path))
        if res.corpus.manifest_sha256 != results.corpus.manifest_sha256 or res.method.get("name") != results.method.get("name"):
            raise ValueError(f"--adaptive {name}: that run is of another method or corpus")
        recs = ", ".join((res.config or {}).get("recognisers", []))
        adaptive.append(adaptive_from_results(name, f"identity attack with {recs or 'its recognisers'}", res))
    card = {"paper": args.paper, "code_url": args.code_url, "licence": args.licence, "trained_on": args.trained_on}
    entry = entry_from_results(results, raw, card, adaptive)
    rel = board.submit(entry, raw)
    entry = board.load_entry(rel)
    print(f"added {rel} (corpus {entry.corpus.name} {entry.corpus.version}, n = {entry.n_samples})"
          + (f"; it supersedes {entry.supersedes}" if entry.supersedes else ""))
    print("next: mema-leaderboard render --readme README.md && mema-leaderboard validate, then open a pull request")
    return 0


def _cmd_validate(args) -> int:
    from pydantic import ValidationError

    from mema.leaderboard.board import explain
    from mema.leaderboard.schema import Index
    from mema.leaderboard.validate import (HistoryUnavailable, default_readme, git_index_history, history_problems,
                                           rendered_problems, validate_board)

    board = _board(args)
    previous, problems, history = [], [], []
    if args.previous:
        try:
            previous.append(Index.model_validate_json(Path(args.previous).read_bytes()))
        except ValidationError as exc:
            raise ValueError(f"--previous {args.previous}: {explain(exc)}") from None
    if not args.no_history:
        try:
            history = git_index_history(board)
        except HistoryUnavailable as exc:
            problems.append(f"history: {exc}")
        else:
            previous.append(history[0][1])  # the working tree against the last commit
            problems += history_problems(history)
    problems += validate_board(board, previous)
    problems += rendered_problems(board, args.readme or default_readme(board))
    n = len(board.index().entries)
    if problems:
        print(f"mema-leaderboard validate: {len(problems)} problem(s) in {board.root}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    checked = (f"nothing removed or changed across {len(history)} committed index version(s)" if history
               else "history NOT checked (--no-history)")
    print(f"{board.root}: {n} entries listed, all valid; {checked}; rendered files current")
    return 0


def _cmd_verify(args) -> int:
    from mema.leaderboard.verify import verify_entry

    runtime.set_torch_threads()
    board = _board(args)
    out = args.out or Path("runs") / "verify" / Path(args.entry).stem
    v = verify_entry(board, args.entry, out=out, method_spec=args.method, dataset=args.dataset,
                     progress=not args.quiet, device=args.device or runtime.default_device())
    print(f"{v.entry}: {v.status}")
    for d in v.differences:
        print(f"  - {d}")
    return 0 if v.status == "verified" else 1


def _cmd_render(args) -> int:
    from mema.leaderboard.render import render, render_markdown, splice_readme

    board = _board(args)
    md, page = render(board, args.out or board.root)
    if args.readme:
        splice_readme(args.readme, render_markdown(board))
    print(f"wrote {md} and {page}" + (f"; updated {args.readme}" if args.readme else ""))
    return 0


def _cmd_check_html(args) -> int:
    from mema.leaderboard.browser import check_page

    board = _board(args)
    page = args.page or board.root / "index.html"
    if not page.exists():
        raise ValueError(f"{page} does not exist (run mema-leaderboard render first)")
    info = check_page(page, args.sort)
    print(f"{page}: rendered in headless Chromium; {info['rows']} rows in {info['tables']} table(s), "
          f"{info['points']} plot points, every text inside its box; order by {args.sort}: {info['order']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mema-leaderboard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", type=Path, help="board folder (default: the leaderboard/ folder of this checkout)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="add a results.json to the board")
    s.add_argument("results", type=Path)
    s.add_argument("--paper", help="citation or URL of the method's paper")
    s.add_argument("--code-url", help="where the method's code lives")
    s.add_argument("--licence", help="the method's licence (SPDX id); default: its metadata")
    s.add_argument("--trained-on", help="what data the method was trained on")
    s.add_argument("--adaptive", action="append", metavar="NAME=RESULTS", help="results of the same method under a stronger attacker")
    s.set_defaults(fn=_cmd_submit)
    v = sub.add_parser("validate", help="check every entry and that nothing was removed")
    v.add_argument("board_path", nargs="?", type=Path, help="board folder (same as --board)")
    v.add_argument("--previous", type=Path, help="an earlier index.json to compare with")
    v.add_argument("--readme", type=Path, help="README whose board block must be current (default: README.md beside the board, when it has the block)")
    v.add_argument("--no-history", action="store_true",
                   help="this copy has no git history of index.json (shallow clone, tarball): skip that comparison (CI must not)")
    v.set_defaults(fn=_cmd_validate)
    r = sub.add_parser("verify", help="re-run an entry's method and record verified/mismatch")
    r.add_argument("entry", help="entry file name or stem, e.g. mosaic__mema-mini-1.0")
    r.add_argument("--method", help="method spec if not registered under the entry's name")
    r.add_argument("--dataset", help="corpus folder (default: the entry's registered corpus, mini, tiny or real-faces, built if missing)")
    r.add_argument("--out", type=Path, help="mema-eval output folder (default runs/verify/ENTRY)")
    r.add_argument("--device", default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(fn=_cmd_verify)
    d = sub.add_parser("render", help="write LEADERBOARD.md and index.html")
    d.add_argument("--out", type=Path, help="output folder (default: the board folder)")
    d.add_argument("--readme", type=Path, help="README to update between the leaderboard markers")
    d.set_defaults(fn=_cmd_render)
    c = sub.add_parser("check-html", help="check the rendered page in headless Chromium")
    c.add_argument("page", nargs="?", type=Path)
    c.add_argument("--sort", default="kappa", help="column to sort by in the check (default kappa)")
    c.set_defaults(fn=_cmd_check_html)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "board_path", None):
        args.board = args.board_path
    from mema.corpus.store import CorpusError
    from mema.leaderboard.board import BoardError
    from mema.methods import MethodError
    from mema.weights import WeightsError

    try:
        return args.fn(args)
    except (BoardError, CorpusError, MethodError, WeightsError, ValueError, FileNotFoundError, AssertionError, RuntimeError) as exc:
        print(f"mema-leaderboard {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
