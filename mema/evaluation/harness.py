"""One evaluation run: anonymize (and restore) the evaluation split, then measure (docs/metrics.md).

Stages, each timed:
  anonymize    method outputs written as 8-bit PNG to ``outputs/`` (resumable: ``outputs.jsonl`` logs
               each finished sample with its input and output hashes)
  restore      reversible methods: right key -> ``restored/``, a wrong key -> ``wrongkey/``
  measure      every metric is computed from the PNG files, never from in-memory floats
  key_security optional task ``key-security`` (reversible methods): the attacks of
               mema.evaluation.attacks, written to ``key_security.json`` and as ``key_security.*`` metrics

Pixel-aligned protocol: a method returns an image in the input's frame, so crops for the classifier
and recognisers are placed with the *original* image's landmarks. This is the strongest attacker
for identity (it knows where the face was) and the clinician's view for utility.

Before anything is scored the corpus is checked (every file against its sha256, the manifest hash
recomputed, a registered name against its registered hash), and every log row carries the run's
fingerprint (method, version, params, key id, corpus manifest) and its input's sha256, so outputs of
another method, version or corpus are never scored as this run's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import resource
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from mema.corpus.schema import DISEASES, ImageRecord
from mema.corpus.store import Corpus
from mema.evaluation.attacks import (BRUTE_FORCE_SEED, DIVERSITY_SEED, UNIVERSAL_BLACK_BOX_SEED, UNIVERSAL_KEY_SEED,
                                    KeySecurityConfig)
from mema.evaluation.environment import library_versions
from mema.evaluation.results import CorpusRef, Metric, Results, StageTiming
from mema.imageio import read_rgb, write_png
from mema.keys import Key, key_from_seed
from mema.methods import Method, check_output

TASKS = ("identity", "adaptive-attack", "classification", "segmentation", "geometry", "reversibility")  # the default run
# Not in the default run: minutes per method (1,000 brute-force keys, a 200-step key optimisation, BIM).
OPTIONAL_TASKS = ("key-security",)
ALL_TASKS = TASKS + OPTIONAL_TASKS
# Face matching and the calibrated same-person threshold compare against another photo of each identity.
GALLERY_TASKS = ("identity", "adaptive-attack", "key-security")
DEFAULT_RECOGNISERS = ("sface", "dlib-resnet", "periocular", "periocular-sface")
SCORED_SPLITS = ("test", "dev")  # val calibrates the reference evaluators: never scored
EVAL_KEY_SEED = 7_000_000  # reversible methods are scored with key_from_seed(this) unless --key is given
WRONG_KEY_SEED = 7_000_001  # the wrong key is derived from this seed, so it is the same in every run
AGE_BANDS = ((0, 30, "<30"), (30, 50, "30-49"), (50, 200, ">=50"))


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: Literal["test", "dev"] = "test"
    tasks: list[str] = Field(default_factory=lambda: list(TASKS))
    recognisers: list[str] = Field(default_factory=lambda: list(DEFAULT_RECOGNISERS))
    batch_size: int = Field(default=32, ge=1)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    far: float = Field(default=0.01, gt=0, lt=1)
    key_security: KeySecurityConfig = Field(default_factory=KeySecurityConfig)  # used by the key-security task


class EvalError(RuntimeError):
    pass


def limited(records: list[ImageRecord], limit: int | None, seed: int) -> list[ImageRecord]:
    """The evaluation records, or a seeded subset of whole identities when ``limit`` is set.

    Ids are grouped by class, so the first N would hold one or two diseases; identities are ordered by
    a seeded hash instead (all photos of an identity stay together), then the subset is sorted by id.
    """
    import hashlib

    records = sorted(records, key=lambda r: r.id)
    if not limit or limit >= len(records):
        return records
    rank = lambda r: hashlib.sha256(f"{seed}:{r.identity}".encode()).hexdigest()  # noqa: E731
    return sorted(sorted(records, key=lambda r: (rank(r), r.id))[:limit], key=lambda r: r.id)


def _git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _environment(device: str) -> dict:
    import torch

    import mema

    return {
        "mema": mema.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": __import__("os").cpu_count(),
        "device": device,
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# CPU kernels split their sums by thread count, so float results move with it: one ROFI run on 2 threads against
# its 1-thread board entry moved 9 of 86 metrics (the attackers' training and the method's own convolutions).
# Pinned to one; the cores are used by running recognisers side by side instead (privacy.Zoo).
EVAL_TORCH_THREADS = 1

FIGURE_DECIMALS = 4  # float32 models differ across CPUs in the ~7th digit; figures are reported to 4 decimals


def _metric(values, n=None, ci=None, unit="", hib=None, note="") -> Metric:
    v = None if values is None or not np.isfinite(values) else round(float(values), FIGURE_DECIMALS)
    if ci is not None:
        ci = (round(float(ci[0]), FIGURE_DECIMALS), round(float(ci[1]), FIGURE_DECIMALS))
    return Metric(value=v, n=int(n or 0), ci95=ci, unit=unit, higher_is_better=hib, note=note)


def run_fingerprint(method: Method, key: Key | None, corpus: Corpus) -> dict:
    """What an output folder's samples depend on; a log row of another run is never reused."""
    fields = {
        "method": method.info.name,
        "method_version": method.info.version,
        "method_params": json.dumps(method.info.params, sort_keys=True),
        "method_weights": json.dumps(getattr(method, "weights_sha256", None)),
        "key_id": key.key_id if key is not None else None,
        "corpus": f"{corpus.info.name} {corpus.info.version}",
        "corpus_manifest": corpus.info.manifest_sha256,
    }
    return {"id": hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16], **fields}


