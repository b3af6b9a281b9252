"""Leaderboard: submit, validate (tampering, forged and deleted entries caught by the git history),
rendered files against ``render``, sections per suite version, the face-presence categories and the
worst case, and verify by re-running.

Most boards here are made of synthetic results objects (tests/board_fixtures.py: the board only reads
results files). The verify test uses real mema-eval runs on the tiny corpus (a pipeline-test size).
"""

import json
import shutil
import subprocess
import sys

import pytest

from mema.corpus.store import load_corpus, load_info
from mema.evaluation.harness import EvalConfig, Evaluation
from mema.evaluation.results import Metric, Results
from mema.leaderboard import schema as schema_mod
from mema.leaderboard.board import BOARD_DIR, CARD_FIELDS, Board, BoardError, adaptive_from_results, entry_from_results, load_results
from mema.leaderboard.render import collect, render, render_markdown, splice_readme
from mema.leaderboard.schema import Entry, Index, Verification, known_corpora
from mema.leaderboard.validate import (HistoryUnavailable, compare_with_previous, default_readme, git_index_history, history_problems,
                                       rendered_problems, validate_board)
from mema.leaderboard.verify import compare, tolerance, verify_entry
from mema.methods import get_method
from tests import board_fixtures as bf

M = "mosaic__mema-tiny-2.0.json"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mema.cli.leaderboard", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def board(tmp_path):
    return bf.make_board(tmp_path / "board", [bf.legacy("identity", 0.03, 0.13, 1.0, 0.99), bf.legacy("mosaic", 0.97, 0.99, 0.05, 0.08)])


def test_tiny_corpus_hash_is_the_registered_one(tiny_corpus):
    # The presets are seeded builds; the board names each version by this hash.
    info = load_info(tiny_corpus)
    assert known_corpora()[info.name][info.version] == info.manifest_sha256


def test_submit_render_and_validate(board):
    assert validate_board(board) == []
    index = board.index()
    assert [i.file for i in index.entries] == ["entries/identity__mema-tiny-2.0.json", f"entries/{M}"]
    entry = board.load_entry(f"entries/{M}")
    assert entry.method.code_url == "https://example.org/mosaic"
    r = _cli("--board", str(board.root), "validate", "--no-history")
    assert r.returncode == 1 and "LEADERBOARD.md: missing" in r.stderr and "index.html: missing" in r.stderr
    assert _cli("--board", str(board.root), "render").returncode == 0
    r = _cli("--board", str(board.root), "validate", "--no-history")
    assert r.returncode == 0 and "2 entries listed, all valid; history NOT checked" in r.stdout, r.stderr


def test_resubmitting_supersedes_and_keeps_the_old_entry(board, tmp_path):
    before = board.index()
    newer = tmp_path / "results.json"
    newer.write_bytes(bf.raw(bf.legacy("mosaic", 0.96, 0.99, 0.05, 0.08, created="2030-01-01T00:00:00+00:00")))
    r = _cli("--board", str(board.root), "submit", str(newer))
    assert r.returncode == 0 and "supersedes entries/superseded/mosaic__mema-tiny-2.0__" in r.stdout, r.stderr
    assert validate_board(board, previous=[before]) == []
    items = board.index().entries
    assert [i.status for i in items].count("superseded") == 1 and len(items) == 3
    again = _cli("--board", str(board.root), "submit", str(newer))
    assert again.returncode == 2 and "already carries this results.json" in again.stderr


def _rewrite_entry(board, name, fn, update_index=True):
    path = board.root / "entries" / name
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data, indent=2) + "\n")
    if update_index:  # a careful tamperer also fixes the hash in index.json
        index = json.loads(board.index_path.read_text())
        for item in index["entries"]:
            if item["file"] == f"entries/{name}":
                item["sha256"] = bf.sha(path)
        board.index_path.write_text(json.dumps(index, indent=2))


def _set(d, path, value):
    *head, last = path
    for k in head:
        d = d[k]
    d[last] = value


