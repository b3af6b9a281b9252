"""``mema-bench``: benchmarks that are not tests (times depend on the machine).

    mema-bench eval [--method mosaic] [--dataset mini] [--n 100] [--out runs/bench]
    mema-bench anonymize [--method rofi] [--dataset mini] [--n 256] [--batch-size 64] [--out runs/bench]
    mema-bench first-run [--out runs/bench] [--keep DIR]

``first-run`` clones this repository into a temporary folder and runs the README's main command
(``bash scripts/run_mini.sh``) there with an empty ``MEMA_HOME``, step by step as the script does
(install, build, verify, score ROFI), then runs it again (the cached re-run); each step is timed and
the evaluation's own stage times are copied from its results.json into OUT/bench_first_run.json.

Runs ``mema-eval`` as a user would (a subprocess) and records:
  first_run_s   with an empty evaluator cache (trains the classifier and nnU-Net, embeds the references)
  cached_run_s  the same evaluation again, evaluators cached
  time(N), time(4N) and their ratio, on the first N and 4N samples (cached evaluators)
The record goes to OUT/bench_eval.json with the machine's description.

``anonymize`` times the method alone (images/s over N test images already in memory, after one
warm-up batch; torch threads as set by MEMA_TORCH_THREADS, default all cores) into OUT/bench_anonymize.json.
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


def bench_anonymize(method_spec: str, dataset: str, n: int, batch_size: int, out: Path) -> dict:
    import numpy as np
    import torch

    from mema import runtime
    from mema.cli.data import resolve_dataset
    from mema.corpus.store import load_corpus
    from mema.keys import key_from_seed
    from mema.methods import get_method

    runtime.set_torch_threads()
    corpus = load_corpus(resolve_dataset(dataset))
    records = sorted(corpus.split("test"), key=lambda r: r.id)[:n]
    images = np.stack([corpus.load_image(r) for r in records])
    method = get_method(method_spec)
    key = key_from_seed(1) if method.info.reversible else None
    method.anonymize(images[:batch_size], key=key)  # warm-up: lazy loading, allocator
    t0 = time.perf_counter()
    for i in range(0, len(images), batch_size):
        method.anonymize(images[i:i + batch_size], key=key)
    seconds = time.perf_counter() - t0
    record = {"method": method.info.name, "n": len(images), "image_size": list(images.shape[1:3]), "batch_size": batch_size,
              "seconds": round(seconds, 3), "images_per_s": round(len(images) / seconds, 1),
              "torch_threads": torch.get_num_threads(),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_anonymize.json").write_text(json.dumps(record, indent=2))
    return record


def _step(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.time()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"mema-bench: {' '.join(cmd)} failed:\n{(r.stdout + r.stderr)[-3000:]}")
    return round(time.time() - t0, 1)


def bench_first_run(out: Path, keep: Path | None) -> dict:
    """The README's first run on a fresh clone, then the cached re-run (see the module docstring)."""
    repo = Path(__file__).resolve().parents[2]
    work = Path(tempfile.mkdtemp(prefix="mema-first-run-")) if keep is None else keep
    clone, home = work / "clone", work / "home"
    if clone.exists():
        raise SystemExit(f"mema-bench: {clone} exists; give an empty --keep folder")
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "MEMA_"))}
    env.update(MEMA_HOME=str(home), GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")
    record: dict = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
                    "commit": subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()}
    for label in ("first_run", "cached_run"):
        steps = {"setup": _step(["bash", "scripts/setup.sh"], clone, env),
                 "build": _step([".venv/bin/mema-data", "build", "mini", "--quiet"], clone, env),
                 "verify": _step([".venv/bin/mema-data", "verify", "mini", "--quiet"], clone, env),
                 "eval": _step([".venv/bin/mema-eval", "--method", "rofi", "--dataset", "mini", "--out", "runs/rofi", "--quiet"], clone, env)}
        res = json.loads((clone / "runs" / "rofi" / "results.json").read_text())
        record[label] = {"seconds": round(sum(steps.values()), 1), "steps": steps,
                         "eval_stages": {k: v["seconds"] for k, v in res["timings"].items()},
                         "attack_seconds": res["evaluators"].get("recognisers", {}).get("attack_seconds")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_first_run.json").write_text(json.dumps(record, indent=2))
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
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
    a = sub.add_parser("anonymize", help="images/s of a method's anonymize alone")
    a.add_argument("--method", default="rofi")
    a.add_argument("--dataset", default="mini")
    a.add_argument("--n", type=int, default=256)
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument("--out", type=Path, default=Path("runs/bench"))
    f = sub.add_parser("first-run", help="the README's first run on a fresh clone, then the cached re-run")
    f.add_argument("--out", type=Path, default=Path("runs/bench"))
    f.add_argument("--keep", type=Path, help="work in this (empty) folder and keep the clone and caches")
    args = p.parse_args(argv)
    if args.command == "first-run":
        print(json.dumps(bench_first_run(args.out, args.keep), indent=2))
        return 0
    if args.command == "anonymize":
        print(json.dumps(bench_anonymize(args.method, args.dataset, args.n, args.batch_size, args.out), indent=2))
        return 0
    record = bench_eval(args.method, args.dataset, args.n, args.out, args.skip_first_run)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
