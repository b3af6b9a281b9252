"""Leaderboard: submit, validate (incl. tampered entries), verify by re-running, render, headless browser.

Runs are real mema-eval runs on the tiny corpus (a pipeline-test size: the figures mean nothing).
"""

import json
import shutil
import subprocess
import sys

import pytest

from mema.corpus.store import load_corpus, load_info
from mema.evaluation.harness import EvalConfig, Evaluation
from mema.leaderboard.board import Board, BoardError, entry_from_results, load_results
from mema.leaderboard.browser import check_page, find_browser
from mema.leaderboard.render import collect, render, render_markdown
from mema.leaderboard.schema import Index, known_corpora
from mema.leaderboard.validate import compare_with_previous, git_index_history, history_problems, validate_board
from mema.leaderboard.verify import compare, verify_entry
from mema.methods import get_method

TASKS = ["identity", "classification", "segmentation"]


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory):
    """results.json of two real runs on the tiny corpus."""
    root = tmp_path_factory.mktemp("lb_runs")
    out = {}
    for name in ("identity", "mosaic"):
        Evaluation(load_corpus(tiny_corpus), get_method(name), root / name, EvalConfig(tasks=TASKS), progress=False).run()
        out[name] = root / name / "results.json"
    return out


@pytest.fixture
def board(runs, tmp_path):
    b = Board(tmp_path / "board")
    for name, path in runs.items():
        results, raw = load_results(path)
        b.submit(entry_from_results(results, raw, {"code_url": "https://example.org/" + name}), raw)
    return b


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mema.cli.leaderboard", *args], capture_output=True, text=True)


def test_tiny_corpus_hash_is_the_registered_one(tiny_corpus):
    # The presets are seeded builds; the board names each version by this hash.
    info = load_info(tiny_corpus)
    assert known_corpora()[info.name][info.version] == info.manifest_sha256


def test_submit_and_validate(board, runs):
    assert validate_board(board) == []
    index = board.index()
    assert [i.file for i in index.entries] == ["entries/identity__mema-tiny-1.0.json", "entries/mosaic__mema-tiny-1.0.json"]
    entry = board.load_entry("entries/mosaic__mema-tiny-1.0.json")
    assert entry.method.code_url == "https://example.org/mosaic" and entry.config["tasks"] == TASKS
    assert (board.results_dir / "mosaic__mema-tiny-1.0.json").read_bytes() == runs["mosaic"].read_bytes()
    r = _cli("--board", str(board.root), "validate", "--no-history")
    assert r.returncode == 0 and "2 entries listed, all valid" in r.stdout


def test_resubmitting_supersedes_and_keeps_the_old_entry(board, runs, tmp_path):
    before = board.index()
    data = json.loads(runs["mosaic"].read_text())
    data["created"] = "2030-01-01T00:00:00+00:00"  # a newer run of the same method
    newer = tmp_path / "results.json"
    newer.write_text(json.dumps(data))
    r = _cli("--board", str(board.root), "submit", str(newer))
    assert r.returncode == 0 and "supersedes entries/superseded/mosaic__mema-tiny-1.0__" in r.stdout, r.stderr
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
        import hashlib

        index = json.loads(board.index_path.read_text())
        for item in index["entries"]:
            if item["file"] == f"entries/{name}":
                item["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        board.index_path.write_text(json.dumps(index, indent=2))


def _set(d, path, value):
    *head, last = path
    for k in head:
        d = d[k]
    d[last] = value


M = "mosaic__mema-tiny-1.0.json"
TAMPERS = {
    "changed metric, index untouched": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["metrics", "classification.top1", "value"], 0.99), False),
                                        "edited after submission"),
    "changed metric, index re-hashed": (lambda b: _rewrite_entry(b, M, lambda d: d["metrics"]["identity.sface.protection_rate"].update(value=1.0, ci95=None)),
                                        "differs from its results.json"),
    "metric out of range": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["metrics", "classification.kappa_vs_original", "value"], 1.7)),
                            "outside its range"),
    "n of zero": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["metrics", "classification.top1", "n"], 0)), "n = 0"),
    "changed corpus hash": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["corpus", "manifest_sha256"], "0" * 64)),
                            "does not match mema-tiny 1.0"),
    "unknown corpus version": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["corpus", "version"], "9.9")), "no version '9.9'"),
    "extra field": (lambda b: _rewrite_entry(b, M, lambda d: d.update(leaderboard_rank=1)), "unknown field"),
    "extra method field": (lambda b: _rewrite_entry(b, M, lambda d: d["method"].update(gpu="A100")), "unknown field"),
    "duplicate method name": (lambda b: _duplicate(b), "duplicate method name"),
    "unlisted entry file": (lambda b: shutil.copy(b.root / "entries" / M, b.root / "entries" / "blur__mema-tiny-1.0.json"),
                            "not listed in index.json"),
    "entry removed": (lambda b: _remove(b), "never removed"),
    "results file changed": (lambda b: (b.results_dir / M).write_text((b.results_dir / M).read_text().replace('"created"', '"created" ', 1)),
                             "results file hash differs"),
    "reversibility claimed without figures": (lambda b: _rewrite_entry(b, M, lambda d: _set(d, ["method", "reversible"], True)),
                                              "must carry reversibility figures"),
}


def _duplicate(b):
    # The same method listed twice under another file name; the file name check and the duplicate check both fire.
    import hashlib

    src = b.root / "entries" / M
    dst = b.root / "entries" / "mosaic-v2__mema-tiny-1.0.json"
    shutil.copy(src, dst)
    shutil.copy(b.results_dir / M, b.results_dir / dst.name)
    index = json.loads(b.index_path.read_text())
    index["entries"].append({"file": f"entries/{dst.name}", "sha256": hashlib.sha256(dst.read_bytes()).hexdigest(), "status": "active", "superseded_by": None})
    b.index_path.write_text(json.dumps(index))


