"""Process-wide runtime settings: offline hubs, CPU threads, device choice.

Imported first by every entry point. Hub libraries (transformers, diffusers, datasets) hang
for minutes trying the network when these are unset, so they are forced offline here.
"""

from __future__ import annotations

import os

OFFLINE_VARS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    # Idle OpenMP threads spin; on 2 cores that starves the other worker (80x slowdowns seen).
    "OMP_WAIT_POLICY": "PASSIVE",
}


def set_offline() -> None:
    """Set hub-offline variables unless the user has set them explicitly."""
    for name, value in OFFLINE_VARS.items():
        os.environ.setdefault(name, value)


def set_torch_threads(n: int | None = None) -> int:
    """Limit torch intra-op threads (``MEMA_TORCH_THREADS`` or ``n``); returns the count in force."""
    import torch

    if n is None:
        n = int(os.environ.get("MEMA_TORCH_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def default_device() -> str:
    """``cuda`` when a GPU is visible (and not disabled by ``MEMA_DEVICE``), else ``cpu``."""
    forced = os.environ.get("MEMA_DEVICE")
    if forced:
        return forced
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


set_offline()
