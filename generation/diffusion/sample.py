"""Step 2: real-guided sampling from the finetuned model with IP-Adapter (or IP-Adapter FaceID) face injection.

Output folder::

    plan.json               settings, their hash, the real set's aggregate stats, and the full plan
    images/<id>.png         samples
    done/<id>.json          one finished sample's record (written atomically after its image)
    shards/<i>-of-<n>.lock  held while a shard runs (host, pid); a second run of a live shard is refused
    samples.jsonl, stage.json   written when every planned sample is done (by whichever shard finishes last)

    run.lock                held while a process starts or checks for completion (see ``mema.generation.runner``)

The job runs on :mod:`mema.generation.runner`: resuming after a kill re-runs only samples without a
``done`` file, with the same per-sample seed, so the result is identical and nothing is duplicated; a
resume (or another shard) with different settings is refused and the differing settings are named;
processes started together on a fresh folder agree on one plan. Flags that the chosen backend does not
read, or that contradict each other, are refused before anything is loaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mema.generation import runner
from mema.generation.sampling_plan import SAMPLINGS, SampleSpec, make_sample_plan, settings_hash
from mema.generation.stage import StageError, read_stage, write_stage
from mema.imageio import atomic_write_bytes, write_png

SAMPLES = "samples.jsonl"


def add_arguments(p) -> None:
    p.add_argument("--backend", choices=["diffusion", "procedural", "dcgan"], default="diffusion",
                   help="diffusion: SD 1.5 + LoRA (+ IP-Adapter); procedural: MeMa-mini's renderer (DCGAN faces with drawn signs and"
                        " lesion masks); dcgan: offline DCGAN faces without signs (pipeline checks)")
    p.add_argument("--pretrained_model_name_or_path", default=None)
    p.add_argument("--original_config_dir", default=None)
    p.add_argument("--lora_dir", default=None, help="a finished `mema-generate finetune` folder (diffusion backend)")
    p.add_argument("--real_stats", default=None, help="real_stats.json (default: <lora_dir>/real_stats.json; see `mema-generate stats`)")
    p.add_argument("--ip_adapter", default=None, help="folder with models/ip-adapter_sd15.safetensors and models/image_encoder/")
    p.add_argument("--reference_faces", default=None, help="public face folder (FFHQ, or `mema-generate reference-faces`)")
    p.add_argument("--no_face_injection", action="store_true", help="direct sampling, no IP-Adapter (paper Table 1 baseline)")
    p.add_argument("--face_injection", choices=["ip-adapter", "faceid"], default="ip-adapter",
                   help="ip-adapter: CLIP image features of the reference face (MeMa); faceid: its ArcFace embedding through"
                        " IP-Adapter FaceID (research-only weights: --ip_adapter_faceid, --arcface_onnx)")
    p.add_argument("--ip_adapter_faceid", default=None, help="folder with ip-adapter-faceid_sd15.bin (h94/IP-Adapter-FaceID)")
    p.add_argument("--arcface_onnx", default=None, help="ArcFace ONNX recogniser, 512-d (default: $MEMA_ARCFACE_ONNX)")
    p.add_argument("--sampling", choices=SAMPLINGS, default="real-guided",
                   help="real-guided: the real set's joint distribution (MeMa); random: uniform; balanced: equal classes, cycling severities (MeMa-mini)")
    p.add_argument("--adapter_scale_min", type=float, default=0.2)
    p.add_argument("--adapter_scale_max", type=float, default=0.4)
    p.add_argument("--num_samples", type=int, required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--num_inference_steps", type=int, default=30)
    p.add_argument("--guidance_scale", type=float, default=7.5)
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--shard", default=None, help="i/n: run every n-th sample starting at i (0-based); default: the accelerate process")
    p.add_argument("--quiet", action="store_true")


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``--shard i/n``, or without it the accelerate process's place (one process: 0/1)."""
    shard = runner.parse_shard(spec)
    if shard is None:
        from accelerate import PartialState

        state = PartialState()
        return state.process_index, state.num_processes
    return shard


# Flags only the diffusion backend reads: given with another backend they would be silently ignored.
DIFFUSION_ONLY = ("pretrained_model_name_or_path", "original_config_dir", "lora_dir", "ip_adapter", "reference_faces",
                  "face_injection", "ip_adapter_faceid", "arcface_onnx", "adapter_scale_min", "adapter_scale_max",
                  "num_inference_steps", "guidance_scale", "mixed_precision")


