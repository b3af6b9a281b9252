"""Privacy measurements of one run: every attacker, and the worst case over them (docs/metrics.md).

Attackers (all identify anonymized probes against the *original* gallery photos, rank-1):
  sface, dlib-resnet   fixed whole-face recognisers (the zoo)
  periocular           the corpus's periocular recogniser (eyes, lids, brows only)
  periocular-sface     SFace on the periocular band over the attacker's average face (training-free)
  adaptive             learns the method from its outputs on the attacker's own identities
                       (feature-map ridge and periocular fine-tune; :mod:`mema.attackers.adaptive`)
  deanon               reconstructs originals from outputs (:mod:`mema.attackers.deanon`)
  linkability          links two outputs of the same patient to each other (no original involved)
  same-key             the median of other patients' outputs under one key subtracted (:mod:`mema.attackers.linking`)
Protection of an attacker = 1 - its rank-1 (the best of its recognisers or variants; named in the note).
Worst-case protection = the minimum over all attackers that ran; it is the headline figure (its CI takes
the minimum inside each bootstrap resample).
Probes whose original has no landmarks, or whose identity has no usable gallery photo, are excluded and
counted in each metric's note.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mema.corpus.schema import DISEASES, ImageRecord
from mema.metrics.identity import accept_rate, l2_distance, rank1_match

ATTACKER_KEY_SEED = 7_000_002  # the attacker's own key for keyed methods (never the evaluation key)
ATTACK_VERSION = "1"  # bump when an attacker's training changes: cached attackers are keyed by it
ATTACK_IDENTITIES = 300  # attacker identities (train split) at most; each contributes up to 2 outputs
ZOO = ("sface", "dlib-resnet", "periocular", "periocular-sface")
# Schedules overridable for quick pipeline tests (tests/conftest.py); the defaults are what results report.
FINETUNE_EPOCHS = "MEMA_ATTACK_FINETUNE_EPOCHS"
DEANON_EPOCHS = "MEMA_DEANON_EPOCHS"


def _epochs(var: str, default: int) -> int:
    import os

    return int(os.environ.get(var, default))


@dataclass
class Identified:
    """Rank-1 hits of one attacker view over the probes; ``usable`` marks probes that could be judged."""

    hits: np.ndarray
    usable: np.ndarray
    by: str  # which recogniser or variant gave these hits


def identify(probe: np.ndarray, probe_ids: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray, by: str) -> Identified:
    g_ok = np.isfinite(gallery).all(1)
    gal, gids = gallery[g_ok], np.asarray(gallery_ids)[g_ok]
    usable = np.isfinite(probe).all(1) & np.isin(probe_ids, gids)
    hits = np.zeros(len(probe), bool)
    idx = np.flatnonzero(usable)
    if len(idx) and len(gal):
        hits[idx] = rank1_match(probe[idx], np.asarray(probe_ids)[idx], gal, gids)
    return Identified(hits, usable, by)


def strongest(views: list[Identified]) -> Identified | None:
    """The view with the highest rank-1 over its usable probes (ties: the first); None when there is none."""
    if not views:
        return None
    rate = lambda v: v.hits[v.usable].mean() if v.usable.any() else -1.0  # noqa: E731
    return max(views, key=rate)


def embed_workers() -> int:
    """Recognisers embedded side by side: one per usable core (each runs single-threaded, so the figures do not
    depend on this count)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    value = os.environ.get("MEMA_EMBED_WORKERS", str(cores))
    if not value.isdigit() or int(value) < 1:
        from mema.evaluation.harness import EvalError

        raise EvalError(f"MEMA_EMBED_WORKERS must be a whole number >= 1, got {value!r}")
    return int(value)


