"""Device choice: `--gpu auto` (least-used GPU, else CPU), `--gpu cpu`, or `--gpu N`."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger("darts_pt")


def least_used_gpu() -> int:
    """Index of the GPU with the least memory in use, by gpustat; 0 if gpustat fails."""
    try:
        import gpustat

        stats = gpustat.new_query()
        return min(stats.gpus, key=lambda g: (g.memory_used, g.index)).index
    except Exception as e:  # no NVML, driver mismatch: any visible GPU will do
        log.info("gpustat unavailable (%s); using GPU 0", e)
        return 0


def select_device(gpu: str) -> torch.device:
    gpu = str(gpu).strip().lower()
    if gpu == "cpu":
        return torch.device("cpu")
    if gpu == "auto":
        return torch.device(f"cuda:{least_used_gpu()}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        index = int(gpu)
    except ValueError:
        raise ValueError(f"--gpu must be 'auto', 'cpu' or a GPU index, not '{gpu}'") from None
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise ValueError(f"--gpu {index}: no such CUDA device on this machine "
                         f"({torch.cuda.device_count()} visible); use --gpu auto or --gpu cpu")
    return torch.device(f"cuda:{index}")
