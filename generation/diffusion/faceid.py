"""IP-Adapter FaceID: condition sampling on a reference face's ArcFace embedding (``--face_injection faceid``).

The plain IP-Adapter feeds CLIP image features of the reference face; FaceID (h94/IP-Adapter-FaceID) feeds
a 512-d face recognition embedding instead, through a small projection and the ``to_k_ip``/``to_v_ip``
layers, plus a LoRA on every attention layer that the checkpoint carries. The embedding comes from the
ArcFace ONNX adapter (``mema/faces/adapters.py``) on the aligned reference face. Both files come by local
path and both are research-only (see ``local_inputs`` in ``mema/weights/manifest.json``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mema.weights.local import hash_files, require_local

FACEID_FILE = "ip-adapter-faceid_sd15.bin"


class FaceIdInjection:
    """The FaceID route's two inputs, checked and hashed before anything is planned or loaded."""

    def __init__(self, folder: str | Path | None, arcface: str | Path | None):
        from mema.faces.adapters import optional_recogniser

        self.folder, _ = require_local("ip_adapter_faceid_sd15", folder)
        self.recogniser = optional_recogniser("arcface", arcface)
        self.weights = {"ip_adapter_faceid": hash_files(self.folder / FACEID_FILE)[FACEID_FILE], "arcface": self.recogniser.sha256}

    def attach(self, pipe) -> None:
        """Load the FaceID projection, IP layers and LoRA into ``pipe``, keeping already loaded LoRAs active."""
        before = [name for names in pipe.get_list_adapters().values() for name in names]
        pipe.load_ip_adapter(str(self.folder), subfolder=None, weight_name=FACEID_FILE, image_encoder_folder=None,
                             local_files_only=True)
        # diffusers activates only the FaceID LoRA, which would silently switch off the finetuned one
        added = [name for names in pipe.get_list_adapters().values() for name in names if name not in before]
        active = list(dict.fromkeys(before + added))
        if active:
            pipe.set_adapters(active, adapter_weights=[1.0] * len(active))

    def embed_references(self, folder: str | Path, files: dict[str, str]) -> dict[str, np.ndarray]:
        """ArcFace embedding (unit, 512-d) of each reference face ``sha256 -> file_name``; refuses faces not found."""
        from mema.faces.landmarks import LandmarkDetector
        from mema.generation.stage import StageError
        from mema.imageio import read_rgb

        out = {}
        with LandmarkDetector() as det:
            for sha, name in sorted(files.items()):
                rgb = read_rgb(Path(folder) / name)[0]
                landmarks = det.detect(rgb)
                if landmarks is None:
                    raise StageError(f"reference face {name} (sha256 {sha[:12]}): no face found, so FaceID has no embedding;"
                                     " remove it from --reference_faces or use --face_injection ip-adapter")
                out[sha] = self.recogniser.embed(rgb, landmarks).astype(np.float32)
        return out


def id_embeds(embedding: np.ndarray, guidance: bool, device, dtype):
    """``ip_adapter_image_embeds`` entry for one face: (1, 1, 512), or (2, 1, 512) with classifier-free
    guidance, whose unconditional half is a zero embedding (as in the reference implementation)."""
    import torch

    x = torch.as_tensor(embedding, dtype=dtype, device=device).reshape(1, 1, -1)
    return torch.cat([torch.zeros_like(x), x]) if guidance else x