def contradictions(args, defaults: dict) -> list[str]:
    """Flags that contradict the backend or each other (checked before anything is loaded)."""
    given = lambda k: getattr(args, k) != defaults.get(k)  # noqa: E731
    out = []
    if args.backend != "diffusion":
        bad = [k for k in DIFFUSION_ONLY if given(k)]
        if bad:
            out.append(f"--backend {args.backend} does not use " + ", ".join(f"--{k}" for k in bad)
                       + (" (it draws no disease signs and injects no face)" if args.backend == "dcgan" else
                          " (it renders MeMa-mini's procedural faces and signs, with no diffusion model)"))
        return out
    if args.no_face_injection:
        bad = [k for k in ("ip_adapter", "reference_faces", "ip_adapter_faceid", "arcface_onnx", "adapter_scale_min",
                           "adapter_scale_max", "face_injection") if given(k)]
        if bad:
            out.append("--no_face_injection contradicts " + ", ".join(f"--{k}" for k in bad))
    elif args.face_injection == "faceid":
        if given("ip_adapter"):
            out.append("--face_injection faceid does not use --ip_adapter (FaceID brings its own projection: --ip_adapter_faceid)")
    else:
        bad = [k for k in ("ip_adapter_faceid", "arcface_onnx") if given(k)]
        if bad:
            out.append(", ".join(f"--{k}" for k in bad) + " given without --face_injection faceid")
    return out


def _defaults() -> dict:
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    return {a.dest: a.default for a in p._actions}


def _read_stats(path: Path) -> dict:
    """``real_stats.json`` of `mema-generate stats` / `finetune`, refused when it is not one."""
    try:
        stats = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StageError(f"{path} is not JSON; pass the real_stats.json that `mema-generate stats` wrote") from None
    missing = [k for k in ("n_images", "disease", "gender", "age_bins", "age_hist") if not isinstance(stats, dict) or k not in stats]
    if missing:
        raise StageError(f"{path} is not a real_stats.json (missing {', '.join(missing)}); `mema-generate stats` writes one")
    if stats["n_images"] < 1 or not sum(stats["disease"].values()):
        raise StageError(f"{path}: the real set it describes has no usable images")
    return stats


def _settings(args, stats: dict, references, weights: dict) -> dict:
    return {
        "backend": args.backend,
        "num_samples": args.num_samples, "seed": args.seed, "sampling": args.sampling,
        "face_injection": not args.no_face_injection,
        # only FaceID adds its route, so plans written before it existed still resume
        **({"face_injection_route": "faceid"} if _faceid(args) else {}),
        "adapter_scale_range": None if args.no_face_injection else [args.adapter_scale_min, args.adapter_scale_max],
        "resolution": args.resolution, "num_inference_steps": args.num_inference_steps, "guidance_scale": args.guidance_scale,
        "mixed_precision": args.mixed_precision,
        "real_stats_sha256": settings_hash(stats),
        "reference_faces_sha256": settings_hash(sorted(f.sha256 for f in references)) if references else None,
        "weights": weights,
    }


def _faceid(args) -> bool:
    return args.backend == "diffusion" and not args.no_face_injection and args.face_injection == "faceid"


