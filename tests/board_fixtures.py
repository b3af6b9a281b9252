"""Synthetic results.json objects and boards for the leaderboard and page tests.

The figures are made up (no method is run): these tests check the board's bookkeeping and rendering,
which only read results files. Corpus hashes are the registered ones, so entries validate on any machine.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from mema.evaluation.results import Metric, Results
from mema.leaderboard.board import Board, entry_from_results
from mema.leaderboard.schema import RANGES, known_corpora

ATTACKERS6 = ("sface", "dlib-resnet", "periocular", "adaptive", "deanon", "linkability")


def _range(name: str) -> tuple[float, float]:
    for pattern, lo, hi in RANGES:
        if re.search(pattern, name):
            return lo, min(hi, 100.0)
    return -1e6, 1e6


def metric(name: str, value: float, n: int = 200, ci: bool = True, note: str = "") -> Metric:
    lo, hi = _range(name)
    d = 0.5 if name.endswith("psnr") else 0.02
    return Metric(value=value, n=n, ci95=(max(lo, value - d), min(hi, value + d)) if ci else None, note=note)


def results(method: str, figures: dict[str, float], *, suite: str = "0.1", corpus: str = "mema-tiny", version: str = "2.0",
            reversible: bool = False, params: dict | None = None, ci: bool = True, n: int = 200, notes: dict | None = None,
            created: str = "2026-01-01T00:00:00+00:00", description: str = "") -> Results:
    """A results.json of ``method`` with ``figures`` (plus the required ones, defaulted)."""
    figs = {"identity.sface.protection_rate": 0.5, "classification.kappa_vs_original": 0.5, "classification.top1": 0.5, **figures}
    if reversible:
        figs.setdefault("reversibility.psnr", 40.0)
    notes = notes or {}
    return Results(
        suite_version=suite, git_hash="0" * 40, created=created,
        corpus={"name": corpus, "version": version, "manifest_sha256": known_corpora()[corpus][version], "split": "test", "n_samples": n},
        method={"name": method, "version": "1.0", "reversible": reversible, "key_scheme": "mema-key-v1" if reversible else "none",
                "licence": "Apache-2.0", "description": description or f"the {method} test method", "params": params or {}},
        tasks=["identity", "classification"], config={"split": "test", "tasks": ["identity", "classification"], "seed": 0},
        evaluators={}, seeds={"bootstrap": 0}, environment={}, timings={},
        metrics={k: metric(k, v, n, ci, notes.get(k, "")) for k, v in figs.items()},
    )


def legacy(method: str, sface: float, dlib: float, kappa: float, face: float, **kw) -> Results:
    """A suite-0.1 entry: two whole-face recognisers, MediaPipe's face rate, no CI on the rate."""
    r = results(method, {"identity.sface.protection_rate": sface, "identity.dlib-resnet.protection_rate": dlib,
                         "classification.kappa_vs_original": kappa, "classification.top1": 0.2 + 0.7 * max(kappa, 0)}, **kw)
    r.metrics["geometry.face_detected_rate"] = Metric(value=face, n=r.corpus.n_samples, note="MediaPipe finds a face in the output")
    return r


def zoo(method: str, per: dict[str, float], kappa: float, face: float, *, face_worst: float | None = None, realism: float = 0.8,
        suite: str = "0.2", **kw) -> Results:
    """A newer-suite entry with the attacker zoo, the face-presence gate and a CI on every figure."""
    worst = min(per.values())
    figs = {f"privacy.protection.{a}": v for a, v in per.items()}
    figs.update({"privacy.worst_case_protection": worst, "privacy.worst_case_protection_face": worst if face_worst is None else face_worst,
                 "gate.face_detected_rate": face, "gate.realism": realism, "classification.kappa_vs_original": kappa,
                 "classification.top1": 0.2 + 0.7 * max(kappa, 0), "identity.sface.protection_rate": per.get("sface", worst)})
    name = min(per, key=per.get)
    return results(method, figs, suite=suite, notes={"privacy.worst_case_protection": f"minimum over {len(per)} attackers: {name}"}, **kw)


def raw(res: Results) -> bytes:
    return (res.model_dump_json(indent=2) + "\n").encode()


def make_board(root: Path, runs: list[Results]) -> Board:
    board = Board(root)
    for res in runs:
        data = raw(res)
        board.submit(entry_from_results(res, data, {"code_url": f"https://example.org/{res.method['name']}"},
                                        submitted="2026-01-02T00:00:00+00:00"), data)
    return board


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(repo: Path, *args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=board test", "-c", "user.email=board@test", *args],
                          capture_output=True, text=True, check=True, cwd=cwd).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


# The built-in methods' suite-0.1 figures on MeMa-mini 1.0 (rounded), where labels crowd each other.
BUILTINS = [
    ("identity", 0.028, 0.133, 1.000, 0.995), ("rofi", 0.986, 0.989, 0.970, 0.995), ("eye-crop", 0.943, 0.992, 0.967, 0.416),
    ("mosaic", 0.976, 0.995, 0.051, 0.078), ("mask-out", 0.925, 1.0, 0.003, 0.012), ("dp-pix", 0.999, 0.999, 0.002, 0.0),
    ("blur", 0.293, 0.902, -0.006, 0.595),
]


def builtin_legacy_runs(corpus: str = "mema-tiny") -> list[Results]:
    out = []
    for name, s, d, k, f in BUILTINS:
        rev = name == "rofi"
        out.append(legacy(name, s, d, k, f, corpus=corpus, reversible=rev,
                          params={"restoration": "sealed original (AES-SIV, 2 low bits), neural fallback"} if rev else None))
    return out