TAMPERS = {
    "changed metric, index untouched": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["metrics", "classification.top1", "value"], 0.99), False),
                                        "edited after submission"),
    "changed metric, index re-hashed": (lambda b: _rewrite_entry(b, M, lambda d: d["metrics"]["identity.sface.protection_rate"].update(value=1.0, ci95=None)),
                                        "differs from its results.json"),
    "metric out of range": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["metrics", "classification.kappa_vs_original", "value"], 1.7)),
                            "outside its range"),
    "n of zero": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["metrics", "classification.top1", "n"], 0)), "n = 0"),
    "changed corpus hash": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["corpus", "manifest_sha256"], "0" * 64)),
                            "does not match mema-tiny 2.0"),
    "unknown corpus version": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["corpus", "version"], "9.9")), "no version '9.9'"),
    "extra field": (lambda b: _rewrite_entry(b, M, lambda d: d.update(leaderboard_rank=1)), "unknown field"),
    "extra method field": (lambda b: _rewrite_entry(b, M, lambda d: d["method"].update(gpu="A100")), "unknown field"),
    "duplicate method name": (lambda b: _duplicate(b), "duplicate method name"),
    "unlisted entry file": (lambda b: shutil.copy(b.root / "entries" / M, b.root / "entries" / "blur__mema-tiny-2.0.json"),
                            "not listed in index.json"),
    "entry removed": (lambda b: _remove(b), "never removed"),
    "results file changed": (lambda b: (b.results_dir / M).write_text((b.results_dir / M).read_text().replace('"created"', '"created" ', 1)),
                             "results file hash differs"),
    "reversibility claimed without figures": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["method", "reversible"], True)),
                                              "must carry reversibility figures"),
}


def _duplicate(b):
    # The same method listed twice under another file name; the file name check and the duplicate check both fire.
    src = b.root / "entries" / M
    dst = b.root / "entries" / "mosaic-v2__mema-tiny-2.0.json"
    shutil.copy(src, dst)
    shutil.copy(b.results_dir / M, b.results_dir / dst.name)
    index = json.loads(b.index_path.read_text())
    index["entries"].append({"file": f"entries/{dst.name}", "sha256": bf.sha(dst), "status": "active", "superseded_by": None})
    b.index_path.write_text(json.dumps(index))


def _remove(b, name=M):
    """Delete an entry with everything that points at it, as a careful deleter would."""
    (b.root / "entries" / name).unlink()
    (b.results_dir / name).unlink()
    for v in b.verifications_dir.glob(f"{name.removesuffix('.json')}__*.json"):
        v.unlink()
    index = json.loads(b.index_path.read_text())
    index["entries"] = [i for i in index["entries"] if i["file"] != f"entries/{name}"]
    b.index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_entries_are_rejected(board, name):
    previous = board.index()
    tamper, expected = TAMPERS[name]
    tamper(board)
    problems = validate_board(board, previous=[previous])
    assert problems, f"{name}: not detected"
    assert any(expected in p for p in problems), problems
    prev_file = board.root.parent / "previous.json"
    prev_file.write_text(previous.model_dump_json())
    r = _cli("--board", str(board.root), "validate", "--no-history", "--previous", str(prev_file))
    assert r.returncode != 0


def test_results_of_another_schema_are_refused(tmp_path):
    data = json.loads(bf.raw(bf.legacy("mosaic", 0.97, 0.99, 0.05, 0.08)))
    data["schema_version"] = 0
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    with pytest.raises(BoardError, match="results schema version 0 is not supported"):
        load_results(old)
    r = _cli("--board", str(tmp_path / "b"), "submit", str(old))
    assert r.returncode == 2 and "schema version 0" in r.stderr and "Traceback" not in r.stderr
    assert "not a readable JSON" in _cli("--board", str(tmp_path / "b"), "submit", str(tmp_path)).stderr


def test_partial_runs_are_refused(tmp_path):
    res = bf.legacy("mosaic", 0.97, 0.99, 0.05, 0.08)
    res.config["limit"] = 5
    with pytest.raises(BoardError, match="full runs only"):
        entry_from_results(res, bf.raw(res))


def test_superseded_entry_cannot_come_back():
    prev = Index.model_validate({"entries": [{"file": "entries/superseded/a.json", "sha256": "a" * 64, "status": "superseded", "superseded_by": "entries/a.json"}]})
    cur = Index.model_validate({"entries": [{"file": "entries/a.json", "sha256": "a" * 64, "status": "active"}]})
    assert any("became active again" in p for p in compare_with_previous(prev, cur))