class Evaluation:
    def __init__(self, corpus: Corpus, method: Method, out: Path, cfg: EvalConfig, key: Key | None = None,
                 *, progress: bool = True, device: str = "cpu"):
        from mema.evaluators.reference import ReferenceEvaluators

        unknown = set(cfg.tasks) - set(ALL_TASKS)
        if unknown:
            raise EvalError(f"unknown task(s) {sorted(unknown)}; choose from {', '.join(ALL_TASKS)}")
        needs_gallery = [t for t in cfg.tasks if t in GALLERY_TASKS]
        if needs_gallery and not corpus.split("gallery"):
            others = [t for t in cfg.tasks if t not in GALLERY_TASKS]
            raise EvalError(f"corpus {corpus.info.name} has no gallery split, which the {', '.join(needs_gallery)} task(s) need "
                            "(another photo of each val/test identity; docs/corpus-format.md)"
                            + (f"; run the others with --tasks {','.join(others)}" if others else ""))
        if "adaptive-attack" in cfg.tasks and "identity" not in cfg.tasks:
            raise EvalError("the adaptive-attack task builds on the identity task (its gallery and recognisers); "
                            "add identity to --tasks")
        if "adaptive-attack" in cfg.tasks and not set(cfg.recognisers) & {"sface", "periocular", "periocular-sface"}:
            raise EvalError("the adaptive-attack task needs one of the recognisers sface, periocular, periocular-sface "
                            f"(given: {', '.join(cfg.recognisers)})")
        if cfg.split not in SCORED_SPLITS:
            raise EvalError(f"split {cfg.split!r} cannot be scored: val calibrates the reference evaluators; use test or dev")
        from mema.evaluation.integrity import check_corpus

        self.integrity = check_corpus(corpus, progress=progress)
        self.corpus, self.method, self.out, self.cfg = corpus, method, Path(out), cfg
        self.progress, self.device = progress, device
        self.key = key
        if method.info.reversible and key is None:
            # A fixed, published evaluation key, so a re-run (mema-leaderboard verify) sees the same outputs.
            self.key = key_from_seed(EVAL_KEY_SEED)
        self.wrong_key = key_from_seed(WRONG_KEY_SEED)
        self.ref = ReferenceEvaluators(corpus, progress=progress, device=device)
        self.records: list[ImageRecord] = limited(corpus.split(cfg.split), cfg.limit, cfg.seed)
        if not self.records:
            raise EvalError(f"corpus {corpus.info.name} has no {cfg.split} images")
        self.timings: dict[str, StageTiming] = {}
        self.fingerprint = run_fingerprint(method, self.key, corpus)

    # --- stages -------------------------------------------------------------------------------
    def _timed(self, name: str, n: int, fn):
        """Time ``fn``; a stage that returns (result, images done now) is timed over the work done in this run."""
        t0 = time.time()
        result = fn()
        sec = time.time() - t0
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], int):
            result, n = result
        self.timings[name] = StageTiming(seconds=round(sec, 3), images=n, images_per_s=round(n / sec, 2) if sec > 0 and n else None, peak_rss_mb=round(_rss_mb(), 1))
        return result

    def _claim_folder(self) -> None:
        """Refuse an output folder that holds another run's samples (another method, version, key or corpus)."""
        path = self.out / "run.json"
        mine = self.fingerprint
        if path.exists():
            try:
                theirs = json.loads(path.read_text())
            except json.JSONDecodeError:
                theirs = {}
            diff = [k for k in mine if k != "id" and theirs.get(k) != mine[k]]
            if diff:
                shown = "; ".join(f"{k}: folder has {theirs.get(k)!r}, this run {mine[k]!r}" for k in diff[:3])
                raise EvalError(f"{self.out} holds outputs of another run ({shown}); choose another --out or delete that folder")
            return
        stale = [st for st in ("outputs", "restored", "wrongkey") if (self.out / st).exists() and any((self.out / st).iterdir())]
        if stale:
            raise EvalError(f"{self.out} holds {', '.join(stale)} of a run that recorded no fingerprint; choose another --out or delete that folder")
        self.out.mkdir(parents=True, exist_ok=True)
        from mema.imageio import atomic_write_bytes

        atomic_write_bytes(path, (json.dumps(mine, indent=2) + "\n").encode())

    def _log_path(self, stage: str) -> Path:
        return self.out / f"{stage}.jsonl"

    def _done(self, stage: str, input_sha: dict[str, str]) -> dict[str, dict]:
        """Logged samples of ``stage`` that belong to this run: same fingerprint, same input, output file intact."""
        done = {}
        path = self._log_path(stage)
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from a kill: that sample is redone
                if not isinstance(row, dict) or row.get("run") != self.fingerprint["id"] or row.get("input_sha256") != input_sha.get(row.get("id")):
                    continue
                png = self.out / stage / f"{row['id']}.png"
                if png.exists() and hashlib.sha256(png.read_bytes()).hexdigest() == row.get("output_sha256"):
                    done[row["id"]] = row
        return done

    def _run_stage(self, stage: str, source, transform, input_sha: dict[str, str]) -> tuple[dict[str, dict], int]:
        """Apply ``transform(images, ids)`` batch-wise to images from ``source(rec)``; resumable.

        Returns (rows by id, how many samples were done in this run)."""
        from mema.methods import MethodFailure

        done = self._done(stage, input_sha)
        todo = [r for r in self.records if r.id not in done]
        folder = self.out / stage
        folder.mkdir(parents=True, exist_ok=True)
        bs = self.cfg.batch_size
        with open(self._log_path(stage), "a") as log, tqdm(total=len(self.records), initial=len(done), desc=stage, unit="img", disable=not self.progress) as bar:
            for i in range(0, len(todo), bs):
                batch = todo[i : i + bs]
                ids = [r.id for r in batch]
                inputs = np.stack([source(r) for r in batch])
                # The method's own failure is one line naming method, stage and samples; done samples stay logged.
                result = MethodFailure.wrap(self.method.info.name, stage, ids, transform, inputs, ids)
                outputs = check_output(self.method.info.name, inputs, result, ids, stage)
                statuses = getattr(self.method, "last_statuses", None) if stage == "outputs" else None
                if statuses is not None and len(statuses) != len(batch):
                    statuses = None
                for j, (rec, img) in enumerate(zip(batch, outputs)):
                    sha = write_png(folder / f"{rec.id}.png", img)
                    row = {"id": rec.id, "run": self.fingerprint["id"], "input_sha256": input_sha[rec.id], "output_sha256": sha}
                    if statuses is not None:
                        row["status"] = str(statuses[j])
                    log.write(json.dumps(row) + "\n")
                    done[rec.id] = row
                log.flush()
                bar.update(len(batch))
        return done, len(todo)

    def _load(self, stage: str, rec: ImageRecord) -> np.ndarray:
        return read_rgb(self.out / stage / f"{rec.id}.png")[0]

    def run(self) -> Results:
        """Score the method. Torch runs on ``EVAL_TORCH_THREADS`` threads throughout (the method, the attackers'
        training, the evaluators), so a run's figures do not depend on the machine's core count."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(EVAL_TORCH_THREADS)
        try:
            return self._run()
        finally:
            torch.set_num_threads(before)

    def _run(self) -> Results:
        self._claim_folder()
        n = len(self.records)
        originals = {r.id: r.sha256 for r in self.records}
        anonymized = self._timed("anonymize", n, lambda: self._run_stage(
            "outputs", self.corpus.load_image, lambda x, ids: self.method.anonymize(x, key=self.key), originals))
        reversible = self.method.info.reversible and "reversibility" in self.cfg.tasks
        if reversible:
            outs = {i: row["output_sha256"] for i, row in anonymized.items()}
            self._timed("restore", n, lambda: self._run_stage(
                "restored", lambda r: self._load("outputs", r), lambda x, ids: self.method.restore(x, key=self.key), outs))
            self._timed("restore_wrong_key", n, lambda: self._run_stage(
                "wrongkey", lambda r: self._load("outputs", r), lambda x, ids: self.method.restore(x, key=self.wrong_key), outs))
        metrics: dict[str, Metric] = {}
        breakdowns: dict[str, dict[str, Metric]] = {}
        per_sample: dict[str, dict] = {r.id: {"id": r.id, "identity": r.identity, "disease": r.disease,
                                              "input_sha256": r.sha256, "output_sha256": anonymized[r.id]["output_sha256"]} for r in self.records}
        evaluators: dict = {}
        t0 = time.time()
        outputs = {r.id: self._load("outputs", r) for r in self.records}
        restored = {r.id: self._load("restored", r) for r in self.records} if reversible else None
        wrong = {r.id: self._load("wrongkey", r) for r in self.records} if reversible else None
        task = lambda name, fn: self._timed(f"measure.{name}", n, fn)  # noqa: E731  (each task's share of the measure stage)
        if "classification" in self.cfg.tasks:
            evaluators["classifier"] = task("classification", lambda: self._classification(outputs, restored, metrics, breakdowns, per_sample))
        statuses = [anonymized[r.id].get("status") for r in self.records]
        if any(st is not None for st in statuses):
            from collections import Counter

            for r, st in zip(self.records, statuses):
                per_sample[r.id]["method_status"] = st
            for st, k in sorted(Counter(st or "unreported" for st in statuses).items()):
                metrics[f"method.status.{st}"] = _metric(k / n, n, note=f"{k} of {n} outputs: the method's own per-sample status")
        evaluators["bundle"] = self.ref.bundle or {"bundle": None, "note": "evaluators trained on this machine (no shipped bundle)"}
        detected = task("gate", lambda: self._gate(outputs, metrics, per_sample, evaluators))
        if "identity" in self.cfg.tasks:
            from mema.evaluation.privacy import PrivacySuite

            evaluators["recognisers"] = task("identity", lambda: PrivacySuite(self).run(outputs, restored, wrong, detected, metrics, breakdowns, per_sample))
        if "segmentation" in self.cfg.tasks:
            evaluators["segmenter"] = task("segmentation", lambda: self._segmentation(outputs, restored, metrics, per_sample))
        if "geometry" in self.cfg.tasks:
            task("geometry", lambda: self._geometry(outputs, metrics, per_sample))
        if reversible:
            task("fidelity", lambda: self._fidelity(restored, metrics))
        self.timings["measure"] = StageTiming(seconds=round(time.time() - t0, 3), images=n, images_per_s=round(n / (time.time() - t0), 2), peak_rss_mb=round(_rss_mb(), 1))
        seeds = {"evaluation": self.cfg.seed, "bootstrap": self.cfg.seed, "wrong_key": WRONG_KEY_SEED}
        if self.key is not None and self.key.key_id == key_from_seed(EVAL_KEY_SEED).key_id:
            seeds["key"] = EVAL_KEY_SEED
        if "key-security" in self.cfg.tasks:
            self._timed("key_security", n, lambda: self._key_security(metrics, evaluators))
            seeds.update(brute_force_keys=BRUTE_FORCE_SEED, universal_key_keys=UNIVERSAL_KEY_SEED, diversity_keys=DIVERSITY_SEED,
                         universal_key_black_box_keys=UNIVERSAL_BLACK_BOX_SEED,
                         key_security=self.cfg.key_security.seed)
        with open(self.out / "samples.jsonl", "w") as fh:
            for r in self.records:
                fh.write(json.dumps(per_sample[r.id], default=float) + "\n")
        results = Results(
            git_hash=_git_hash(),
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            corpus=CorpusRef(name=self.corpus.info.name, version=self.corpus.info.version,
                             manifest_sha256=self.corpus.info.manifest_sha256, split=self.cfg.split, n_samples=n,
                             registered=self.integrity.registered),
            method=self.method.info.model_dump(mode="json"),
            key_id=self.key.key_id if self.key is not None else None,
            tasks=list(self.cfg.tasks),
            config=self.cfg.model_dump(mode="json"),
            evaluators=evaluators,
            seeds=seeds,
            environment=_environment(self.device),
            libraries=library_versions(),
            timings=self.timings,
            metrics=metrics,
            breakdowns=breakdowns,
        )
        (self.out / "results.json").write_text(results.model_dump_json(indent=2) + "\n")
        return results

    # --- measurements -------------------------------------------------------------------------
    def _groups(self, idx: np.ndarray | None = None) -> np.ndarray:
        g = np.array([r.identity for r in self.records])
        return g if idx is None else g[idx]

    def _ci(self, stat, idx: np.ndarray) -> tuple[float, float] | None:
        from mema.metrics.stats import bootstrap_ci

        return bootstrap_ci(lambda b: stat(idx[b]), len(idx), groups=self._groups(idx), seed=self.cfg.seed)

    def _classification(self, outputs, restored, metrics, breakdowns, per_sample) -> dict:
        from mema.evaluators.classifier import predict_proba
        from mema.metrics.classification import cohen_kappa, macro_auroc, per_class_recall, sensitivity_specificity, top1

        model, meta = self.ref.classifier()
        recs = self.records
        y = np.array([DISEASES.index(r.disease) for r in recs])
        x_orig, ok = self.ref.eye_crops(recs)
        x_out, _ = self.ref.eye_crops(recs, [outputs[r.id] for r in recs])
        p_orig, p_out = predict_proba(model, x_orig, device=self.device), predict_proba(model, x_out, device=self.device)
        pred_orig, pred_out = p_orig.argmax(1), p_out.argmax(1)
        idx = np.flatnonzero(ok)
        k = len(DISEASES)
        metrics["classification.top1"] = _metric(top1(y[idx], pred_out[idx]), len(idx), self._ci(lambda i: top1(y[i], pred_out[i]), idx), hib=True)
        metrics["classification.top1_original"] = _metric(top1(y[idx], pred_orig[idx]), len(idx), self._ci(lambda i: top1(y[i], pred_orig[i]), idx), hib=True,
                                                          note="reference classifier on the untouched images")
        metrics["classification.top1_drop"] = _metric(top1(y[idx], pred_orig[idx]) - top1(y[idx], pred_out[idx]), len(idx), unit="fraction", hib=False)
        metrics["classification.kappa_vs_original"] = _metric(cohen_kappa(pred_orig[idx], pred_out[idx], k), len(idx),
                                                              self._ci(lambda i: cohen_kappa(pred_orig[i], pred_out[i], k), idx), hib=True)
        metrics["classification.auroc_macro"] = _metric(macro_auroc(y[idx], p_out[idx]), len(idx), self._ci(lambda i: macro_auroc(y[i], p_out[i]), idx), hib=True)
        sens, spec = sensitivity_specificity(y[idx], pred_out[idx])
        metrics["classification.sensitivity"] = _metric(sens, int((y[idx] != 0).sum()), hib=True, note="diseased predicted as any disease")
        metrics["classification.specificity"] = _metric(spec, int((y[idx] == 0).sum()), hib=True, note="Normal predicted as Normal")
        metrics["classification.no_face_in_original"] = _metric(float((~ok).sum()), len(recs), note="samples without original landmarks, left out of classification")
        rec_by_class = per_class_recall(y[idx], pred_out[idx], k)
        breakdowns["top1_by_disease"] = {d: _metric(rec_by_class[c], int((y[idx] == c).sum()), hib=True) for c, d in enumerate(DISEASES)}
        breakdowns["top1_by_age"] = {}
        breakdowns["top1_by_gender"] = {}
        for lo, hi, label in AGE_BANDS:
            sel = np.array([r.age is not None and lo <= r.age < hi for r in recs])[idx]
            breakdowns["top1_by_age"][label] = _metric(top1(y[idx][sel], pred_out[idx][sel]) if sel.any() else None, int(sel.sum()), hib=True)
        for g in ("female", "male"):
            sel = np.array([r.gender == g for r in recs])[idx]
            breakdowns["top1_by_gender"][g] = _metric(top1(y[idx][sel], pred_out[idx][sel]) if sel.any() else None, int(sel.sum()), hib=True)
        for i, r in enumerate(recs):
            per_sample[r.id].update(pred_original=DISEASES[pred_orig[i]], pred_output=DISEASES[pred_out[i]])
        if restored is not None:
            x_res, _ = self.ref.eye_crops(recs, [restored[r.id] for r in recs])
            pred_res = predict_proba(model, x_res, device=self.device).argmax(1)
            metrics["reversibility.top1_restored"] = _metric(top1(y[idx], pred_res[idx]), len(idx), hib=True)
        return {k2: meta[k2] for k2 in ("arch", "sha256", "val_top1", "n_train", "epochs", "seed") if k2 in meta}

    def _gate(self, outputs, metrics, per_sample, evaluators) -> np.ndarray:
        """The face-presence gate: an independent detector on every output (mema.attackers.gate)."""
        from mema.attackers.gate import FacePresenceGate

        gate = FacePresenceGate()
        scores = gate.scores(tqdm([outputs[r.id] for r in self.records], desc="face-presence gate", unit="img",
                                  disable=not self.progress, leave=False))
        orig = self.ref.on_originals("gate", gate.record, self.records,
                                     lambda recs: gate.scores([self.corpus.load_image(r) for r in recs]))
        detected = scores > 0
        n = len(self.records)
        idx = np.arange(n)
        metrics["gate.face_detected_rate"] = _metric(detected.mean(), n, self._ci(lambda i: detected[i].mean(), idx), hib=True,
                                                     note=f"YuNet finds a face in the output; originals: {int((orig > 0).sum())} of {n}")
        metrics["gate.realism"] = _metric(scores.mean(), n, self._ci(lambda i: scores[i].mean(), idx), hib=True,
                                          note=f"mean YuNet face score of the outputs (0 where none); originals {orig.mean():.4f}")
        for r, d, sc in zip(self.records, detected, scores):
            per_sample[r.id]["gate_face"] = bool(d)
            per_sample[r.id]["gate_score"] = round(float(sc), 4)
        evaluators["gate"] = gate.record
        return detected

    def _segmentation(self, outputs, restored, metrics, per_sample) -> dict | None:
        from mema.metrics.segmentation import dice, jaccard

        seg = self.ref.segmenter()
        recs = [r for r in self.records if r.mask_file is not None]
        if seg is None or not recs:
            metrics["segmentation.dice"] = _metric(None, 0, note="no lesion masks in this corpus/split")
            return None
        sets = {"": outputs, "_original": None}
        if restored is not None:
            sets["_restored"] = restored
        scores, per_set = {}, {}
        from mema.metrics.stats import bootstrap_ci

        def scored(images, todo):
            rows = []
            for r in tqdm(todo, desc=f"segment {'originals' if images is None else 'outputs'}", unit="img", disable=not self.progress, leave=False):
                ref = self.corpus.load_mask(r)
                pred = seg.predict(self.corpus.load_image(r) if images is None else images[r.id])
                rows.append((dice(ref, pred), jaccard(ref, pred)))
            return np.array(rows, float).reshape(len(todo), 2)

        for suffix, images in sets.items():
            # The originals' scores do not depend on the method: computed once per segmenter and cached.
            dj = self.ref.on_originals("segmentation", seg.record, recs, lambda todo: scored(None, todo)) if images is None \
                else scored(images, recs)
            d, j = dj[:, 0], dj[:, 1]
            if suffix == "":
                for r, v in zip(recs, d):
                    per_sample[r.id]["lesion_dice"] = None if np.isnan(v) else round(float(v), 5)
            groups = np.array([r.identity for r in recs])
            ci = bootstrap_ci(lambda b: np.nanmean(d[b]), len(d), groups=groups, seed=self.cfg.seed)
            n_valid = int(np.isfinite(d).sum())
            metrics[f"segmentation.dice{suffix}"] = _metric(np.nanmean(d), n_valid, ci, hib=True, note=f"n_ref={len(recs)} lesion images")
            metrics[f"segmentation.jaccard{suffix}"] = _metric(np.nanmean(j), int(np.isfinite(j).sum()), hib=True, note=f"n_ref={len(recs)}")
            scores[suffix] = np.nanmean(d)
            per_set[suffix] = d
        if scores.get("_original"):
            d_out, d_orig = per_set[""], per_set["_original"]
            ratio = lambda b: np.nanmean(d_out[b]) / np.nanmean(d_orig[b]) if np.nanmean(d_orig[b]) > 0 else np.nan  # noqa: E731
            ci = bootstrap_ci(ratio, len(recs), groups=np.array([r.identity for r in recs]), seed=self.cfg.seed)
            metrics["segmentation.dice_ratio"] = _metric(scores[""] / scores["_original"], len(recs), ci, hib=True,
                                                         note="Dice on outputs / Dice on originals")
        return seg.record

    def _geometry(self, outputs, metrics, per_sample) -> None:
        from mema.faces.landmarks import LandmarkDetector
        from mema.metrics.geometry import diagnostic_distance_error, eyeball_error, eyelid_error, gaze_error, landmark_error

        errs = defaultdict(list)
        detected = 0
        with LandmarkDetector() as det:
            for r in tqdm(self.records, desc="landmarks of outputs", unit="img", disable=not self.progress, leave=False):
                lo = self.ref.landmarks_of(r.id)
                lm = det.detect(outputs[r.id])
                per_sample[r.id]["face_detected"] = lm is not None
                if lm is None or lo is None:
                    continue
                detected += 1
                for region, v in landmark_error(lo, lm).items():
                    errs[region].append(v)
                yaw, pitch = gaze_error(lo, lm)
                errs["gaze_yaw"].append(yaw)
                errs["gaze_pitch"].append(pitch)
                errs["eyelid"].append(eyelid_error(lo, lm))
                errs["eyeball"].append(eyeball_error(lo, lm))
                try:
                    d = diagnostic_distance_error(lo, lm)
                except ValueError:
                    continue
                errs["fissure"].append((d["left_fissure"] + d["right_fissure"]) / 2)
                errs["strabismus_asymmetry"].append(d["strabismus_asymmetry"])
        n = len(self.records)
        metrics["geometry.face_detected_rate"] = _metric(detected / n, n, note="MediaPipe finds a face in the output")
        for region in ("eye", "mouth", "nose"):
            v = np.array(errs[region])
            metrics[f"geometry.landmark_error_{region}"] = _metric(v.mean() if len(v) else None, len(v), unit="inter-ocular", hib=False,
                                                                   note=f"{n - len(v)} outputs without a detected face left out")
        for k in ("gaze_yaw", "gaze_pitch"):
            v = np.array(errs[k])
            metrics[f"geometry.{k}_error"] = _metric(v.mean() if len(v) else None, len(v), unit="degrees", hib=False)
        notes = {"eyelid": "Digital Mask's eyelid error: 32 lid points", "eyeball": "Digital Mask's eyeball error: 10 iris points",
                 "fissure": "FaceDefender's lid-to-lid fissure distance, both eyes",
                 "strabismus_asymmetry": "FaceDefender's strabismus measure: |iris-to-inner-canthus left - right|"}
        for k, note in notes.items():
            v = np.array(errs[k])
            metrics[f"geometry.{k}_error"] = _metric(v.mean() if len(v) else None, len(v), unit="inter-ocular", hib=False,
                                                     note=f"{note}; change from the original, over outputs with a detected face")

    def _key_security(self, metrics, evaluators) -> None:
        from mema.evaluation.attacks import key_security_on_corpus
        from mema.imageio import atomic_write_bytes

        res = key_security_on_corpus(self.corpus, self.method, self.key, self.cfg.key_security, records=self.records, far=self.cfg.far,
                                     ref=self.ref, device=self.device, progress=self.progress)
        atomic_write_bytes(self.out / "key_security.json", (res.model_dump_json(indent=2) + "\n").encode())
        metrics.update(res.metrics())
        evaluators["key_security"] = {"judge": res.judge, "skipped": res.skipped, "seconds": res.seconds,
                                      "invalid": {k: v.reason for k, v in res.invalid.items()}}

    def _fidelity(self, restored, metrics) -> None:
        from mema.metrics.image import psnr, ssim

        ps = np.array([psnr(self.corpus.load_image(r), restored[r.id]) for r in self.records])
        ss = np.array([ssim(self.corpus.load_image(r), restored[r.id]) for r in self.records])
        finite = np.isfinite(ps)
        capped = np.minimum(ps, 100.0)
        idx = np.arange(len(ps))
        metrics["reversibility.psnr"] = _metric(float(np.mean(capped)), len(ps), self._ci(lambda i: capped[i].mean(), idx), unit="dB", hib=True,
                                                note=f"{int((~finite).sum())} exact restorations counted as 100 dB")
        metrics["reversibility.ssim"] = _metric(float(np.mean(ss)), len(ss), self._ci(lambda i: ss[i].mean(), idx), hib=True)
