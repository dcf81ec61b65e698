"""Device choice: `--gpu auto` (least-used GPU, else CPU), `--gpu cpu`, or `--gpu N`."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from .experiment import LOGGER

log = logging.getLogger(LOGGER)


def _uuid(text: object) -> str:
    """A GPU UUID as both NVML ('GPU-1a2b...') and torch ('1a2b...') write it."""
    return str(text).strip().lower().removeprefix("gpu-")


def least_used_gpu() -> int:
    """Torch index of the visible GPU with the least memory in use, by gpustat; 0 if that fails.

    gpustat (NVML) numbers all of the machine's GPUs in PCI order, while torch numbers the
    ones CUDA_VISIBLE_DEVICES leaves visible, fastest first: GPUs are matched by UUID.
    """
    try:
        import gpustat

        stats = gpustat.new_query()
        visible = {_uuid(torch.cuda.get_device_properties(i).uuid): i for i in range(torch.cuda.device_count())}
        used = [(g.memory_used, visible[_uuid(g.uuid)]) for g in stats.gpus if _uuid(g.uuid) in visible]
        if not used:
            raise RuntimeError("no GPU that gpustat reports is visible to torch")
        return min(used)[1]
    except Exception as e:  # no NVML, driver mismatch, MIG slices: any visible GPU will do
        log.info("gpustat unavailable (%s); using GPU 0", e)
        return 0


def set_tf32(on: bool) -> None:
    """Let CUDA convolutions and matmuls use TF32 (on) or compute in float32 (off)."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on


@contextlib.contextmanager
def tf32(on: bool) -> Iterator[None]:
    """`set_tf32(on)` inside the block only; the previous switches come back after it."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(on)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def select_device(gpu: str) -> torch.device:
    """The run's device; a CUDA device also becomes torch's current one, so that nothing
    (a context, a synchronisation, a memory statistic) lands on GPU 0 by default."""
    gpu = str(gpu).strip().lower()
    if gpu == "cpu":
        return torch.device("cpu")
    if gpu == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        index = least_used_gpu()
    else:
        try:
            index = int(gpu)
        except ValueError:
            raise ValueError(f"--gpu must be 'auto', 'cpu' or a GPU index, not '{gpu}'") from None
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(f"--gpu {index}: no such CUDA device on this machine "
                             f"({torch.cuda.device_count()} visible); use --gpu auto or --gpu cpu")
    torch.cuda.set_device(index)
    return torch.device(f"cuda:{index}")


def memory_format(choice: str, device: torch.device | str) -> torch.memory_format:
    """The layout of a model and its batches (`--memory_format`): 'auto' is channels-last on
    CPU, where it is measured to be faster for every network here, and NCHW on CUDA."""
    if choice == "auto":
        choice = "channels_last" if torch.device(device).type == "cpu" else "contiguous"
    if choice not in ("channels_last", "contiguous"):
        raise ValueError(f"--memory_format must be auto, channels_last or contiguous, not '{choice}'")
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format