# --- the git history check --------------------------------------------------------------------------
@pytest.fixture
def repo(tmp_path):
    """A git repository whose board sits two folders down (sub/leaderboard) beside a README with the
    board block: two commits, the second adding an entry, each rendered."""
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    bf.git(root, "init", "-q")
    readme = root / "sub" / "README.md"
    readme.write_text("# project\n<!-- leaderboard:start -->\n<!-- leaderboard:end -->\n")
    b = bf.make_board(root / "sub" / "leaderboard", [bf.legacy("identity", 0.03, 0.13, 1.0, 0.99)])
    _render(b, readme)
    bf.commit_all(root, "one entry")
    bf.make_board(b.root, [bf.legacy("mosaic", 0.97, 0.99, 0.05, 0.08)])
    _add_verification(b, M, "verified")
    _render(b, readme)
    bf.commit_all(root, "two entries")
    return root, b, readme


def _render(b, readme):
    render(b, b.root)
    splice_readme(readme, render_markdown(b))


def _add_verification(b, name, status, measured=None):
    item = next(i for i in b.index().entries if i.file == f"entries/{name}")
    entry = b.load_entry(item.file)
    b.add_verification(Verification(entry=item.file, entry_sha256=item.sha256, status=status, date="2026-01-03T00:00:00+00:00",
                                    suite_version=entry.suite_version, git_hash=None, differences=[], tolerances={},
                                    measured=measured or {k: m.value for k, m in entry.metrics.items()}))


def test_history_is_read_from_any_folder(repo, tmp_path):
    root, b, readme = repo
    history = git_index_history(b)
    assert len(history) == 2 and len(history[0][1].entries) == 2 and len(history[1][1].entries) == 1
    assert history_problems(history) == [] and rendered_problems(b, readme) == []
    # The old pathspec (relative to the board folder, naming it again) finds nothing: the bug this replaces.
    assert bf.git(b.root, "log", "--format=%H", "--", "sub/leaderboard/index.json") == ""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (elsewhere, b.root / "entries", root):
        r = _cli("--board", str(b.root), "validate", "--readme", str(readme), cwd=cwd)
        assert r.returncode == 0 and "across 2 committed index version(s)" in r.stdout, (cwd, r.stderr)


def _forge(b, name, sface):
    """Raise a figure in the results file, and make the entry, index, verification and rendered files agree."""
    res_path = b.results_dir / name
    results, _ = load_results(res_path)
    old = b.load_entry(f"entries/{name}")
    results.metrics["identity.sface.protection_rate"] = Metric(value=sface, n=200, ci95=(sface - 0.01, min(1.0, sface + 0.01)))
    raw = bf.raw(results)
    res_path.write_bytes(raw)
    card = {k: getattr(old.method, k) for k in CARD_FIELDS}
    entry = entry_from_results(results, raw, card, old.adaptive, submitted=old.submitted)
    (b.root / "entries" / name).write_text(entry.model_dump_json(indent=2, exclude_none=False) + "\n")
    index = json.loads(b.index_path.read_text())
    for item in index["entries"]:
        if item["file"] == f"entries/{name}":
            item["sha256"] = bf.sha(b.root / "entries" / name)
    b.index_path.write_text(json.dumps(index, indent=2) + "\n")
    for v in b.verifications_dir.glob(f"{name.removesuffix('.json')}__*.json"):
        v.unlink()
    _add_verification(b, name, "verified")


def test_a_forged_figure_is_caught_only_by_the_history_check(repo):
    root, b, readme = repo
    _forge(b, "identity__mema-tiny-2.0.json", 0.99)  # identity "protects" 99%
    _render(b, readme)
    bf.commit_all(root, "forged")
    # Everything on disk agrees with everything else: only the history shows the change.
    assert validate_board(b) == [] and rendered_problems(b, readme) == []
    row = next(r for s in collect(b) for r in s.rows if r.entry.method.name == "identity")
    assert row.figs["protection"].value == pytest.approx(0.13) and row.status == "verified"
    problems = history_problems(git_index_history(b))
    assert any("identity__mema-tiny-2.0.json" in p and "is gone or changed" in p for p in problems), problems
    r = _cli("--board", str(b.root), "validate", "--readme", str(readme))
    assert r.returncode == 1 and "entries are never removed" in r.stderr
    # With the history check switched off the forgery passes: the check is what catches it.
    assert _cli("--board", str(b.root), "validate", "--readme", str(readme), "--no-history").returncode == 0