class Zoo:
    """The recognisers an attacker may use, with batched embedding of images cropped by original landmarks.

    Recognisers run concurrently, one thread each (onnxruntime, dlib and torch release the GIL while they
    compute); each recogniser itself runs on one thread, so its embeddings are the same whatever the count."""

    def __init__(self, recognisers: dict, progress: bool = True, workers: int | None = None):
        self.recognisers = recognisers
        self.progress = progress
        self.workers = workers if workers is not None else embed_workers()

    def _embed_one(self, name: str, images: list[np.ndarray], landmarks: list, bar) -> np.ndarray:
        rec = self.recognisers[name]
        if hasattr(rec, "embed_many"):
            out = rec.embed_many(images, landmarks).astype(np.float64)
            bar.update(len(images))
            return out
        rows = []
        for img, lm in zip(images, landmarks):
            rows.append(rec.embed(img, lm) if lm is not None else None)
            bar.update(1)
        dim = next((len(r) for r in rows if r is not None), rec.info.dim)
        return np.stack([r if r is not None else np.full(dim, np.nan) for r in rows]).astype(np.float64) if rows \
            else np.zeros((0, dim))

    def embed(self, images: list[np.ndarray], landmarks: list, desc: str, names=None) -> dict[str, np.ndarray]:
        from concurrent.futures import ThreadPoolExecutor

        names = list(names if names is not None else self.recognisers)
        # The slowest first, so that the others fill the remaining workers meanwhile.
        order = sorted(names, key=lambda n: n != "dlib-resnet")
        with tqdm(total=len(images) * len(names), desc=f"{desc} ({', '.join(names)})", unit="img", disable=not self.progress, leave=False) as bar:
            if self.workers > 1 and len(names) > 1:
                with ThreadPoolExecutor(min(self.workers, len(names))) as pool:
                    done = dict(zip(order, pool.map(lambda n: self._embed_one(n, images, landmarks, bar), order)))
            else:
                done = {n: self._embed_one(n, images, landmarks, bar) for n in order}
        return {n: done[n] for n in names}


