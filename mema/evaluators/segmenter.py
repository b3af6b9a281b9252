"""Frozen reference lesion segmenter: nnU-Net v2 (2D), driven through its own Python API.

Trained once on the original training split's lesion images (BCC, SCC) and cached with the other
reference evaluators. The default nnU-Net plan (20 M parameters, ~3.6 s per iteration on 2 cores)
does not fit a CPU budget, so the planner's plan is copied with narrower stages
(``features_per_stage`` 16..128, ~2 M parameters) and a smaller batch under the plans name
``nnUNetPlansCPU``; everything else (patch size, normalisation, augmentation, loss, poly LR) is
nnU-Net's own. On a GPU, pass ``epochs``/``iterations`` closer to nnU-Net's defaults.

The segmenter sees the eye window ``CROP`` of the aligned 128 px face, not the whole face: lesions
are ~50 pixels (0.3% of the image) on the lids, and on whole faces 200 CPU iterations reached Dice
0.07 on MeMa-mini. Measured on MeMa-mini's training masks, every lesion pixel lies in rows 33-83 and
columns 30-98, inside the window; the export records the share it keeps. Predictions are pasted
back into a full-size mask, so Dice is over the whole image.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from mema.faces.eyecrop import EYE_WINDOW_128
from mema.corpus.nnunet import export_nnunet
from mema.corpus.store import Corpus

DATASET_ID = 501
DATASET_NAME = "MeMaSeg"
PLANS = "nnUNetPlansCPU"
CPU_FEATURES = (16, 32, 64, 128, 128, 128, 128, 128)
CPU_BATCH = 16
CACHE_FOLDER = "nnunet-eyes"  # under the evaluator cache; renamed when the training recipe changes
CROP = EYE_WINDOW_128  # top, bottom, left, right of the eye window in the 128 px aligned face


def _env(folder: Path) -> dict[str, str]:
    return {
        "nnUNet_raw": str(folder / "raw"),
        "nnUNet_preprocessed": str(folder / "preprocessed"),
        "nnUNet_results": str(folder / "results"),
        "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", "2"),
        # One augmentation worker: the planner also uses this as a torch thread count, so not 0.
        "nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "1"),
        "nnUNet_compile": "f",
    }


@contextlib.contextmanager
def _nnunet_env(folder: Path):
    old = {k: os.environ.get(k) for k in _env(folder)}
    os.environ.update(_env(folder))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _dataset_dir(folder: Path, kind: str) -> Path:
    return folder / kind / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"


def _model_dir(folder: Path) -> Path:
    return folder / "results" / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}" / f"nnUNetTrainer__{PLANS}__2d"


def train_segmenter(corpus: Corpus, folder: Path, *, max_train_cases: int = 1000, epochs: int = 30, iterations: int = 50,
                    device: str = "cpu", quiet: bool = True) -> dict:
    """Export, plan, shrink, preprocess and train; returns the training record (also written to segmenter.json)."""
    import time

    import torch

    folder = Path(folder)
    t0 = time.time()
    with _nnunet_env(folder):
        from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        raw = export_nnunet(corpus, folder / "raw", dataset_id=DATASET_ID, name=DATASET_NAME, max_train=max_train_cases,
                            include_test=False, crop=CROP)
        sink = io.StringIO() if quiet else None
        with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
            extract_fingerprints([DATASET_ID], num_processes=2, check_dataset_integrity=True, clean=True, verbose=False)
            plan_experiments([DATASET_ID])
            pre = _dataset_dir(folder, "preprocessed")
            plans = json.loads((pre / "nnUNetPlans.json").read_text())
            arch = plans["configurations"]["2d"]["architecture"]["arch_kwargs"]
            arch["features_per_stage"] = list(CPU_FEATURES[: len(arch["features_per_stage"])])
            plans["configurations"]["2d"]["batch_size"] = min(CPU_BATCH, plans["configurations"]["2d"]["batch_size"])
            plans["plans_name"] = PLANS
            (pre / f"{PLANS}.json").write_text(json.dumps(plans, indent=2))
            preprocess([DATASET_ID], plans_identifier=PLANS, configurations=("2d",), num_processes=(2,), verbose=False)
            dataset_json = json.loads((raw / "dataset.json").read_text())
            trainer = nnUNetTrainer(plans={**plans, "continue_training": False}, configuration="2d", fold="all",
                                    dataset_json=dataset_json, device=torch.device(device))
            trainer.num_epochs = epochs
            trainer.num_iterations_per_epoch = iterations
            trainer.num_val_iterations_per_epoch = max(1, iterations // 5)
            trainer.run_training()
    n_params = sum(p.numel() for p in trainer.network.parameters())
    checkpoint = _model_dir(folder) / "fold_all" / "checkpoint_final.pth"
    from mema.weights import sha256_file

    cases = json.loads((raw / "cases.json").read_text())
    record = {"arch": "nnunetv2-2d", "plans": PLANS, "features_per_stage": arch["features_per_stage"],
              "patch_size": plans["configurations"]["2d"]["patch_size"], "batch_size": plans["configurations"]["2d"]["batch_size"],
              "crop": list(CROP), "lesion_pixels_in_crop": cases["lesion_pixels_in_crop"], "epochs": epochs,
              "iterations_per_epoch": iterations, "n_train_cases": dataset_json["numTraining"], "n_params": int(n_params),
              "checkpoint_sha256": sha256_file(checkpoint), "train_seconds": round(time.time() - t0, 1)}
    (folder / "segmenter.json").write_text(json.dumps(record, indent=2))
    return record


class Segmenter:
    """A trained nnU-Net predicting lesion masks for 8-bit RGB images (no test-time mirroring)."""

    def __init__(self, folder: Path, device: str = "cpu"):
        import torch

        self.folder = Path(folder)
        self.record = json.loads((self.folder / "segmenter.json").read_text())
        with _nnunet_env(self.folder):
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

            self._predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                              device=torch.device(device), verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            self._predictor.initialize_from_trained_model_folder(str(_model_dir(self.folder)), use_folds=("all",), checkpoint_name="checkpoint_final.pth")

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) uint8 mask in {0, 1}; nothing is predicted outside the eye window."""
        top, bottom, left, right = self.record.get("crop") or (0, rgb.shape[0], 0, rgb.shape[1])
        window = rgb[top:bottom, left:right]
        x = window.astype(np.float32).transpose(2, 0, 1)[:, None]  # (C, 1, H, W): a 2D case as nnU-Net sees it
        with _nnunet_env(self.folder), contextlib.redirect_stdout(io.StringIO()):
            seg = self._predictor.predict_single_npy_array(x, {"spacing": [999.0, 1.0, 1.0]})
        mask = np.zeros(rgb.shape[:2], np.uint8)
        mask[top:bottom, left:right] = np.asarray(seg)[0] > 0
        return mask