def test_forging_a_copy_of_the_committed_board_is_caught(tmp_path):
    """The same forgery on a git copy of this repository's board: rofi's SFace protection raised everywhere."""
    root = tmp_path / "copy"
    shutil.copytree(BOARD_DIR, root / "leaderboard", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    shutil.copy(BOARD_DIR.parent / "README.md", root / "README.md")
    bf.git(root, "init", "-q")
    bf.commit_all(root, "the board as committed")
    b, readme = Board(root / "leaderboard"), root / "README.md"
    assert rendered_problems(b, readme) == [] and len(git_index_history(b)) == 1
    _forge(b, "rofi__mema-mini-1.0.json", 0.999)
    _render(b, readme)
    bf.commit_all(root, "forged")
    assert validate_board(b) == [] and rendered_problems(b, readme) == []
    r = _cli("--board", str(b.root), "validate")
    assert r.returncode == 1 and "rofi__mema-mini-1.0.json" in r.stderr and "is gone or changed" in r.stderr, r.stderr


def test_a_deleted_entry_is_caught_by_the_history_check(repo):
    root, b, readme = repo
    _remove(b)
    _render(b, readme)
    assert validate_board(b) == [] and rendered_problems(b, readme) == []
    # uncommitted: the working tree against the last commit
    r = _cli("--board", str(b.root), "validate", "--readme", str(readme))
    assert r.returncode == 1 and f"entries/{M}" in r.stderr and "never removed" in r.stderr
    bf.commit_all(root, "drop mosaic")
    problems = history_problems(git_index_history(b))
    assert any(M in p and "never removed" in p for p in problems), problems
    r = _cli("--board", str(b.root), "validate", "--readme", str(readme))
    assert r.returncode == 1 and "never removed" in r.stderr
    assert _cli("--board", str(b.root), "validate", "--readme", str(readme), "--no-history").returncode == 0


def test_a_checkout_without_history_fails_validation(repo, tmp_path):
    root, b, readme = repo
    copy = tmp_path / "copy"
    shutil.copytree(b.root, copy)  # not a git checkout
    with pytest.raises(HistoryUnavailable, match="not inside a git checkout"):
        git_index_history(Board(copy))
    r = _cli("--board", str(copy), "validate")
    assert r.returncode == 1 and "history: " in r.stderr and "--no-history" in r.stderr and "Traceback" not in r.stderr
    assert _cli("--board", str(copy), "validate", "--no-history").returncode == 0
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", root.as_uri(), str(shallow)], check=True, capture_output=True)
    r = _cli("--board", str(shallow / "sub" / "leaderboard"), "validate")
    assert r.returncode == 1 and "shallow clone" in r.stderr
    fresh = tmp_path / "fresh"
    shutil.copytree(b.root, fresh / "leaderboard")
    bf.git(fresh, "init", "-q")
    with pytest.raises(HistoryUnavailable, match="no commit of leaderboard/index.json"):
        git_index_history(Board(fresh / "leaderboard"))


def test_the_repository_board_is_valid():
    """The checked-in board: every entry valid, nothing removed or changed across the git history, and
    LEADERBOARD.md, index.html and the README's table equal to what `render` writes. A copy without the
    git history (shallow clone, tarball) fails here on purpose: run the suite in a full clone."""
    board = Board()
    history = git_index_history(board)  # raises with the reason when the checkout has no history
    assert len(history) >= 5  # the repository's index.json was committed at least this often
    assert history_problems(history) == []
    assert validate_board(board, previous=[history[0][1]]) == []
    readme = default_readme(board)
    assert readme is not None and rendered_problems(board, readme) == []


def test_stale_rendered_files_are_refused(board, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- leaderboard:start -->\nSTALE\n<!-- leaderboard:end -->\ny\n")
    render(board, board.root)
    assert rendered_problems(board) == []
    assert any("README.md: the leaderboard table is stale" in p for p in rendered_problems(board, readme))
    splice_readme(readme, render_markdown(board))
    assert rendered_problems(board, readme) == [] and "STALE" not in readme.read_text()
    bf.make_board(board.root, [bf.legacy("blur", 0.3, 0.9, 0.0, 0.6)])
    problems = rendered_problems(board, readme)
    assert len(problems) == 3 and all("stale" in p for p in problems), problems
    (board.root / "LEADERBOARD.md").unlink()
    assert any(p.startswith("LEADERBOARD.md: missing") for p in rendered_problems(board))


# --- sections, categories, worst case ---------------------------------------------------------------
def test_entries_of_different_suites_are_never_ranked_together(tmp_path, monkeypatch):
    monkeypatch.setattr("mema.evaluation.results.SUITE_VERSION", "0.2")
    runs = bf.builtin_legacy_runs() + [
        bf.zoo("rofi-next", {"sface": 0.99, "dlib-resnet": 0.99, "periocular": 0.40}, kappa=0.97, face=0.99),
        bf.zoo("swap", {"sface": 0.95, "dlib-resnet": 0.97, "periocular": 0.90}, kappa=0.90, face=0.98)]
    b = bf.make_board(tmp_path / "b", runs)
    sections = collect(b)
    assert [(s.corpus, s.suite, s.current) for s in sections] == [("mema-tiny-2.0", "0.2", True), ("mema-tiny-2.0", "0.1", False)]
    assert "the current suite is 0.2" in sections[1].history_reason
    assert {r.entry.method.name for r in sections[0].rows} == {"rofi-next", "swap"}
    assert all(r.entry.suite_version == "0.1" for r in sections[1].rows)
    md = render_markdown(b)
    assert md.index("### mema-tiny-2.0, suite 0.2") < md.index("### mema-tiny-2.0, suite 0.1") and "— history" in md
    # Each section has its own frontier: the suite-0.2 methods are not dominated by the older rofi.
    assert all(r.on_frontier for r in sections[0].rows)


def test_face_gate_categories_worst_case_and_cis(tmp_path):
    runs = [
        bf.zoo("keeps-eyes", {"sface": 0.97, "dlib-resnet": 0.98, "periocular": 0.31, "adaptive": 0.6, "deanon": 0.7, "linkability": 0.8},
               kappa=0.97, face=0.99, face_worst=0.30),
        bf.zoo("swap", dict(zip(bf.ATTACKERS6, (0.95, 0.96, 0.90, 0.85, 0.88, 0.93))), kappa=0.96, face=0.98),
        bf.zoo("noise", dict.fromkeys(bf.ATTACKERS6, 1.0), kappa=0.0, face=0.02, realism=0.05),
        bf.zoo("pixelate", dict.fromkeys(bf.ATTACKERS6, 0.97), kappa=0.0, face=0.50),
        bf.zoo("sealed", dict.fromkeys(bf.ATTACKERS6, 0.93), kappa=0.95, face=0.97, reversible=True,
               params={"reversibility": "sealed"}),
    ]
    runs[-1].metrics["reversibility.learned.psnr"] = bf.metric("reversibility.learned.psnr", 18.0)
    b = bf.make_board(tmp_path / "b", runs)
    (section,) = collect(b)
    rows = {r.entry.method.name: r for r in section.rows}
    assert {c: [r.entry.method.name for r in rs] for c, rs in section.categories()} == {
        "face": ["sealed", "swap", "keeps-eyes"], "obfuscation": ["noise", "pixelate"]}
    eyes = rows["keeps-eyes"]
    assert eyes.figs["protection"].value == 0.31 and eyes.worst_attacker == "periocular" and not eyes.partial
    assert eyes.figs["protection"].ci == (0.29, 0.33) and eyes.figs["protection_face"].value == 0.30
    assert "periocular" in eyes.figs["protection"].note
    # The frontier is per category: noise (100% protection, no face) does not push swap off the face frontier.
    assert rows["noise"].on_frontier and rows["swap"].on_frontier and rows["sealed"].on_frontier and not rows["pixelate"].on_frontier
    assert rows["sealed"].restoration == "sealed"
    md = render_markdown(b)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    for col in ("Worst-case protection (%)", "Worst case, outputs with a face (%)", "SFace (%)", "dlib (%)", "periocular (%)",
                "adaptive (%)", "de-anon. (%)", "linkability (%)", "Face detected (%)", "Realism", "Restored PSNR (dB)"):
        assert col in header, col
    assert "| **keeps-eyes** | no | 31.0 [29.0, 33.0] | 30.0 [28.0, 32.0] | 97.0 [95.0, 99.0]" in md
    assert "sealed; learned restorer: PSNR 18.0 dB" in md
    assert "**Face-preserving methods**" in md and "**Obfuscation methods**" in md
    assert "no CI" not in md and "‡" not in md  # every figure of the newer suite carries its CI


def test_old_entries_render_as_two_recogniser_worst_case(tmp_path):
    b = bf.make_board(tmp_path / "b", bf.builtin_legacy_runs())
    (section,) = collect(b)
    rows = {r.entry.method.name: r for r in section.rows}
    assert all(r.partial for r in rows.values())
    assert rows["blur"].figs["protection"].value == 0.293 and rows["blur"].worst_attacker == "sface"
    assert rows["rofi"].category == "face" and rows["rofi"].face_source == "mediapipe"
    assert rows["dp-pix"].category == rows["eye-crop"].category == "obfuscation"
    assert rows["rofi"].restoration.startswith("yes: sealed original")
    md = render_markdown(b)
    assert "2 whole-face recognisers only" in md and "98.6‡" in md and "99.5§" in md and "no CI" in md


def test_an_adaptive_attacker_lowers_the_worst_case(tmp_path):
    base = bf.legacy("mosaic", 0.97, 0.99, 0.05, 0.08)
    strong = bf.legacy("mosaic", 0.40, 0.60, 0.05, 0.08)
    entry = entry_from_results(base, bf.raw(base), adaptive=[adaptive_from_results("finetuned", "SFace fine-tuned on outputs", strong)])
    b = Board(tmp_path / "b")
    b.submit(entry, bf.raw(base))
    (row,) = collect(b)[0].rows
    assert row.figs["protection"].value == 0.40 and row.worst_attacker == "adaptive:finetuned" and row.partial
    assert "finetuned (adaptive) (%)" in render_markdown(b)


def test_schema_checks_the_new_figures():
    ok = bf.zoo("swap", {"sface": 0.9, "periocular": 0.5}, kappa=0.9, face=0.99)
    entry = entry_from_results(ok, bf.raw(ok))
    data = json.loads(entry.model_dump_json())

    def refused(edit, match):
        d = json.loads(json.dumps(data))
        edit(d)
        with pytest.raises(ValueError, match=match):
            Entry.model_validate(d)

    refused(lambda d: d["metrics"]["privacy.worst_case_protection"].update(value=0.7, ci95=[0.6, 0.8]), "minimum over the attackers")
    refused(lambda d: d["metrics"]["gate.face_detected_rate"].update(value=1.3, ci95=None), "outside its range")
    refused(lambda d: d["metrics"]["privacy.protection.periocular"].update(ci95=None), "carry no 95% CI")
    refused(lambda d: d["metrics"]["privacy.protection.periocular"].update(value=-0.1, ci95=None), "outside its range")
    d = json.loads(json.dumps(data))  # one sample has no interval: accepted, and shown with its n
    d["metrics"]["privacy.protection.periocular"].update(ci95=None, n=1)
    Entry.model_validate(d)
    d = json.loads(json.dumps(data))
    d["suite_version"] = "0.1"  # older suites did not record CIs everywhere
    d["metrics"]["privacy.protection.periocular"]["ci95"] = None
    Entry.model_validate(d)


def test_compare_uses_stated_tolerances(board):
    entry = board.load_entry(f"entries/{M}")
    measured = {k: m.value for k, m in entry.metrics.items()}
    assert compare(entry, measured) == []
    measured["identity.sface.protection_rate"] += 0.05
    assert compare(entry, measured)[0].startswith("identity.sface.protection_rate")
    z = bf.zoo("swap", {"sface": 0.9, "periocular": 0.5}, kappa=0.9, face=0.99)
    ze = entry_from_results(z, bf.raw(z))
    measured = {k: m.value for k, m in ze.metrics.items()}
    measured["privacy.protection.periocular"] -= 0.1
    assert [d.split(":")[0] for d in compare(ze, measured)] == ["privacy.protection.periocular"]
    assert tolerance("gate.face_detected_rate") == 0.03 and tolerance("privacy.worst_case_protection") == 0.03


# --- verify: real runs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory):
    """results.json of two real runs on the tiny corpus."""
    root = tmp_path_factory.mktemp("lb_runs")
    out = {}
    for name in ("identity", "mosaic"):
        Evaluation(load_corpus(tiny_corpus), get_method(name), root / name, EvalConfig(tasks=["identity", "classification"]),
                   progress=False).run()
        out[name] = root / name / "results.json"
    return out


@pytest.fixture
def local_tiny(tiny_corpus, monkeypatch):
    """Accept this machine's build of the tiny preset. Whether that build is the registered one is
    test_tiny_corpus_hash_is_the_registered_one's question; verify's bookkeeping is this test's."""
    info = load_info(tiny_corpus)
    registry = {k: dict(v) for k, v in known_corpora().items()}
    registry[info.name][info.version] = info.manifest_sha256
    monkeypatch.setattr(schema_mod, "known_corpora", lambda: registry)
    monkeypatch.setattr("mema.leaderboard.render.known_corpora", lambda: registry)


def test_verify_reruns_and_flags_a_wrong_claim(runs, local_tiny, tmp_path):
    b = Board(tmp_path / "board")
    results, raw = load_results(runs["mosaic"])
    b.submit(entry_from_results(results, raw), raw)
    v = verify_entry(b, "mosaic__mema-tiny-2.0", out=tmp_path / "rerun", progress=False)
    assert v.status == "verified", v.differences
    assert v.measured["identity.sface.protection_rate"] == b.load_entry(f"entries/{M}").metrics["identity.sface.protection_rate"].value
    # A claim that does not hold: the submitted results.json says kappa 0.2 lower than a re-run gives.
    data = json.loads(runs["identity"].read_text())
    kappa = data["metrics"]["classification.kappa_vs_original"]
    kappa["value"] -= 0.2
    kappa["ci95"] = [max(-1.0, c - 0.2) for c in kappa["ci95"]] if kappa["ci95"] else [kappa["value"] - 0.01, kappa["value"] + 0.01]
    claimed = tmp_path / "claimed.json"
    claimed.write_text(json.dumps(data))
    results, raw = load_results(claimed)
    b.submit(entry_from_results(results, raw), raw)
    v2 = verify_entry(b, "identity__mema-tiny-2.0.json", out=tmp_path / "rerun2", progress=False)
    assert v2.status == "mismatch" and any(d.startswith("classification.kappa_vs_original") for d in v2.differences)
    assert validate_board(b) == []  # verifications point at listed entries
    rows = {r.entry.method.name: r for s in collect(b) for r in s.rows}
    assert rows["mosaic"].status == "verified" and rows["identity"].status == "mismatch"


def test_an_entry_scored_with_other_evaluators_or_on_dev_is_refused(tmp_path):
    """MeMa-mini 2.0 ships frozen evaluators: an entry judged by locally trained ones is refused, as is a dev run."""
    from mema.evaluators.bundle import shipped_bundle_sha256

    want = shipped_bundle_sha256("mema-mini", "2.0")
    assert want
    good = bf.zoo("m", {"sface": 0.9, "dlib-resnet": 0.9, "periocular": 0.5}, kappa=0.9, face=0.99, corpus="mema-mini", version="2.0")
    raw = json.loads(good.model_dump_json())
    raw["suite_version"] = "0.2"
    for evaluators, split, match in ((dict(raw["evaluators"], bundle={"sha256": want}), "test", None),
                                     (dict(raw["evaluators"], bundle={"bundle": None}), "test", "other reference evaluators"),
                                     (dict(raw["evaluators"], bundle={"sha256": want}), "dev", "test split")):
        data = dict(raw, evaluators=evaluators, corpus=dict(raw["corpus"], split=split))
        blob = json.dumps(data).encode()
        results = Results.model_validate_json(blob)
        if match is None:
            entry_from_results(results, blob)
        else:
            with pytest.raises(BoardError, match=match):
                entry_from_results(results, blob)


def test_verify_finds_the_real_face_track_without_a_path(monkeypatch, tmp_path):
    """Entries on the real-face track re-run on the track's own build (built or reused), like the presets."""
    from types import SimpleNamespace

    import mema.generation.real_track as real_track
    from mema.leaderboard.verify import _corpus_root

    calls = []
    monkeypatch.setattr(real_track, "build_real_faces", lambda out, progress=True: calls.append(out) or out)
    entry = SimpleNamespace(corpus=SimpleNamespace(name=real_track.NAME, version=real_track.VERSION))
    root = _corpus_root(entry, None, progress=False)
    assert calls == [root] and root.name == f"{real_track.NAME}-{real_track.VERSION}"
    other = SimpleNamespace(corpus=SimpleNamespace(name="somebody-else", version="1"))
    with pytest.raises(Exception, match="not a built-in preset"):
        _corpus_root(other, None, progress=False)