def method_fingerprint(method, key_id: str | None, corpus_fp: str, extra: dict | None = None) -> str:
    """Everything a cached attacker depends on: the method (info, weights), the attacker's key, the corpus, the
    attack recipe and its schedule, the seed, the base periocular weights and the library versions (``extra``)."""
    blob = json.dumps({"method": method.info.model_dump(mode="json"), "weights": getattr(method, "weights_sha256", None),
                       "key_id": key_id, "corpus": corpus_fp, "attack_version": ATTACK_VERSION, **(extra or {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def attacker_records(corpus, eval_split: str, limit: int = ATTACK_IDENTITIES, seed: int = 0) -> tuple[str | None, list[ImageRecord]]:
    """(split, records) the attacker trains on: train, or dev when there is no train; never the evaluated split."""
    evaluated = {r.identity for r in corpus.split(eval_split)}
    for split in ("train", "dev"):
        if split == eval_split:
            continue
        recs = [r for r in corpus.split(split) if r.identity not in evaluated]  # never a probe's identity
        by_id: dict[str, list[ImageRecord]] = {}
        for r in sorted(recs, key=lambda r: r.id):
            by_id.setdefault(r.identity, []).append(r)
        if split == "dev":  # dev identities keep their gallery photo apart: the attacker may use it too
            for g in corpus.split("gallery"):
                if g.identity in by_id:
                    by_id[g.identity].append(g)
        multi = sorted((i for i, v in by_id.items() if len(v) >= 2),
                       key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:limit]
        if len(multi) >= 4:
            return split, [r for i in sorted(multi) for r in by_id[i]]
    return None, []


class PrivacySuite:
    """Runs every attacker of one evaluation and writes its metrics (see the module docstring)."""

    def __init__(self, ev, secondary=("sface", "periocular", "periocular-sface")):
        self.ev = ev
        self.secondary = tuple(secondary)
        self.views: dict[str, Identified] = {}
        self.info: dict = {}

    # --- helpers --------------------------------------------------------------------------------
    def _metric(self, *a, **k):
        from mema.evaluation.harness import _metric

        return _metric(*a, **k)

    def _protection(self, name: str, view: Identified | None, metrics: dict, note: str, eligible: np.ndarray | None = None) -> None:
        """``eligible``: the probes this attacker is meant to judge (all by default); the others are not 'excluded'."""
        ev = self.ev
        if view is None:
            metrics[f"privacy.protection.{name}"] = self._metric(None, 0, note=f"{note}; not run: no recogniser it can use")
            return
        idx = np.flatnonzero(view.usable)
        excluded = int((eligible if eligible is not None else np.ones(len(view.usable), bool)).sum()) - len(idx)
        hits = view.hits
        metrics[f"privacy.protection.{name}"] = self._metric(
            1 - hits[idx].mean() if len(idx) else None, len(idx), ev._ci(lambda i: 1 - hits[i].mean(), idx) if len(idx) > 1 else None,
            hib=True, note=f"{note}; strongest: {view.by}; {excluded} probes excluded (no landmarks or no usable gallery photo)")
        self.views[name] = view

    def _landmarks(self, recs: list[ImageRecord]) -> list:
        return [self.ev.ref.landmarks_of(r.id) for r in recs]

    # --- the run ----------------------------------------------------------------------------------
    def run(self, outputs: dict, restored: dict | None, wrong: dict | None, detected: np.ndarray,
            metrics: dict, breakdowns: dict, per_sample: dict) -> dict:
        from mema.evaluation.judge import calibrated_threshold

        ev = self.ev
        recs = ev.records
        ids = np.array([r.identity for r in recs])
        lms = self._landmarks(recs)
        zoo = Zoo({name: ev.ref.recogniser(name) for name in ev.cfg.recognisers}, progress=ev.progress)
        self.zoo = zoo
        gallery = [g for g in ev.corpus.split("gallery")]
        self.gallery_ids = np.array([g.identity for g in gallery])
        self.gallery_emb, orig_emb, out_emb = {}, {}, {}
        for name, rec in zoo.recognisers.items():
            ref_emb = ev.ref.embeddings(rec, name)
            tau, cal = calibrated_threshold(ev.ref, rec, name, ev.cfg.far)
            self.info[name] = {**rec.record, "threshold": tau, "far": ev.cfg.far, "calibration": cal}
            self.gallery_emb[name] = np.stack([ref_emb[g.id] for g in gallery]).astype(np.float64)
            orig_emb[name] = np.stack([ref_emb[r.id] for r in recs]).astype(np.float64)
        import time

        seconds = {}
        t = time.time()
        out_emb = zoo.embed([outputs[r.id] for r in recs], lms, "embed outputs")
        self.out_emb = out_emb
        seconds["embed_outputs"] = round(time.time() - t, 1)
        for name in zoo.recognisers:
            self._zoo_metrics(name, orig_emb[name], out_emb[name], ids, metrics, breakdowns, per_sample)
        if restored is not None:
            t = time.time()
            self._reversibility(restored, wrong, orig_emb, ids, lms, metrics)
            seconds["reversibility"] = round(time.time() - t, 1)
        self._linkability(out_emb, ids, metrics)
        if "adaptive-attack" in ev.cfg.tasks:
            self._attacks(outputs, ids, lms, metrics)
        self._worst_case(detected, metrics)
        self.info["seconds"] = seconds
        return self.info

    def _zoo_metrics(self, name, orig, out, ids, metrics, breakdowns, per_sample) -> Identified:
        ev = self.ev
        recs = ev.records
        tau = self.info[name]["threshold"]
        view = identify(out, ids, self.gallery_emb[name], self.gallery_ids, name)
        base = identify(orig, ids, self.gallery_emb[name], self.gallery_ids, name)
        ok = view.usable & np.isfinite(orig).all(1)
        idx = np.flatnonzero(ok)
        dis = l2_distance(orig, out)
        hit = view.hits
        p = f"identity.{name}"
        g = self.gallery_emb[name]
        own = {gid: g[i] for i, gid in enumerate(self.gallery_ids) if np.isfinite(g[i]).all()}
        genuine = np.array([np.linalg.norm(out[i] - own[ids[i]]) if ids[i] in own and np.isfinite(out[i]).all() else np.nan
                            for i in range(len(recs))])
        n_gal = int(np.isfinite(g).all(1).sum())
        metrics[f"{p}.id_dis"] = self._metric(np.mean(dis[idx]) if len(idx) else None, len(idx), ev._ci(lambda i: dis[i].mean(), idx), unit="L2", hib=True)
        metrics[f"{p}.same_person_rate"] = self._metric(accept_rate(dis[idx], tau), len(idx), ev._ci(lambda i: np.mean(dis[i] < tau), idx), hib=False,
                                                        note=f"output vs its original under the FAR {ev.cfg.far:g} threshold {tau:.4f}")
        metrics[f"{p}.rank1_match"] = self._metric(np.mean(hit[idx]) if len(idx) else None, len(idx), ev._ci(lambda i: hit[i].mean(), idx), hib=False,
                                                   note=f"gallery of {n_gal} photos")
        metrics[f"{p}.protection_rate"] = self._metric(1 - np.mean(hit[idx]) if len(idx) else None, len(idx), ev._ci(lambda i: 1 - hit[i].mean(), idx), hib=True)
        bi = np.flatnonzero(base.usable)
        metrics[f"{p}.rank1_match_original"] = self._metric(np.mean(base.hits[bi]) if len(bi) else None, len(bi), hib=None,
                                                            note="attack strength on untouched images")
        gi = np.flatnonzero(np.isfinite(genuine))
        metrics[f"{p}.tar_at_far"] = self._metric(accept_rate(genuine[gi], tau), len(gi), hib=False, note=f"output vs own gallery photo, FAR {ev.cfg.far:g}")
        breakdowns[f"protection_{name}_by_disease"] = {
            d: self._metric(1 - np.mean(hit[[i for i in idx if recs[i].disease == d]]) if any(recs[i].disease == d for i in idx) else None,
                            sum(recs[i].disease == d for i in idx), hib=True) for d in DISEASES}
        for i, r in enumerate(recs):
            per_sample[r.id][f"id_dis_{name}"] = None if i not in set(idx) else round(float(dis[i]), 5)
            per_sample[r.id][f"rank1_hit_{name}"] = bool(hit[i])
        self._protection(name, Identified(hit, ok, name), metrics, f"{name} rank-1 against the original gallery")
        return view

    def _reversibility(self, restored, wrong, orig_emb, ids, lms, metrics) -> None:
        recs = self.ev.records
        res_emb = self.zoo.embed([restored[r.id] for r in recs], lms, "embed restored")
        wr_emb = self.zoo.embed([wrong[r.id] for r in recs], lms, "embed wrong-key")
        for name in self.zoo.recognisers:
            self._reversibility_of(name, orig_emb[name], res_emb[name], wr_emb[name], ids, metrics)

    def _reversibility_of(self, name, orig, res, wr, ids, metrics) -> None:
        tau = self.info[name]["threshold"]
        okr = np.flatnonzero(np.isfinite(orig).all(1) & np.isfinite(res).all(1))
        dres = l2_distance(orig, res)
        ev = self.ev
        metrics[f"reversibility.{name}.id_dis_restored"] = self._metric(np.mean(dres[okr]) if len(okr) else None, len(okr),
                                                                       ev._ci(lambda i: dres[i].mean(), okr), unit="L2", hib=False)
        metrics[f"reversibility.{name}.same_person_rate_restored"] = self._metric(accept_rate(dres[okr], tau), len(okr),
                                                                                 ev._ci(lambda i: np.mean(dres[i] < tau), okr), hib=True)
        view = identify(wr, ids, self.gallery_emb[name], self.gallery_ids, name)
        okw = np.flatnonzero(view.usable)
        metrics[f"reversibility.{name}.wrong_key_protection_rate"] = self._metric(
            1 - np.mean(view.hits[okw]) if len(okw) else None, len(okw), ev._ci(lambda i: 1 - view.hits[i].mean(), okw), hib=True)

    def _linkability(self, out_emb: dict, ids: np.ndarray, metrics: dict) -> None:
        """Each identity's first output as probe, its last output as the gallery of outputs."""
        recs = self.ev.records
        first, last = {}, {}
        for i, r in enumerate(recs):
            first.setdefault(r.identity, i)
            last[r.identity] = i
        pairs = {k: (first[k], last[k]) for k in first if first[k] != last[k]}
        if len(pairs) < 2:
            metrics["privacy.protection.linkability"] = self._metric(None, 0, note="fewer than two identities with two outputs")
            return
        probe_idx = np.array([p for p, _ in pairs.values()])
        gal_idx = np.array([g for _, g in pairs.values()])
        views = []
        for name, emb in out_emb.items():
            v = identify(emb[probe_idx], ids[probe_idx], emb[gal_idx], ids[gal_idx], name)
            hits = np.zeros(len(recs), bool)
            usable = np.zeros(len(recs), bool)
            hits[probe_idx], usable[probe_idx] = v.hits, v.usable
            views.append(Identified(hits, usable, name))
        eligible = np.zeros(len(recs), bool)
        eligible[probe_idx] = True
        self._protection("linkability", strongest(views), metrics,
                         f"an output linked to another output of the same patient among {len(pairs)} patients' outputs", eligible)

    # --- attackers that learn ------------------------------------------------------------------------
    def _attack_cache(self) -> Path:
        import os

        from mema.evaluation.environment import library_versions

        ev = self.ev
        key_id = self.attacker_key.key_id if self.attacker_key is not None else None
        base = self.zoo.recognisers.get("periocular")
        extra = {"seed": ev.cfg.seed, "epochs": [_epochs(FINETUNE_EPOCHS, 4), _epochs(DEANON_EPOCHS, 12)],
                 "periocular": base.record.get("sha256") if base is not None else None, "recognisers": sorted(self.secondary),
                 "libraries": library_versions()}
        home = Path(os.environ.get("MEMA_HOME", Path.home() / ".cache" / "mema")).expanduser()
        fp = method_fingerprint(ev.method, key_id, ev.corpus.fingerprint, extra)
        folder = home / "attackers" / ev.corpus.fingerprint / f"{ev.method.info.name}-{fp}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _attacker_set(self):
        """Attacker records, their originals, landmarks, and the method's outputs on up to 2 photos each (cached)."""
        from mema.imageio import atomic_write_bytes
        from mema.keys import key_from_seed
        from mema.methods import MethodFailure, check_output

        ev = self.ev
        split, recs = attacker_records(ev.corpus, ev.cfg.split)
        if split is None:
            return None
        self.attacker_key = key_from_seed(ATTACKER_KEY_SEED) if ev.method.info.reversible or ev.method.info.key_scheme != "none" else None
        lms_all = self._landmarks(recs)
        keep = [i for i, lm in enumerate(lms_all) if lm is not None]
        recs, lms_all = [recs[i] for i in keep], [lms_all[i] for i in keep]
        per_id: dict[str, list[int]] = {}
        for i, r in enumerate(recs):
            if r.split != "gallery":
                per_id.setdefault(r.identity, []).append(i)
        anon_idx = [i for v in per_id.values() for i in v[:2]]
        cache = self._attack_cache() / "attacker_outputs.npz"
        want = np.array([recs[i].sha256 for i in anon_idx])
        outputs = None
        if cache.exists():
            with np.load(cache) as data:
                if data["input_sha256"].tolist() == want.tolist():
                    outputs = data["outputs"]
        if outputs is None:
            images = np.stack([ev.corpus.load_image(recs[i]) for i in anon_idx])
            chunks = []
            bs = ev.cfg.batch_size
            for s in tqdm(range(0, len(images), bs), desc="attacker runs the method", unit="batch", disable=not ev.progress):
                batch = images[s : s + bs]
                ids_b = [recs[i].id for i in anon_idx[s : s + bs]]
                out_b = MethodFailure.wrap(ev.method.info.name, "anonymize (attacker set)", ids_b, ev.method.anonymize, batch, key=self.attacker_key)
                chunks.append(check_output(ev.method.info.name, batch, out_b, ids_b, "anonymize (attacker set)"))
            outputs = np.concatenate(chunks)
            import io

            buf = io.BytesIO()
            np.savez_compressed(buf, input_sha256=want, outputs=outputs)
            atomic_write_bytes(cache, buf.getvalue())
        originals = {i: ev.corpus.load_image(recs[i]) for i in range(len(recs))}
        return split, recs, lms_all, anon_idx, outputs, originals

    def _attacks(self, outputs: dict, ids: np.ndarray, lms: list, metrics: dict) -> None:
        import time

        ev = self.ev
        recs = ev.records
        t0 = time.time()
        attacker = self._attacker_set()
        costs = {}
        if attacker is None:
            for name in ("adaptive", "deanon", "same-key"):
                metrics[f"privacy.protection.{name}"] = self._metric(None, 0, note="not run: the corpus has no attacker identities "
                                                                                  "outside the evaluated split (train or dev)")
            return
        split, arecs, alms, anon_idx, aouts, aorig = attacker
        costs["attacker_set"] = round(time.time() - t0, 1)
        sec = [n for n in self.secondary if n in self.zoo.recognisers]
        out_list = [outputs[r.id] for r in recs]
        a_ids = np.array([arecs[i].identity for i in anon_idx])
        a_lms = [alms[i] for i in anon_idx]
        note_set = f"attacker: {len(set(a_ids))} {split} identities, {len(anon_idx)} outputs" + (", its own key" if self.attacker_key else "")
        self.info["attacker_set"] = {"split": split, "identities": int(len(set(a_ids))), "outputs": int(len(anon_idx)),
                                     "own_key": self.attacker_key is not None, "recognisers": sec}

        # Same-key median attack: public average face = median of the attacker's own original photos.
        t = time.time()
        public = np.median(np.stack([aorig[i] for i in range(len(arecs))]).astype(np.float32), axis=0)
        from mema.attackers.linking import median_composites, shared_content

        if len(out_list) >= 3:
            comp = median_composites(np.stack(out_list), public, seed=ev.cfg.seed)
            comp_emb = self.zoo.embed(list(comp), lms, "embed median composites", sec)
            views = [identify(comp_emb[n], ids, self.gallery_emb[n], self.gallery_ids, n) for n in sec]
            self._protection("same-key", strongest(views), metrics, "outputs minus the median of 31 other patients' outputs, "
                             "plus an average real face, identified against the original gallery")
        else:
            metrics["privacy.protection.same-key"] = self._metric(None, 0, note="not run: fewer than 3 outputs to take a median of")
        firsts = sorted({r.identity: i for i, r in reversed(list(enumerate(recs)))}.values())
        metrics["privacy.shared_content_outputs"] = self._metric(shared_content(np.stack([out_list[i] for i in firsts]), seed=ev.cfg.seed),
                                                                 len(firsts), note="mean pixel correlation between outputs of different patients")
        metrics["privacy.shared_content_originals"] = self._metric(shared_content(np.stack([ev.corpus.load_image(recs[i]) for i in firsts]),
                                                                                  seed=ev.cfg.seed), len(firsts),
                                                                   note="the same on the originals, for comparison")
        costs["same-key"] = round(time.time() - t, 1)

        # Adaptive: feature map and periocular fine-tune.
        t = time.time()
        adaptive_views = self._adaptive(aouts, a_ids, a_lms, anon_idx, arecs, alms, aorig, out_list, ids, lms, sec)
        self._protection("adaptive", strongest(adaptive_views), metrics, note_set)
        costs["adaptive"] = round(time.time() - t, 1)

        # De-anonymization: outputs -> originals.
        t = time.time()
        deanon_views = self._deanon(aouts, [aorig[i] for i in anon_idx], out_list, ids, lms, sec)
        self._protection("deanon", strongest(deanon_views), metrics, note_set + "; reconstructions identified by " + ", ".join(sec))
        costs["deanon"] = round(time.time() - t, 1)
        self.info["attack_seconds"] = costs

    def _attacker_embeddings(self, aouts, aorigs, a_lms, sec) -> tuple[dict, dict]:
        """The attacker's outputs and originals embedded by ``sec``, cached beside the attacker's weights: they depend
        only on what the cache folder is keyed by, plus the recognisers' records and the exact pixels (both hashed)."""
        import io

        from mema.imageio import atomic_write_bytes

        h = hashlib.sha256(json.dumps({n: self.zoo.recognisers[n].record for n in sec}, sort_keys=True, default=str).encode())
        for arr in (np.ascontiguousarray(aouts), np.ascontiguousarray(np.stack(aorigs))):
            h.update(arr.tobytes())
        h.update(json.dumps([None if lm is None else np.asarray(lm.points).tolist() for lm in a_lms]).encode())
        fp = h.hexdigest()
        path = self._attack_cache() / "attacker_embeddings.npz"
        if path.exists():
            with np.load(path) as data:
                if str(data["fingerprint"]) == fp:
                    return ({n: data[f"out__{n}"] for n in sec}, {n: data[f"org__{n}"] for n in sec})
        both = self.zoo.embed(list(aouts) + list(aorigs), list(a_lms) * 2, "embed attacker outputs and originals", sec)
        k = len(aouts)
        a_out, a_org = {n: e[:k] for n, e in both.items()}, {n: e[k:] for n, e in both.items()}
        buf = io.BytesIO()
        np.savez(buf, fingerprint=np.array(fp), **{f"out__{n}": a_out[n] for n in sec}, **{f"org__{n}": a_org[n] for n in sec})
        atomic_write_bytes(path, buf.getvalue())
        return a_out, a_org

    def _adaptive(self, aouts, a_ids, a_lms, anon_idx, arecs, alms, aorig, out_list, ids, lms, sec) -> list[Identified]:
        from mema.attackers.adaptive import feature_map_attack
        from mema.attackers.periocular import embed_crops, load_net, state_bytes, train_periocular
        from mema.faces.eyecrop import periocular_crop
        from mema.imageio import atomic_write_bytes

        ev = self.ev
        views = []
        # Feature map over the secondary recognisers' concatenated unit embeddings.
        a_out, a_org = self._attacker_embeddings(aouts, [aorig[i] for i in anon_idx], a_lms, sec)
        x = np.hstack([a_out[n] for n in sec])
        y = np.hstack([a_org[n] for n in sec])
        ok = np.isfinite(x).all(1) & np.isfinite(y).all(1)
        if ok.sum() >= 8:
            probe = np.hstack([self.out_emb[n] for n in sec])
            gal = np.hstack([self.gallery_emb[n] for n in sec])
            p_ok = np.isfinite(probe).all(1)
            mapped = np.full(probe.shape, np.nan)
            pm, gm, rep = feature_map_attack(x[ok], y[ok], a_ids[ok], np.nan_to_num(probe[p_ok]), np.nan_to_num(gal))
            mapped[p_ok] = pm
            gm[~np.isfinite(gal).all(1)] = np.nan
            views.append(identify(mapped, ids, gm, self.gallery_ids, "feature-map (" + "+".join(sec) + ")"))
            self.info["feature_map"] = rep
        # Periocular fine-tune on the attacker's outputs and originals.
        if "periocular" in self.zoo.recognisers:
            path = self._attack_cache() / "periocular_finetuned.pt"
            base = self.zoo.recognisers["periocular"]
            if path.exists():
                net = load_net(path)
            else:
                crops = [periocular_crop(o, lm) for o, lm in zip(aouts, a_lms)]
                crops += [periocular_crop(aorig[i], alms[i]) for i in range(len(arecs))]
                labels = np.concatenate([a_ids, np.array([r.identity for r in arecs])])
                init = {k: v.clone() for k, v in base.net.state_dict().items()}
                net, report = train_periocular(np.stack(crops), labels, epochs=_epochs(FINETUNE_EPOCHS, 4), lr=5e-4, seed=ev.cfg.seed, init=init,
                                               device=ev.device, progress=ev.progress)
                atomic_write_bytes(path, state_bytes(net))
                (path.with_suffix(".json")).write_text(json.dumps(report.__dict__, indent=1))
                net = load_net(path)
            probe = np.full((len(out_list), 128), np.nan)
            p_ok = [i for i, lm in enumerate(lms) if lm is not None]
            if p_ok:
                probe[p_ok] = embed_crops(net, np.stack([periocular_crop(out_list[i], lms[i]) for i in p_ok]))
            gallery = ev.corpus.split("gallery")
            g_lms = self._landmarks(gallery)
            gal = np.full((len(gallery), 128), np.nan)
            g_ok = [i for i, lm in enumerate(g_lms) if lm is not None]
            if g_ok:
                gal[g_ok] = embed_crops(net, np.stack([periocular_crop(ev.corpus.load_image(gallery[i]), g_lms[i]) for i in g_ok]))
            views.append(identify(probe, ids, gal, self.gallery_ids, "periocular fine-tuned on outputs"))
        return views

    def _deanon(self, aouts, aorigs, out_list, ids, lms, sec) -> list[Identified]:
        import torch

        from mema.attackers.deanon import DeanonUNet, reconstruct, train_deanon
        from mema.imageio import atomic_write_bytes

        ev = self.ev
        path = self._attack_cache() / "deanon.pt"
        net = DeanonUNet()
        if path.exists():
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            net.eval()
        else:
            net, report = train_deanon(np.asarray(aouts), np.stack(aorigs), epochs=_epochs(DEANON_EPOCHS, 12), seed=ev.cfg.seed,
                                       device=ev.device, progress=ev.progress)
            import io

            buf = io.BytesIO()
            torch.save(net.state_dict(), buf)
            atomic_write_bytes(path, buf.getvalue())
            path.with_suffix(".json").write_text(json.dumps(report, indent=1))
        net = net.to("cpu").eval()
        rec = reconstruct(net, np.stack(out_list))
        self.reconstructions = rec
        emb = self.zoo.embed(list(rec), lms, "embed reconstructions", sec)
        return [identify(emb[n], ids, self.gallery_emb[n], self.gallery_ids, f"{n} on reconstructions") for n in sec]

    # --- the headline ----------------------------------------------------------------------------------
    def _worst_case(self, detected: np.ndarray, metrics: dict) -> None:
        ev = self.ev
        ran = {k: v for k, v in self.views.items() if v.usable.any()}
        if not ran:
            metrics["privacy.worst_case_protection"] = self._metric(None, 0, note="no attacker could judge any probe")
            return
        prot = {k: 1 - v.hits[v.usable].mean() for k, v in ran.items()}
        worst = min(prot, key=prot.get)
        v = ran[worst]
        idx = np.flatnonzero(v.usable)

        def minimum(sel, views=ran):
            """The minimum over attackers within one resample (the weakest attacker is chosen per resample too)."""
            vals = [1 - w.hits[sel][w.usable[sel]].mean() for w in views.values() if w.usable[sel].any()]
            return min(vals) if vals else float("nan")

        everyone = np.arange(len(detected))
        metrics["privacy.worst_case_protection"] = self._metric(
            prot[worst], len(idx), ev._ci(minimum, everyone), hib=True,
            note=f"minimum over {len(ran)} attackers ({', '.join(sorted(ran))}); weakest against: {worst}; CI of the minimum")
        face = {}
        for k, view in ran.items():
            sel = view.usable & detected
            if sel.any():
                face[k] = 1 - view.hits[sel].mean()
                si = np.flatnonzero(sel)
                metrics[f"privacy.protection_face.{k}"] = self._metric(face[k], len(si), ev._ci(lambda i: 1 - view.hits[i].mean(), si), hib=True,
                                                                     note="over probes whose output has a detected face")
        if face:
            w = min(face, key=face.get)
            sel = np.flatnonzero(ran[w].usable & detected)
            face_views = {k: Identified(view.hits, view.usable & detected, view.by) for k, view in ran.items()}
            metrics["privacy.worst_case_protection_face"] = self._metric(
                face[w], len(sel), ev._ci(lambda i: minimum(i, face_views), np.flatnonzero(detected)), hib=True,
                note=f"over outputs in which the gate finds a face; weakest against: {w}; CI of the minimum")
        else:
            metrics["privacy.worst_case_protection_face"] = self._metric(None, 0, note="no output has a detected face")
