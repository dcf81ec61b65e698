"""Experiment folders, logs, result files and TensorBoard, shared by both search spaces."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
LOGGER = "darts_pt"
log = logging.getLogger(LOGGER)


class ExperimentError(Exception):
    """A run cannot start as asked (folder exists, resume target missing, ...)."""


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def append_jsonl(path: str | Path, obj: Any) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "_asdict"):
        return o._asdict()
    if isinstance(o, range):
        return list(o)
    return str(o)


def new_run_dir(path: Path, resume: bool, overwrite: bool) -> Path:
    """Create a fresh experiment folder, or accept an existing one only when resuming.

    An existing folder is never overwritten: with --overwrite it is renamed aside.
    """
    if path.exists() and not resume:
        if not overwrite:
            raise ExperimentError(
                f"experiment folder {path} already exists. Continue it with --resume_epoch N "
                f"(-1 for the latest checkpoint), start a separate run with --expid_tag TAG, "
                f"or pass --overwrite to move the old folder aside and start again.")
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        log.info("moved the existing %s aside to %s", path, aside)
    path.mkdir(parents=True, exist_ok=True)
    return path


def setup_logging(log_file: Path) -> logging.Logger:
    """Log to stdout and to `log_file` (appending, so a resumed run keeps its history)."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")
    for h in (logging.StreamHandler(sys.stdout), logging.FileHandler(log_file)):
        h.setFormatter(fmt)
        logger.addHandler(h)
    logger.propagate = False
    return logger


class Board:
    """TensorBoard scalars and alpha heat-maps; silently absent if tensorboard is not installed."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: no TensorBoard events are written")
            return
        self.writer = SummaryWriter(str(folder))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for tag, v in values.items():
            if v is not None:
                self.writer.add_scalar(tag, v, step)

    def heatmap(self, tag: str, matrix: torch.Tensor, rows: list[str], cols: list[str], step: int) -> None:
        if self.writer is None:
            return
        self.writer.add_figure(tag, heatmap_figure(matrix, rows, cols, tag), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def heatmap_figure(matrix: torch.Tensor, rows: list[str], cols: list[str], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = matrix.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(cols), 0.8 + 0.35 * len(rows)))
    im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=max(float(m.max()), 1e-8), aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


class Timer:
    """Wall-clock seconds, accumulated across resumed runs."""

    def __init__(self, already: float = 0.0) -> None:
        self.already = already
        self.start = time.time()

    def elapsed(self) -> float:
        return self.already + time.time() - self.start