def _remove(b):
    (b.root / "entries" / M).unlink()
    index = json.loads(b.index_path.read_text())
    index["entries"] = [i for i in index["entries"] if i["file"] != f"entries/{M}"]
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


def test_results_of_another_schema_are_refused(runs, tmp_path):
    data = json.loads(runs["mosaic"].read_text())
    data["schema_version"] = 0
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    with pytest.raises(BoardError, match="results schema version 0 is not supported"):
        load_results(old)
    r = _cli("--board", str(tmp_path / "b"), "submit", str(old))
    assert r.returncode == 2 and "schema version 0" in r.stderr and "Traceback" not in r.stderr
    assert "not a readable JSON" in _cli("--board", str(tmp_path / "b"), "submit", str(tmp_path)).stderr


def test_partial_runs_are_refused(runs, tmp_path):
    data = json.loads(runs["mosaic"].read_text())
    data["config"]["limit"] = 5
    results, raw = load_results(_write(tmp_path / "r.json", data))
    with pytest.raises(BoardError, match="full runs only"):
        entry_from_results(results, raw)


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_git_history_refuses_a_removed_entry(board, tmp_path):
    def git(*a):
        subprocess.run(["git", "-C", str(board.root), *a], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "empty")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two entries")
    assert history_problems(git_index_history(board)) == []
    _remove(board)
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "drop one")
    history = git_index_history(board)
    assert len(history) == 2
    assert any("never removed" in p for p in history_problems(history))
    assert _cli("--board", str(board.root), "validate").returncode == 1


def test_superseded_entry_cannot_come_back():
    prev = Index.model_validate({"entries": [{"file": "entries/superseded/a.json", "sha256": "a" * 64, "status": "superseded", "superseded_by": "entries/a.json"}]})
    cur = Index.model_validate({"entries": [{"file": "entries/a.json", "sha256": "a" * 64, "status": "active"}]})
    assert any("became active again" in p for p in compare_with_previous(prev, cur))


def test_verify_reruns_and_flags_a_wrong_claim(board, runs, tmp_path):
    v = verify_entry(board, "mosaic__mema-tiny-1.0", out=tmp_path / "rerun", progress=False)
    assert v.status == "verified", v.differences
    assert v.measured["identity.sface.protection_rate"] == board.load_entry(f"entries/{M}").metrics["identity.sface.protection_rate"].value
    # A claim that does not hold: the submitted results.json says kappa 0.2 lower than a re-run gives.
    data = json.loads(runs["identity"].read_text())
    data["metrics"]["classification.kappa_vs_original"]["value"] -= 0.2
    data["metrics"]["classification.kappa_vs_original"]["ci95"] = None
    results, raw = load_results(_write(tmp_path / "claimed.json", data))
    board.submit(entry_from_results(results, raw), raw)
    v2 = verify_entry(board, "identity__mema-tiny-1.0.json", out=tmp_path / "rerun2", progress=False)
    assert v2.status == "mismatch" and any(d.startswith("classification.kappa_vs_original") for d in v2.differences)
    assert validate_board(board) == []  # verifications point at listed entries
    rows = {r.entry.method.name: r for r in collect(board)["mema-tiny-1.0"]}
    assert rows["mosaic"].status == "verified" and rows["identity"].status == "mismatch"


def test_compare_uses_stated_tolerances(board):
    entry = board.load_entry(f"entries/{M}")
    measured = {k: m.value for k, m in entry.metrics.items()}
    assert compare(entry, measured) == []
    measured["identity.sface.protection_rate"] += 0.05
    assert compare(entry, measured)[0].startswith("identity.sface.protection_rate")


def test_render_markdown_html_and_frontier(board, tmp_path):
    md, page = render(board, tmp_path / "site")
    text = md.read_text()
    assert "| mosaic |" in text or "| **mosaic** |" in text
    assert "mema-tiny-1.0" in text and text.count("\n| ") == 3  # header + two rows
    rows = collect(board)["mema-tiny-1.0"]
    ident = next(r for r in rows if r.entry.method.name == "identity")
    assert ident.values["protection"] == min(ident.entry.metrics["identity.sface.protection_rate"].value,
                                             ident.entry.metrics["identity.dlib-resnet.protection_rate"].value)
    assert any(r.on_frontier for r in rows)
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html.replace("https://example.org", "")
    assert html.count('class="point') == 2 and "<table class=\"board\"" in html
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- leaderboard:start -->\nSTALE\n<!-- leaderboard:end -->\ny\n")
    assert _cli("--board", str(board.root), "render", "--out", str(tmp_path / "s2"), "--readme", str(readme)).returncode == 0
    assert "STALE" not in readme.read_text() and "mema-tiny-1.0" in readme.read_text()


@pytest.mark.skipif(find_browser() is None, reason="Chromium not installed (apt-get install chromium); `mema-leaderboard check-html` is the same check")
def test_page_renders_and_sorts_in_headless_chromium(board, tmp_path):
    _, page = render(board, tmp_path / "site")
    for key in ("kappa", "protection"):
        info = check_page(page, key)
        assert info["rows"] == 2 and info["points"] == 2
    r = _cli("--board", str(board.root), "check-html", str(page), "--sort", "top1")
    assert r.returncode == 0, r.stderr


def test_the_repository_board_is_valid():
    """The checked-in board: every entry valid, nothing removed across the git history."""
    board = Board()
    history = git_index_history(board)
    assert validate_board(board, previous=[history[0][1]] if history else []) == []
    assert history_problems(history) == []
