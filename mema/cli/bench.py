"""``mema-bench``: benchmarks that are not tests (times depend on the machine).

    mema-bench eval [--method mosaic] [--dataset mini] [--n 100] [--out runs/bench]

Runs ``mema-eval`` as a user would (a subprocess) and records:
  first_run_s   with an empty evaluator cache (trains the classifier and nnU-Net, embeds the references)
  cached_run_s  the same evaluation again, evaluators cached
  time(N), time(4N) and their ratio, on the first N and 4N samples (cached evaluators)
The record goes to OUT/bench_eval.json with the machine's description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed_eval(args: list[str], env: dict) -> float:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "mema.cli.eval", "--quiet", *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"mema-bench: mema-eval failed:\n{r.stderr[-2000:]}")
    return round(time.time() - t0, 2)


def bench_eval(method: str, dataset: str, n: int, out: Path, skip_first: bool) -> dict:
    from mema.cli.data import resolve_dataset

    out.mkdir(parents=True, exist_ok=True)
    corpus = resolve_dataset(dataset)
    if not (corpus / "dataset.json").exists():
        raise SystemExit(f"mema-bench: build the corpus first (mema-data build {dataset})")
    env = dict(os.environ)
    record: dict = {"method": method, "dataset": dataset, "n": n, "machine": {
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()}}
    base = ["--method", method, "--dataset", str(corpus)]
    if not skip_first:
        with tempfile.TemporaryDirectory() as home:
            fresh = dict(env, MEMA_HOME=home)  # empty evaluator cache; the corpus is passed by path
            record["first_run_s"] = _timed_eval(base + ["--out", str(out / "first")], fresh)
            cached_home = Path(home)
            record["cached_run_s"] = _timed_eval(base + ["--out", str(out / "cached")], fresh)
            # keep the evaluators this run trained for the scaling runs below
            for folder in ("first", "cached"):
                shutil.rmtree(out / folder, ignore_errors=True)
            env = dict(env, MEMA_HOME=str(out / "home"))
            shutil.rmtree(out / "home", ignore_errors=True)
            shutil.copytree(cached_home, out / "home")
    for label, limit in (("time_n_s", n), ("time_4n_s", 4 * n)):
        folder = out / f"limit{limit}"
        shutil.rmtree(folder, ignore_errors=True)
        record[label] = _timed_eval(base + ["--out", str(folder), "--limit", str(limit)], env)
    record["scaling_ratio_4n_over_n"] = round(record["time_4n_s"] / record["time_n_s"], 3)
    (out / "bench_eval.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mema-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("eval", help="time mema-eval: first run, cached run, scaling with N")
    e.add_argument("--method", default="mosaic")
    e.add_argument("--dataset", default="mini")
    e.add_argument("--n", type=int, default=100, help="N of the scaling ratio time(4N)/time(N)")
    e.add_argument("--out", type=Path, default=Path("runs/bench"))
    e.add_argument("--skip-first-run", action="store_true", help="only the scaling runs, with the evaluators already cached")
    args = p.parse_args(argv)
    record = bench_eval(args.method, args.dataset, args.n, args.out, args.skip_first_run)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
