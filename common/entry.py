"""What every entry point does around its job: seeding, the user-error guard, marking a
failed run. Search, projection (common/run.py) and evaluation (sota/train.py) share it."""
from __future__ import annotations

import logging
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError
from .config import ConfigError
from .data import DataError
from .device import set_tf32
from .experiment import LOGGER, ExperimentError, read_json, write_json
from .install import InstallError
from .metrics import DivergedError

log = logging.getLogger(LOGGER)

# OSError: a file of the run cannot be written (disk full, folder removed or read-only).
USER_ERRORS = (ConfigError, DataError, InstallError, ExperimentError, CheckpointError, DivergedError, ValueError,
               KeyError, OSError)


def exit_code(job: Callable[[], object], report: bool = True) -> int:
    """Run a job; a user error (bad flag, missing data or checkpoint, ...) ends it with one
    clear line (unless not `report`: the other processes of a multi-process run, whose
    process 0 says it) and exit code 2 instead of a traceback. SIGINT or SIGTERM (see
    common/runstate.py) ends it with one line too, naming the command that continues the run,
    and the shell's code for the signal."""
    try:
        job()
    except USER_ERRORS as e:
        if report:
            _say(f"error: {error_message(e)}")
        return 2
    except KeyboardInterrupt as e:
        if report:  # common/runstate.py's Interrupted says where it stopped and how to continue
            _say(e.message() if hasattr(e, "message") else "interrupted by SIGINT: run the same command again")
        return 128 + getattr(e, "signum", signal.SIGINT)
    return 0


def _say(line: str) -> None:
    if any(isinstance(h, logging.FileHandler) for h in log.handlers):
        log.error("%s", line)  # on stdout, and in the run's log file
    else:
        print(line, file=sys.stderr)


def error_message(error: BaseException) -> str:
    """What `error: ...` says about a user error."""
    return str(error.args[0] if isinstance(error, KeyError) and error.args else error)  # KeyError's str() adds quotes


def seed_everything(seed: int, deterministic: bool, tf32: bool = False) -> None:
    """Seed every RNG; set cuDNN to autotuned (or deterministic) kernels, and CUDA to float32
    arithmetic unless `tf32` (torch lets cuDNN use TF32 by default, which changes results)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    set_tf32(tf32)


def read_result(folder: Path) -> dict[str, Any]:
    """A run's result.json, or {} (original-code runs have none; a damaged one says nothing)."""
    return read_json(folder / "result.json")


def mark_failed(folder: Path, error: BaseException | str) -> None:
    result = read_result(folder)
    if result.get("status") != "finished":
        result.update(status="failed", error=error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        write_json(folder / "result.json", result)
