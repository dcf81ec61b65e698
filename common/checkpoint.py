"""Checkpoints: atomic writes, code-free reads, RNG states, and the original code's layout.

A checkpoint is a plain dict of tensors, numbers, strings and containers, so it is read
with ``torch.load(weights_only=True)``: opening a downloaded checkpoint cannot run code.
"""
from __future__ import annotations

import io
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, does not fit the model, or cannot be written."""


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once, before any file is created
    os.umask(mask)
    return mask


UMASK = _read_umask()


def permit_as_umask(fd: int) -> None:
    """Give a file made by tempfile.mkstemp (always 0600) the permissions open() would give
    it under the process's umask, so checkpoints and result files are as readable as logs."""
    os.fchmod(fd, 0o666 & ~UMASK)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write atomically: a temp file in the same folder, then rename over the target.

    A write that fails (disk full, I/O error) removes the temp file, leaves every earlier
    checkpoint as it was and raises a CheckpointError naming the file and the cause.
    """
    path = Path(path)
    # Serialised in memory first: torch's writer turns a failing file write into an opaque
    # RuntimeError ("unexpected pos ..."), where a plain write reports the OSError it is.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            permit_as_umask(f.fileno())
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; "
                                  f"earlier checkpoints are unchanged") from e
        raise


def load_checkpoint(path: str | Path, other: str = "pick another one with --resume_epoch") -> dict[str, Any]:
    """The checkpoint at `path`; `other` says how to pick another when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, foreign pickle, code objects refused by weights_only
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}. "
                              f"The file is corrupt or not a DARTS-PT checkpoint; {other}.") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def checkpoint_path(folder: str | Path, epoch: int, prefix: str = "checkpoint") -> Path:
    return Path(folder) / f"{prefix}_{epoch}.pth.tar"


PARTIAL = "checkpoint_partial.pth.tar"


def partial_path(folder: str | Path, prefix: str = "checkpoint") -> Path:
    """The one mid-epoch checkpoint of a run (`{prefix}_partial.pth.tar`: an evaluation's every
    --ckpt_steps, any training loop's when a signal stops it), overwritten as the run goes on and
    removed once a later epoch's checkpoint is written. Its name matches no epoch, so
    `checkpoint_epochs` does not list it and `prune_checkpoints` leaves it alone."""
    return Path(folder) / f"{prefix}_partial.pth.tar"


def checkpoint_epochs(folder: str | Path, prefix: str = "checkpoint") -> list[int]:
    """Epoch numbers of `{prefix}_{epoch}.pth.tar` files in a folder, sorted."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)\.pth\.tar$")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name)))


def latest_checkpoint(folder: str | Path, prefix: str = "checkpoint") -> Path | None:
    """The checkpoint a run in `folder` continues from: its mid-epoch one if that is newer than
    its latest epoch's (read to tell), else the latest epoch's; None without either."""
    epochs, partial = checkpoint_epochs(folder, prefix), partial_path(folder, prefix)
    if partial.is_file():
        state = load_checkpoint(partial)
        if not epochs or (int(state.get("epoch", 0)), int(state.get("step", 0))) > (epochs[-1], 0):
            return partial
    return checkpoint_path(folder, epochs[-1], prefix) if epochs else None


def later_checkpoints(folder: str | Path, epoch: int, prefix: str = "checkpoint") -> list[Path]:
    """The checkpoint files a run that continues from epoch `epoch`'s leaves behind: those of
    later epochs, and the mid-epoch one (that of the trajectory left, or older)."""
    later = [checkpoint_path(folder, e, prefix) for e in checkpoint_epochs(folder, prefix) if e > epoch]
    return [p for p in (*later, partial_path(folder, prefix)) if p.is_file()]


def prune_checkpoints(folder: str | Path, keep_every: int, keep: int, prefix: str = "checkpoint") -> None:
    """Delete `{prefix}_{epoch}.pth.tar` files but `keep` (the one just written, what a resume
    needs) and those of epochs that are multiples of `keep_every` (0: none). Called after the
    newer checkpoint is safely written; keep_every 1 keeps every file."""
    for epoch in checkpoint_epochs(folder, prefix):
        if epoch != keep and (keep_every == 0 or epoch % keep_every):
            checkpoint_path(folder, epoch, prefix).unlink(missing_ok=True)


def split_model_state(state: dict[str, Any], alpha_keys: tuple[str, ...]) -> tuple[dict, list | None]:
    """The model state_dict of a checkpoint, and alphas the original code may have stored in it.

    The original saved the weights under 'state_dict' (NAS-Bench-201) or 'model', and some
    versions registered alpha as a module parameter, so it sits inside the state_dict.
    """
    sd = state.get("state_dict", state.get("model"))
    if sd is None:
        raise CheckpointError("checkpoint has no 'state_dict' (or 'model') entry")
    inner = [sd.pop(k) for k in alpha_keys if k in sd]
    return sd, (inner or None)


# -- RNG states ----------------------------------------------------------------------------
def rng_state(device: torch.device | str = "cpu") -> dict[str, Any]:
    """All global RNG states a run on `device` uses, as weights_only-loadable values (on CUDA
    the generator of that GPU only, so the run can resume on another GPU or machine)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)  # the legacy form: (name, keys, pos, has_gauss, cached)
    py = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": [py[0], list(py[1]), py[2]],
    }
    device = torch.device(device)
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | str = "cpu") -> None:
    """Restore what `rng_state` saved; the CUDA state goes to `device`'s generator."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    device, cuda = torch.device(device), state.get("cuda")
    if device.type != "cuda" or cuda is None:
        return
    if isinstance(cuda, (list, tuple)):  # older checkpoints: one state per GPU visible when saved
        index = torch.cuda.current_device() if device.index is None else device.index
        cuda = cuda[index] if index < len(cuda) else None
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
