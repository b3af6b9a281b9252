"""``mema-leaderboard validate``: every check a submission pull request must pass.

Per entry: the schema (unknown fields, ranges, n > 0, corpus hash of the named version), the
sha256 recorded in ``index.json``, the file name against the entry's method and corpus, and the
figures against the results.json it was made from (byte hash and values). Across the board: no
unlisted files, one active entry per method and corpus version, supersede links that resolve,
verifications that point at a listed entry. Against earlier versions of ``index.json`` (every
commit that touched it, read with a pathspec from the repository's top so it works from any
folder): nothing listed before may disappear or change, and a superseded entry never becomes
active again. A checkout that yields no such history (not a git checkout, a shallow clone, an
index never committed) fails the check unless the caller says the history is unavailable.
The rendered files (``LEADERBOARD.md``, ``index.html``, the README's board block) must equal what
``render`` writes now.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from .board import Board, BoardError, entry_from_results, explain, load_results, sha256_file
from .schema import Index


def _check_entry(board: Board, item, problems: list[str]) -> None:
    path = board.root / item.file
    if not path.exists():
        problems.append(f"{item.file}: listed in index.json but missing (entries may be superseded, never removed)")
        return
    actual = sha256_file(path)
    if actual != item.sha256:
        problems.append(f"{item.file}: sha256 {actual[:12]}... differs from index.json ({item.sha256[:12]}...): the entry was edited after submission")
    try:
        entry = board.load_entry(item.file)
    except BoardError as exc:
        problems.append(str(exc))
        return
    expected_dir = "entries" if item.status == "active" else "entries/superseded"
    stem = Path(entry.file_name).stem
    if str(Path(item.file).parent) != expected_dir or not Path(item.file).name.startswith(stem + ("" if item.status == "active" else "__")):
        problems.append(f"{item.file}: file name does not match its method {entry.method.name!r} and corpus "
                        f"{entry.corpus.name}-{entry.corpus.version} (expected {expected_dir}/{entry.file_name})")
    res_path = board.results_file(item.file)
    if not res_path.exists():
        problems.append(f"{item.file}: its results file {res_path.relative_to(board.root)} is missing")
        return
    if sha256_file(res_path) != entry.results_sha256:
        problems.append(f"{item.file}: results file hash differs from the entry's results_sha256")
        return
    try:
        results, raw = load_results(res_path)
        rebuilt = entry_from_results(results, raw, submitted=entry.submitted)
    except BoardError as exc:
        problems.append(f"{item.file}: {exc}")
        return
    for field in ("corpus", "split", "n_samples", "tasks", "suite_version", "git_hash"):
        if getattr(rebuilt, field) != getattr(entry, field):
            problems.append(f"{item.file}: {field} differs from its results.json")
    for key in ("name", "version", "reversible", "key_scheme", "params"):
        if getattr(rebuilt.method, key) != getattr(entry.method, key):
            problems.append(f"{item.file}: method.{key} differs from its results.json")
    if set(rebuilt.metrics) != set(entry.metrics):
        problems.append(f"{item.file}: metric names differ from its results.json "
                        f"(missing {sorted(set(rebuilt.metrics) - set(entry.metrics))}, extra {sorted(set(entry.metrics) - set(rebuilt.metrics))})")
    for name in sorted(set(rebuilt.metrics) & set(entry.metrics)):
        if rebuilt.metrics[name] != entry.metrics[name]:
            problems.append(f"{item.file}: metric {name} = {entry.metrics[name].value} differs from its results.json "
                            f"({rebuilt.metrics[name].value})")
    if rebuilt.breakdowns != entry.breakdowns:
        problems.append(f"{item.file}: breakdowns differ from its results.json")


def validate_board(board: Board, previous: list[Index] | None = None) -> list[str]:
    """All problems found (empty when the board is sound)."""
    problems: list[str] = []
    try:
        index = board.index()
    except BoardError as exc:
        return [str(exc)]
    files = Counter(i.file for i in index.entries)
    problems += [f"{f}: listed {n} times in index.json" for f, n in files.items() if n > 1]
    for item in index.entries:
        _check_entry(board, item, problems)

    listed = {i.file for i in index.entries}
    for path in sorted(board.entries_dir.rglob("*.json")) if board.entries_dir.exists() else []:
        rel = str(path.relative_to(board.root))
        if rel not in listed:
            problems.append(f"{rel}: not listed in index.json (add entries with `mema-leaderboard submit`, not by hand)")

    active_keys = Counter()
    for item in index.entries:
        if item.status == "active" and (board.root / item.file).exists():
            try:
                e = board.load_entry(item.file)
                active_keys[(e.method.name, e.corpus.name, e.corpus.version)] += 1
            except BoardError:
                pass
        if item.status == "superseded" and item.superseded_by not in listed:
            problems.append(f"{item.file}: superseded by {item.superseded_by!r}, which is not listed")
        if item.status == "active" and item.superseded_by is not None:
            problems.append(f"{item.file}: active but names a superseding entry")
    problems += [f"duplicate method name: {m!r} has {n} active entries on {c}-{v}" for (m, c, v), n in active_keys.items() if n > 1]

    shas = {i.sha256 for i in index.entries}
    try:
        for v in board.verifications():
            if v.entry_sha256 not in shas:
                problems.append(f"verification of {v.entry}: its entry_sha256 matches no listed entry")
    except BoardError as exc:
        problems.append(str(exc))

    for prev in previous or []:
        problems += compare_with_previous(prev, index)
    return problems


def compare_with_previous(previous: Index, current: Index) -> list[str]:
    """Entries may be added or superseded, never removed or changed."""
    problems = []
    now = {i.sha256: i for i in current.entries}
    for item in previous.entries:
        cur = now.get(item.sha256)
        if cur is None:
            problems.append(f"{item.file} (sha256 {item.sha256[:12]}...) was listed before and is gone or changed: entries are never removed")
        elif item.status == "superseded" and cur.status == "active":
            problems.append(f"{item.file}: a superseded entry became active again")
    return problems


class HistoryUnavailable(BoardError):
    """The checkout cannot show the committed versions of index.json; the message says why."""


NO_HISTORY_HINT = ("the history check needs a full git clone (git fetch --unshallow, or clone without --depth); "
                   "pass --no-history only where the history is really unavailable")


def git_index_history(board: Board) -> list[tuple[str, Index]]:
    """Every committed version of ``index.json``, newest first.

    Git runs in the repository's top folder with a ``:(top,literal)`` pathspec, so the result does not
    depend on the folder it is asked from. Raises :class:`HistoryUnavailable` when there is no history
    to compare with: a silent empty answer would let any edit of the board pass.
    """
    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout

    where = board.root.resolve()
    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=where).strip()).resolve()
        shallow = git("rev-parse", "--is-shallow-repository", cwd=top).strip() == "true"
    except FileNotFoundError:
        raise HistoryUnavailable(f"git is not installed, so the history of {board.index_path} cannot be read; {NO_HISTORY_HINT}") from None
    except subprocess.CalledProcessError:
        raise HistoryUnavailable(f"{where} is not inside a git checkout, so index.json has no history to compare with; {NO_HISTORY_HINT}") from None
    if shallow:
        raise HistoryUnavailable(f"{top} is a shallow clone: the older versions of index.json are missing; {NO_HISTORY_HINT}")
    try:
        rel = board.index_path.resolve().relative_to(top).as_posix()
    except ValueError:
        raise HistoryUnavailable(f"{board.index_path} is outside the git checkout {top}; {NO_HISTORY_HINT}") from None
    try:
        revs = git("log", "--format=%H", "--", f":(top,literal){rel}", cwd=top).split()
    except subprocess.CalledProcessError:  # e.g. a repository without any commit yet
        revs = []
    if not revs:
        raise HistoryUnavailable(f"no commit of {rel} in {top}: commit the board first; {NO_HISTORY_HINT}")
    out = []
    for rev in revs:
        try:
            text = git("show", f"{rev}:{rel}", cwd=top)
        except subprocess.CalledProcessError:
            continue  # the commit deleted the file; the next older version is still compared
        try:
            out.append((rev, Index.model_validate_json(text)))
        except ValidationError as exc:
            raise BoardError(f"index.json at {rev[:10]}: {explain(exc)}") from None
    return out


def history_problems(history: list[tuple[str, Index]]) -> list[str]:
    """Each committed index.json against the one before it."""
    problems = []
    for (rev, newer), (_, older) in zip(history, history[1:]):
        problems += [f"commit {rev[:10]}: {p}" for p in compare_with_previous(older, newer)]
    return problems



def rendered_problems(board: Board, readme: Path | None = None) -> list[str]:
    """``LEADERBOARD.md``, ``index.html`` and (when given) the README block must be what ``render`` writes now."""
    from .render import MARK_END, MARK_START, render_html, render_markdown

    fix = "run `mema-leaderboard render" + (f" --readme {readme}" if readme else "") + "` and commit the result"
    problems = []
    markdown = render_markdown(board)
    for name, want in (("LEADERBOARD.md", markdown), ("index.html", render_html(board))):
        path = board.root / name
        if not path.exists():
            problems.append(f"{name}: missing; {fix}")
        elif path.read_text() != want:
            problems.append(f"{name}: stale (differs from what render writes for the current entries); {fix}")
    if readme is not None:
        text = readme.read_text() if readme.exists() else ""
        if MARK_START not in text or MARK_END not in text:
            problems.append(f"{readme}: no {MARK_START} ... {MARK_END} block")
        elif text.split(MARK_START, 1)[1].split(MARK_END, 1)[0] != "\n" + markdown:
            problems.append(f"{readme}: the leaderboard table is stale; {fix}")
    return problems


def default_readme(board: Board) -> Path | None:
    """The README beside the board folder when it carries the board block (the repository's layout)."""
    from .render import MARK_START

    readme = board.root.parent / "README.md"
    return readme if readme.exists() and MARK_START in readme.read_text() else None