def run(args) -> Path:
    import torch
    from tqdm import tqdm

    from mema.generation.diffusion.loading import LORA_FILE, attach_ip_adapter, base_pipeline, base_weights_hash
    from mema.generation.reference_faces import load_reference_faces
    from mema.runtime import default_device
    from mema.weights.local import hash_files

    t0 = time.time()
    out = Path(args.output_dir)
    if args.num_samples < 1:
        raise StageError("--num_samples must be at least 1")
    bad = contradictions(args, _defaults())
    if bad:
        raise StageError("; ".join(bad))
    stats_path = Path(args.real_stats) if args.real_stats else (Path(args.lora_dir) / "real_stats.json" if args.lora_dir else None)
    if stats_path is None or not stats_path.is_file():
        raise StageError("need the real set's distribution: --lora_dir FINETUNE_DIR or --real_stats real_stats.json (`mema-generate stats`)")
    stats = _read_stats(stats_path)
    faceid = None
    if args.backend in ("dcgan", "procedural"):
        args.no_face_injection = True
        from mema.weights import entry

        names = ("dcgan_digiface",) if args.backend == "dcgan" else ("dcgan_digiface", "face_landmarker", "age_v1", "gender_v1")
        weights = {name: entry(name).sha256 for name in names}
        references = []
    else:
        if args.pretrained_model_name_or_path is None or args.lora_dir is None:
            raise StageError("the diffusion backend needs --pretrained_model_name_or_path SD15 and --lora_dir FINETUNE_DIR")
        lora_dir = Path(args.lora_dir)
        read_stage(lora_dir, "finetune")
        if not (lora_dir / LORA_FILE).is_file():
            raise StageError(f"{lora_dir} has no {LORA_FILE}")
        if _faceid(args):
            from mema.generation.diffusion.faceid import FaceIdInjection

            faceid = FaceIdInjection(args.ip_adapter_faceid, args.arcface_onnx)  # names the missing files
        if not args.no_face_injection:
            if args.reference_faces is None or (faceid is None and args.ip_adapter is None):
                raise StageError("face injection needs --reference_faces FOLDER and "
                                 + ("" if faceid else "--ip_adapter FOLDER ") + "(or pass --no_face_injection)")
            if not 0 <= args.adapter_scale_min <= args.adapter_scale_max:
                raise StageError("need 0 <= --adapter_scale_min <= --adapter_scale_max")
        references = [] if args.no_face_injection else load_reference_faces(args.reference_faces)
        weights = {"base": base_weights_hash(args.pretrained_model_name_or_path), "lora": hash_files(lora_dir / LORA_FILE)[LORA_FILE]}
        if faceid is not None:
            weights |= faceid.weights
        elif not args.no_face_injection:
            from mema.weights.local import combined_hash, require_local

            ip, _ = require_local("ip_adapter_sd15", args.ip_adapter)
            weights["ip_adapter"] = hash_files(ip / "models" / "ip-adapter_sd15.safetensors")["ip-adapter_sd15.safetensors"]
            weights["image_encoder"] = combined_hash(hash_files(ip / "models" / "image_encoder"))
    settings = _settings(args, stats, references, weights)
    scale_range = None if args.no_face_injection else (args.adapter_scale_min, args.adapter_scale_max)
    plan = make_sample_plan(stats, references, num_samples=args.num_samples, seed=args.seed, sampling=args.sampling, scale_range=scale_range)
    run_ = runner.start_run(out, settings, lambda: {"real_stats": stats, "plan": [s.model_dump() for s in plan]}, what="sample")

    i, n = parse_shard(args.shard)
    route = "ip-adapter-faceid" if faceid else "ip-adapter"
    with run_.shard_lock(i, n):
        todo = set(run_.pending(((s.index, s.id) for s in plan), (i, n)))
        mine = [s for s in plan if s.id in todo]
        if mine:
            if args.backend == "dcgan":
                from mema.generation.dcgan import FaceGenerator

                faces = FaceGenerator(size=args.resolution)
                generate = lambda spec: (dcgan_face(faces, spec.seed), None, {})  # noqa: E731
            elif args.backend == "procedural":
                from mema.generation.presets import CorpusConfig
                from mema.generation.procedural import ProceduralRenderer

                renderer = ProceduralRenderer(CorpusConfig(image_size=args.resolution, seed=args.seed))
                generate = lambda spec: procedural_sample(renderer, spec)  # noqa: E731
            else:
                if args.shard is None:  # under `accelerate launch`: each process on its own GPU
                    from accelerate import PartialState

                    device = PartialState().device
                else:
                    device = default_device()
                dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)
                # embedded first, so a reference face without a detectable face stops the run before the model loads
                refs = {f.sha256: f for f in references}
                face_ids = None if faceid is None else faceid.embed_references(
                    args.reference_faces, {s.reference_face_sha256: refs[s.reference_face_sha256].file_name for s in mine})
                pipe = base_pipeline(args.pretrained_model_name_or_path, config_dir=args.original_config_dir, dtype=dtype)
                pipe.load_lora_weights(str(lora_dir), weight_name=LORA_FILE)
                if faceid is not None:
                    faceid.attach(pipe)
                elif not args.no_face_injection:
                    attach_ip_adapter(pipe, args.ip_adapter)
                pipe.to(device)
                pipe.set_progress_bar_config(disable=True)
                generate = lambda spec: (_generate(pipe, spec, args, refs, face_ids), None, {})  # noqa: E731
            total = sum(1 for s in plan if s.index % n == i)
            bar = tqdm(total=total, initial=total - len(mine), desc=f"sample shard {i}/{n}", disable=args.quiet)
            for spec in mine:
                image, mask, extra = generate(spec)
                sha = write_png(out / "images" / f"{spec.id}.png", image)
                record = _record(spec, sha, image, weights, args.backend, route, extra.pop("attempt", 0)) | extra
                if mask is not None:
                    record["mask_file"] = f"masks/{spec.id}.png"
                    record["mask_sha256"] = write_png(out / record["mask_file"], mask)
                run_.mark_done(spec.id, record)
                bar.update(1)
            bar.close()
            if args.backend == "procedural":
                renderer.close()
    _merge_if_complete(run_, out, plan, args, weights, time.time() - t0)
    return out


