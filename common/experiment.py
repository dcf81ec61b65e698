"""Experiment folders, logs, result files and TensorBoard, shared by both search spaces."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoint import checkpoint_epochs, checkpoint_path, latest_checkpoint, partial_path, permit_as_umask
from .config import ConfigError, changed_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
LOGGER = "darts_pt"
CONFIG = "config.json"  # a run's whole configuration (the log shows what differs from the defaults)
log = logging.getLogger(LOGGER)


class ExperimentError(Exception):
    """A run cannot start as asked (folder exists, resume target missing, ...)."""


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        permit_as_umask(f.fileno())
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def append_jsonl(path: str | Path, obj: Any) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "_asdict"):
        return o._asdict()
    if isinstance(o, range):
        return list(o)
    return str(o)


def record_config(cfg: Any, default: Any, folder: Path, main: bool = True) -> None:
    """Log the settings in which the run's configuration `cfg` differs from `default` (its entry
    point's defaults) as a short block, and write the whole configuration to config.json in the
    run's folder (process 0)."""
    changed = " ".join(f"{flag}={_shown(value)}" for flag, value in changed_flags(cfg, default).items())
    block = textwrap.fill(changed or "(none)", width=100, initial_indent="  ", subsequent_indent="  ",
                          break_long_words=False, break_on_hyphens=False)
    log.info("config, where it differs from the defaults (all of it: %s):\n%s", folder / CONFIG, block)
    if main:
        write_json(folder / CONFIG, {"config": type(cfg).__name__, **dataclasses.asdict(cfg)})


def _shown(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or " " in text else text


def new_run_dir(path: Path, resume: bool, overwrite: bool) -> Path:
    """Create a run's folder, or accept an existing one when resuming. An existing folder is
    never overwritten: with --overwrite it is renamed aside."""
    if path.exists() and not resume:
        if not overwrite:
            raise _exists(path)
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        log.info("moved the existing %s aside to %s", path, aside)
    path.mkdir(parents=True, exist_ok=True)
    return path


_FORMAT = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")


class _Pending(logging.Handler):
    """Holds what is logged before the run's folder exists, for the run's log file."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def start_logging(main: bool = True) -> logging.Logger:
    """Log to stdout, and keep the records until `log_to_file` names the run's log file (so a
    run checks everything before it creates its folder, and still logs what it saw). The other
    processes of a multi-process run (not `main`) log only warnings, to stdout."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO if main else logging.WARNING)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(_FORMAT)
    logger.addHandler(stdout)
    if main:
        logger.addHandler(_Pending())
    logger.propagate = False
    return logger


def log_to_file(log_file: Path) -> None:
    """Also log to `log_file` (appending, so a resumed run keeps its history), starting with
    the records kept since `start_logging`."""
    logger = logging.getLogger(LOGGER)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(_FORMAT)
    for pending in [h for h in logger.handlers if isinstance(h, _Pending)]:
        for record in pending.records:
            handler.handle(record)
        logger.removeHandler(pending)
    logger.addHandler(handler)


def run_target(folder: Path, resume_epoch: int, overwrite: bool) -> int:
    """Check a run's folder before anything is written; the checkpoint epoch to resume (0: a
    new run). A new run needs the folder absent (or --overwrite); resuming needs the folder
    and the checkpoint (-1: the latest)."""
    if resume_epoch == 0:
        if folder.exists() and not overwrite:
            raise _exists(folder)
        return 0
    if not folder.is_dir():
        raise ConfigError("resume_epoch", resume_epoch, f"cannot resume: experiment folder {folder} does not "
                                                        f"exist (check --seed, --dataset, --expid_tag, --exp_root)")
    if not checkpoint_epochs(folder):  # stopped before its first checkpoint: nothing to continue
        raise ConfigError("resume_epoch", resume_epoch, f"cannot resume {folder}: it holds no checkpoint yet (the "
                                                        f"run stopped before its first one). Start it again with "
                                                        f"--overwrite (moves the folder aside) instead of "
                                                        f"--resume_epoch, or use --expid_tag TAG for a separate run.")
    return resolve_epoch(folder, resume_epoch)


def resume_checkpoint(folder: Path, resume_epoch: int, overwrite: bool) -> Path | None:
    """The checkpoint a run continues (None: a new run), checked before anything is written
    (`run_target`). --resume_epoch -1 takes the latest, the mid-epoch one when it is newer than
    the latest epoch's: a run stopped in the middle of an epoch, or before its first epoch's
    checkpoint, continues there."""
    if resume_epoch == -1 and partial_path(folder).is_file():
        return latest_checkpoint(folder)
    epoch = run_target(folder, resume_epoch, overwrite)
    return checkpoint_path(folder, epoch) if epoch else None


def set_aside(folder: Path, files: list[Path], why: str) -> None:
    """Move `files` of a run folder into a new `.old-<time>` folder inside it (which reports
    and resumes ignore), and log it."""
    if not files:
        return
    aside = Path(tempfile.mkdtemp(prefix=f".old-{time.strftime('%Y%m%d-%H%M%S')}-", dir=folder))
    for f in files:
        f.rename(aside / f.name)
    log.info("%s: moved %s aside to %s", why, ", ".join(f.name for f in files), aside)


def _exists(folder: Path) -> ExperimentError:
    return ExperimentError(f"experiment folder {folder} already exists. Continue it with --resume_epoch N "
                           f"(-1 for the latest checkpoint), start a separate run with --expid_tag TAG, "
                           f"or pass --overwrite to move the old folder aside and start again.")


def resolve_epoch(folder: Path, epoch: int, flag: str = "resume_epoch") -> int:
    """`epoch` if checkpoint_{epoch}.pth.tar exists in `folder`; -1: the latest one."""
    available = checkpoint_epochs(folder)
    if epoch == -1:
        if not available:
            raise ConfigError(flag, epoch, f"no checkpoint_*.pth.tar in {folder}; "
                                           f"start the run afresh with --overwrite")
        return available[-1]
    if epoch not in available:
        raise ConfigError(flag, epoch, f"{checkpoint_path(folder, epoch).name} not found in {folder} "
                                       f"(available epochs: {available or 'none'})")
    return epoch


class Board:
    """TensorBoard scalars and (`heatmaps`) alpha heat-maps; silently absent if tensorboard is
    not installed."""

    def __init__(self, folder: Path, enabled: bool = True, heatmaps: bool = False) -> None:
        self.writer = None
        self.heatmaps = heatmaps
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

    def heatmap(self, tag: str, matrix: torch.Tensor, rows: list[str], cols: list[str], step: int,
                title: str | None = None) -> None:
        if self.writer is None or not self.heatmaps:
            return
        self.writer.add_figure(tag, heatmap_figure(matrix, rows, cols, title or tag), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def heatmap_figure(matrix: torch.Tensor, rows: list[str], cols: list[str], title: str):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    m = matrix.detach().cpu().numpy()
    fig = Figure(figsize=(1.0 + 0.9 * len(cols), 0.8 + 0.35 * len(rows)))
    ax = fig.subplots()
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


def truncate_history(path: Path, start_epoch: int) -> None:
    """Drop history rows of epochs a killed run logged after its last checkpoint."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("epoch", -1) < start_epoch]
    path.write_text("".join(r + "\n" for r in rows))
