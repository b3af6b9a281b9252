"""What a generated corpus's card may claim, gathered from the run's own records (``card/run.json``).

Every statement of the card written by ``mema-generate card`` comes from here or from a measured report
(leakage, attributes, split disjointness), never from a fixed text: the backend and what it draws, the
weights that made the images with their licences (weights manifest), steps, seeds, the filter's
recognisers and thresholds, the review's outcome, and the licence that follows from the inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mema.generation.stage import StageError, read_stage

Backend = Literal["diffusion", "procedural", "dcgan"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightUse(Strict):
    role: str
    key: str  # the sample stage's weights key
    sha256: str
    source: str  # "manifest:<name>", "local input:<name>" or "trained on the private real set"
    licence: str
    research_only: bool
    released: bool = False


class ReferenceFaces(Strict):
    source: str
    licence: str
    research_only: bool


class Threshold(Strict):
    role: Literal["filter", "held-out"]
    l2: float
    centroid_l2: float
    source: str
    recogniser_licence: str


class FilterFacts(Strict):
    filtered_by: list[str]
    held_out: list[str]
    thresholds: dict[str, Threshold]
    on_no_face: Literal["drop", "keep"]
    n_samples: int
    n_faces_found: int
    n_kept: int


class ReviewFacts(Strict):
    reviewed: bool
    n_accepted: int | None = None
    n_rejected: int | None = None
    n_relabelled: int | None = None
    n_undecided_rejected: int | None = None
    n_physician_masks: int | None = None


class RunFacts(Strict):
    backend: Backend
    generators: list[str]
    signs: Literal["drawn", "prompted", "none"]  # drawn by rules / asked of the model in the prompt / none
    labels: Literal["drawn", "prompted", "intended"]  # drawn by rules / asked of the model / planned but not shown
    age_gender_labels: Literal["estimated", "planned"]  # estimated on the rendered face / the plan's targets
    face_injection: Literal["ip-adapter", "faceid", "none"]
    sampling: str
    num_samples: int
    sample_seed: int
    resolution: int
    num_inference_steps: int | None
    guidance_scale: float | None
    adapter_scale_range: list[float] | None
    mixed_precision: str | None
    finetune: dict | None
    weights: list[WeightUse]
    reference_faces: ReferenceFaces | None
    filter: FilterFacts
    review: ReviewFacts
    n_released: int
    split_seed: int
    splits: dict[str, int]
    licence: str
    research_only: bool
    research_only_because: list[str]


# sample weights key -> (role, local input of the manifest); the LoRA is trained here
DIFFUSION_WEIGHTS = {
    "base": ("base model (Stable Diffusion 1.5)", "stable_diffusion_15"),
    "ip_adapter": ("IP-Adapter (face injection)", "ip_adapter_sd15"),
    "image_encoder": ("IP-Adapter image encoder", "ip_adapter_sd15"),
    "ip_adapter_faceid": ("IP-Adapter FaceID (face injection) and its LoRA", "ip_adapter_faceid_sd15"),
    "arcface": ("ArcFace recogniser (FaceID embedding of the reference face)", "arcface_onnx"),
}
MANIFEST_ROLES = {
    "dcgan_digiface": "face generator (DCGAN, 64 px)",
    "face_landmarker": "eye landmarks for the drawn signs",
    "age_v1": "age label of the rendered face",
    "gender_v1": "gender label of the rendered face",
}


def weight_uses(backend: str, weights: dict[str, str]) -> list[WeightUse]:
    """The weights that made the images, with their licences from the weights manifest."""
    from mema.weights import entry
    from mema.weights.local import local_inputs

    local = local_inputs()
    out = []
    for key, sha in weights.items():
        if key == "lora":
            out.append(WeightUse(role="LoRA finetuned on the private real set", key=key, sha256=sha,
                                 source="trained on the private real set", licence="not released (it can reproduce patient photos)",
                                 research_only=False))
        elif key in DIFFUSION_WEIGHTS:
            role, name = DIFFUSION_WEIGHTS[key]
            out.append(WeightUse(role=role, key=key, sha256=sha, source=f"local input:{name}", licence=local[name]["licence"],
                                 research_only=bool(local[name]["research_only"])))
        else:
            e = entry(key)  # a manifest name (procedural and dcgan backends)
            if e.sha256 != sha:
                raise StageError(f"the samples record weights {key} with sha256 {sha[:12]}..., the weights manifest {e.sha256[:12]}...")
            out.append(WeightUse(role=MANIFEST_ROLES.get(key, e.used_for), key=key, sha256=sha, source=f"manifest:{key}",
                                 licence=e.licence, research_only=e.research_only))
    return out


def reference_faces(sample_args: dict) -> ReferenceFaces | None:
    """Where the injected public faces came from and under which terms (None without face injection)."""
    ref = sample_args.get("reference_faces")
    if not ref or sample_args.get("no_face_injection"):
        return None
    try:
        stage = read_stage(Path(ref), "reference-faces")
    except StageError:
        return ReferenceFaces(source="user-supplied public faces", research_only=True,
                              licence="not recorded: taken as research-only (FFHQ, for one, is CC BY-NC-SA 4.0)")
    from mema.weights import entry

    e = entry("dcgan_digiface")
    return ReferenceFaces(source="offline DCGAN faces (`mema-generate reference-faces`)", licence=stage.get("licence", e.licence),
                          research_only=e.research_only)


def derive_licence(backend: str, weights: list[WeightUse], refs: ReferenceFaces | None, user: str | None) -> tuple[str, bool, list[str]]:
    """The corpus licence that follows from its inputs: (text, research_only, reasons)."""
    because = [f"{w.role}: {w.licence}" for w in weights if w.research_only]
    if refs is not None and refs.research_only:
        because.append(f"reference faces ({refs.source}): {refs.licence}")
    terms = []
    if any(w.source == "local input:stable_diffusion_15" for w in weights):
        terms.append("The CreativeML Open RAIL-M use restrictions of Stable Diffusion 1.5 apply")
    if because:
        terms.insert(0, "Research only (non-commercial), because of its inputs: " + "; ".join(because))
    derived = ". ".join(terms) + "." if terms else "No licence restriction follows from the inputs."
    return (f"{user.rstrip('.')}. {derived}" if user else derived), bool(because), because


def label_kind(backend: str, labels_flag: str) -> str:
    """What a disease label means for this backend; a backend that draws no signs cannot publish them as shown."""
    if backend == "dcgan" and labels_flag != "intended":
        raise StageError("--backend dcgan draws no disease signs, so its disease labels are only the plan's intended conditions; "
                         "pass --labels intended to publish them marked as such (or sample with --backend procedural/diffusion)")
    if labels_flag == "intended":
        return "intended"
    return {"procedural": "drawn", "diffusion": "prompted"}[backend]


def gather(sample_stage: dict, plan_settings: dict, samples: dict, released: list[str], leak: dict, decisions: dict | None,
           review_stage: dict | None, *, labels_flag: str, user_licence: str | None, split_seed: int, splits: dict[str, int],
           n_physician_masks: int) -> RunFacts:
    """The facts of one run: the sample stage and plan, the released samples' records, the filter report, the review."""
    a = sample_stage["args"]
    backend = a.get("backend", "diffusion")
    kind = label_kind(backend, labels_flag)
    weights = weight_uses(backend, sample_stage["weights_sha256"])
    for sid in released:  # every released image was made by the recorded weights
        if samples[sid]["provenance"]["weights"] != sample_stage["weights_sha256"]:
            raise StageError(f"sample {sid} records other weights than the sample stage; the folder mixes two runs")
    refs = reference_faces(a) if backend == "diffusion" else None
    licence, research_only, because = derive_licence(backend, weights, refs, user_licence)
    diffusion = backend == "diffusion"
    route = "none" if not diffusion or a.get("no_face_injection") else a.get("face_injection", "ip-adapter")
    finetune = None
    if diffusion and a.get("lora_dir"):
        try:
            ft = read_stage(Path(a["lora_dir"]), "finetune")
        except StageError:
            ft = None
        if ft is not None and ft["weights_sha256"].get("lora") == sample_stage["weights_sha256"].get("lora"):
            fa = ft["args"]
            finetune = {"global_step": ft.get("global_step"), "rank": fa.get("rank"), "learning_rate": fa.get("learning_rate"),
                        "lr_scheduler": fa.get("lr_scheduler"), "train_batch_size": fa.get("train_batch_size"),
                        "num_train_epochs": fa.get("num_train_epochs"), "max_train_steps": fa.get("max_train_steps"),
                        "resolution": fa.get("resolution"), "seed": fa.get("seed"), "n_real_images": ft.get("n_real_images")}
    thresholds = {}
    for name, r in leak["recognisers"].items():
        thresholds[name] = Threshold(role=r.get("role", "filter"), l2=r["threshold_l2"], centroid_l2=r["centroid_threshold_l2"],
                                     source=r["threshold_source"], recogniser_licence=r["record"].get("licence", "unknown"))
    review = ReviewFacts(reviewed=False)
    if decisions is not None:
        review = ReviewFacts(reviewed=True, n_accepted=review_stage.get("n_accepted"), n_rejected=review_stage.get("n_rejected"),
                             n_relabelled=review_stage.get("n_relabelled"), n_undecided_rejected=review_stage.get("n_undecided_rejected"),
                             n_physician_masks=n_physician_masks)
    return RunFacts(
        backend=backend, generators=sorted({samples[s]["provenance"]["generator"] for s in released}),
        signs={"procedural": "drawn", "diffusion": "prompted", "dcgan": "none"}[backend], labels=kind, age_gender_labels="estimated" if backend == "procedural" else "planned", face_injection=route, sampling=plan_settings["sampling"],
        num_samples=plan_settings["num_samples"], sample_seed=plan_settings["seed"], resolution=plan_settings["resolution"],
        num_inference_steps=plan_settings["num_inference_steps"] if diffusion else None,
        guidance_scale=plan_settings["guidance_scale"] if diffusion else None,
        adapter_scale_range=plan_settings["adapter_scale_range"] if diffusion else None,
        mixed_precision=plan_settings["mixed_precision"] if diffusion else None,
        finetune=finetune, weights=weights, reference_faces=refs,
        filter=FilterFacts(filtered_by=leak.get("filtered_by", list(leak["recognisers"])), held_out=leak.get("held_out", []),
                           thresholds=thresholds, on_no_face=leak["on_no_face"], n_samples=leak["n_samples"],
                           n_faces_found=leak["n_faces_found"], n_kept=leak["n_kept"]),
        review=review, n_released=len(released), split_seed=split_seed, splits=splits,
        licence=licence, research_only=research_only, research_only_because=because,
    )


def load_facts(corpus: str | Path) -> RunFacts:
    return RunFacts.model_validate(json.loads((Path(corpus) / "card" / "run.json").read_text()))