def _generate(pipe, spec: SampleSpec, args, refs, face_ids: dict | None = None) -> np.ndarray:
    import torch

    from mema.imageio import read_rgb

    kwargs = {}
    if spec.adapter_scale is not None:
        pipe.set_ip_adapter_scale(spec.adapter_scale)
        if face_ids is not None:
            from mema.generation.diffusion.faceid import id_embeds

            kwargs["ip_adapter_image_embeds"] = [id_embeds(face_ids[spec.reference_face_sha256], args.guidance_scale > 1,
                                                           pipe.device, pipe.unet.dtype)]
        else:
            from PIL import Image

            kwargs["ip_adapter_image"] = Image.fromarray(read_rgb(Path(args.reference_faces) / refs[spec.reference_face_sha256].file_name)[0])
    g = torch.Generator(device="cpu").manual_seed(spec.seed)
    img = pipe(spec.prompt, num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
               height=args.resolution, width=args.resolution, generator=g, output_type="np", **kwargs).images[0]
    return (img * 255).round().clip(0, 255).astype(np.uint8)


def dcgan_face(faces, seed: int) -> np.ndarray:
    """The dcgan backend's face for a per-sample seed (no disease signs are drawn)."""
    return faces.generate(np.random.default_rng(seed).standard_normal((1, 100)))[0]


def procedural_sample(renderer, spec: SampleSpec):
    """MeMa-mini's renderer on one planned sample: a one-photo identity seeded by the sample's seed.

    The face's age and gender cannot be steered; they are estimated on the rendered face and recorded
    instead of the plan's targets (which stay in ``plan.json``)."""
    rendered = renderer.render(spec.as_identity())
    photo = rendered.photos[0]
    extra = {"age": rendered.age, "gender": rendered.gender, "attempt": photo.attempt}
    return photo.image, photo.mask, extra


def _record(spec: SampleSpec, sha: str, image: np.ndarray, weights: dict, backend: str, route: str, attempt: int = 0) -> dict:
    return {
        "id": spec.id, "file_name": f"images/{spec.id}.png", "sha256": sha, "disease": spec.disease, "severity": spec.severity,
        "age": spec.age, "gender": spec.gender, "width": int(image.shape[1]), "height": int(image.shape[0]),
        "provenance": runner.provenance(backend, seed=spec.seed, weights=weights, attempt=attempt, prompt=spec.prompt,
                                        adapter_scale=spec.adapter_scale, reference_face_sha256=spec.reference_face_sha256, route=route),
    }


def _merge_if_complete(run_, out: Path, plan: list[SampleSpec], args, weights: dict, seconds: float) -> None:
    ids = [s.id for s in plan]

    def write():
        lines = [json.dumps(run_.record(sid)) for sid in ids]
        atomic_write_bytes(out / SAMPLES, ("\n".join(lines) + "\n").encode())
        args_rec = {k: v for k, v in vars(args).items() if k not in ("func", "shard", "quiet")}
        write_stage(out, "sample", args_rec, weights=weights, seconds=seconds, extra={"n_samples": len(plan)})

    wrote = run_.finish_once(ids, lambda: (out / "stage.json").is_file(), write)
    if wrote is None:
        left = sum(not run_.is_done(sid) for sid in ids)
        print(f"{len(plan) - left} of {len(plan)} samples done; {left} left for other shards")
    elif wrote:
        print(f"{len(plan)} samples in {out}")


def load_samples(folder: str | Path) -> list[dict]:
    folder = Path(folder)
    read_stage(folder, "sample")
    return [json.loads(line) for line in (folder / SAMPLES).read_text().splitlines() if line.strip()]
