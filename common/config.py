"""Typed, validated configuration: what the entry points parse their flags into.

Each entry point parses its command line once (common/cli.py, sota/train.py) into these
frozen dataclasses; the core (trainer, search, projection) reads them and never sees an
argparse namespace. Every dataclass checks its own values when it is built, so a bad flag
ends the run before anything is written, with one line naming the flag:

    error: --epochs 0: must be at least 1; pass the number of epochs to train

The field names are the flags' names, so a message always says which flag to change.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A flag's value cannot work; the message names the flag, the value and what to do."""

    def __init__(self, flag: str, value: object, why: str) -> None:
        super().__init__(f"--{flag} {value}: {why}")
        self.flag = flag


def check(ok: bool, flag: str, value: object, why: str) -> None:
    if not ok:
        raise ConfigError(flag, value, why)


def at_least(flag: str, value: int, low: int, what: str = "") -> None:
    check(value >= low, flag, value, f"must be at least {low}{what}")


def finite(flag: str, value: float, *, positive: bool = False) -> None:
    """A finite number, > 0 if `positive`, else >= 0."""
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    check(ok, flag, value, f"must be a finite number {'> 0' if positive else '>= 0'}")


def fraction(flag: str, value: float, *, closed: bool) -> None:
    """In [0, 1] (`closed`) or in (0, 1)."""
    ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
    check(ok, flag, value, f"must be in {'[0, 1]' if closed else '(0, 1)'}")


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SAMPLINGS = ("fresh", "epoch")
EXACT_CRITERIA = ("acc", "loss")  # DARTS-PT's: the supernet's accuracy or loss on the alpha half
PROXY_CRITERIA = ("nwot", "synflow", "grad_norm", "jacob_cov")  # zero-cost scores (common/proxies.py)
CRITERIA = EXACT_CRITERIA + PROXY_CRITERIA
MIN_IMAGE_SIZE = 8  # two stride-2 reductions leave at least 2x2 pixels
NOT_A_FLAG = {"flag": False}  # metadata of a field that says how the run was configured, not a setting
IMAGENET16_SIDE = 16  # NAS-Bench-201's down-sampled ImageNet (--image_size is for image folders)


@dataclass(frozen=True)
class DataConfig:
    """Which images, in which batches, with which augmentation."""

    data: Path
    dataset: str
    image_size: int = 32
    batch_size: int = 64
    cutout: bool = False
    cutout_length: int = 16
    cutout_prob: float = 1.0

    def __post_init__(self) -> None:
        at_least("batch_size", self.batch_size, 1)
        check(self.image_size >= MIN_IMAGE_SIZE, "image_size", self.image_size,
              f"the networks halve the images twice; use at least {MIN_IMAGE_SIZE} (32 as CIFAR)")
        at_least("cutout_length", self.cutout_length, 0)
        fraction("cutout_prob", self.cutout_prob, closed=True)

    @property
    def cutout_size(self) -> int:
        """Cutout's square side, 0 when cutout is off."""
        return self.cutout_length if self.cutout else 0

    def activations(self, channels: int, processes: int = 1) -> int:
        """batch x channels x pixels, of one process's share of a batch: the size of the feature
        maps at full resolution, a measure of a step's work (common/threads.py)."""
        side = IMAGENET16_SIDE if self.dataset == "imagenet16-120" else self.image_size
        return self.batch_size // processes * channels * side * side


@dataclass(frozen=True)
class OptimConfig:
    """The weights' SGD with a cosine schedule."""

    learning_rate: float = 0.025
    learning_rate_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        finite("learning_rate", self.learning_rate, positive=True)
        finite("learning_rate_min", self.learning_rate_min)
        check(self.learning_rate_min <= self.learning_rate, "learning_rate_min", self.learning_rate_min,
              f"must not exceed --learning_rate {self.learning_rate}")
        finite("momentum", self.momentum)
        finite("weight_decay", self.weight_decay)
        finite("grad_clip", self.grad_clip, positive=True)
        check(not self.nesterov or self.momentum > 0, "nesterov", True, "needs --momentum > 0")


@dataclass(frozen=True)
class AlphaConfig:
    """alpha's Adam (betas 0.5, 0.999, as DARTS), and whether its step is second order."""

    arch_learning_rate: float = 3e-4
    arch_weight_decay: float = 1e-3
    unrolled: bool = False  # second-order DARTS (common/methods/darts2.py)

    def __post_init__(self) -> None:
        finite("arch_learning_rate", self.arch_learning_rate, positive=True)
        finite("arch_weight_decay", self.arch_weight_decay)


@dataclass(frozen=True)
class SpeedConfig:
    """How the same computation runs: layout (exact) and the numerics-changing options."""

    memory_format: str = "auto"
    tf32: bool = False
    amp: bool = False
    compile: bool = False
    compile_mode: str = "default"

    def __post_init__(self) -> None:
        check(self.memory_format in MEMORY_FORMATS, "memory_format", self.memory_format,
              f"choose one of {', '.join(MEMORY_FORMATS)}")
        check(self.compile_mode in COMPILE_MODES, "compile_mode", self.compile_mode,
              f"choose one of {', '.join(COMPILE_MODES)}")


@dataclass(frozen=True)
class RunConfig:
    """Seed, device, experiment folder, resume and logging of one run."""

    exp_root: Path
    save: str
    seed: int = 0
    gpu: str = "auto"
    expid_tag: str = ""
    resume_epoch: int = 0
    overwrite: bool = False
    ckpt_interval: int = 10
    ckpt_keep_every: int = 1  # keep checkpoints at multiples of this, and the latest (0: the latest only)
    report_freq: int = 50
    report_secs: float = 30.0
    fast: bool = False
    deter: bool = False
    tensorboard: bool = True
    threads: int = 0  # CPU threads of each process (0: common/threads.py chooses)

    def __post_init__(self) -> None:
        at_least("threads", self.threads, 0, " (0: OMP_NUM_THREADS, else a share of the cores)")
        check(self.resume_epoch >= -1, "resume_epoch", self.resume_epoch,
              "must be a checkpoint epoch, or -1 for the latest one")
        at_least("ckpt_interval", self.ckpt_interval, 1)
        at_least("ckpt_keep_every", self.ckpt_keep_every, 0, " (0: keep only the latest checkpoint)")
        at_least("report_freq", self.report_freq, 1)
        finite("report_secs", self.report_secs)
        check(self.seed >= 0, "seed", self.seed, "must be >= 0")


@dataclass(frozen=True)
class ProjectionConfig:
    """Perturbation-based selection: how often to project, and which checkpoints to use."""

    proj_intv: int = 5
    edge_decision: str = "random"
    dev_resume_epoch: int = -1
    no_resume: bool = False
    resume_expid: str = ""
    log_tag: str = ""
    proj_batch_size: int = 0
    proj_batches: int = 0
    proj_pool: int = 1
    proj_pool_batches: int = 100

    def __post_init__(self) -> None:
        at_least("proj_intv", self.proj_intv, 1)
        check(self.edge_decision == "random", "edge_decision", self.edge_decision, "only 'random' exists")
        check(self.dev_resume_epoch >= -1, "dev_resume_epoch", self.dev_resume_epoch,
              "must be a projection checkpoint epoch, or -1 for the latest one")
        at_least("proj_batch_size", self.proj_batch_size, 0, " (0: --batch_size)")
        at_least("proj_batches", self.proj_batches, 0,
                 " (0: the whole alpha half for acc/loss, one batch for a zero-cost proxy)")
        at_least("proj_pool", self.proj_pool, 1)
        at_least("proj_pool_batches", self.proj_pool_batches, 1)

    def check_pool(self, criteria: Iterable[str]) -> None:
        """A pool of projections (Zero-Cost-PT) repeats untuned projections: zero-cost criteria only."""
        exact = [c for c in criteria if c in EXACT_CRITERIA]
        if self.proj_pool > 1 and exact:
            raise ConfigError("proj_pool", self.proj_pool, f"a pool needs zero-cost criteria only, and {exact[0]} "
                              f"is exact; pass --proj_pool 1 or choose a proxy ({', '.join(PROXY_CRITERIA)})")


@dataclass(frozen=True)
class SearchConfig:
    """One supernet search or projection run.

    `method` is the base method (darts, blank, sdarts: common/methods; which ones a space offers
    is its parser's choice), `method_options` that method's own options (a frozen dataclass of
    its module, e.g. SDARTS's perturbation; None for none), and `project` says whether the run
    projects (`--method X-proj` or `--dev proj`). `space` holds the search space's own options
    (a frozen dataclass of that space's package, validated there).
    """

    method: str
    project: bool
    epochs: int
    init_channels: int
    data: DataConfig
    run: RunConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    alpha: AlphaConfig = field(default_factory=AlphaConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    train_portion: float = 0.5
    sampling: str = "fresh"
    eval_freq: int = -1
    alpha_heatmaps: bool = False  # softmax(alpha) figures in TensorBoard: not in the original, costly
    cutout_ramp: bool = False     # what the original's code meant to do with cutout, not what it did
    space: Any = None
    method_options: Any = None
    # Flags a projection takes from the search run it projects (sizes, dataset, epochs), and
    # those of them the command left out (their values here are the defaults): a projection
    # replaces these by the search run's and checks the others against it (common/run.py).
    search_run_flags: tuple[str, ...] = field(default=(), metadata=NOT_A_FLAG)
    from_search_run: frozenset[str] = field(default=frozenset(), metadata=NOT_A_FLAG)
    nproc: int = 1  # processes (torchrun's WORLD_SIZE; the exp_scripts' --nproc)
    sync_bn: bool = False

    def __post_init__(self) -> None:
        at_least("epochs", self.epochs, 1)
        at_least("nproc", self.nproc, 1)
        check(self.data.batch_size >= self.nproc, "batch_size", self.data.batch_size,
              f"each of the --nproc {self.nproc} processes needs at least one image of every batch")
        at_least("eval_freq", self.eval_freq, -1, " (-1: as the original; 0: never)")
        at_least("init_channels", self.init_channels, 1)
        fraction("train_portion", self.train_portion, closed=False)
        check(self.sampling in SAMPLINGS, "sampling", self.sampling, f"choose one of {', '.join(SAMPLINGS)}")

    @property
    def method_name(self) -> str:
        """The method as the user named it (darts, darts-proj, ...), for logs and result.json."""
        return self.method + ("-proj" if self.project else "")

    @property
    def cutout_length(self) -> int:
        """Cutout's square side in search and projection, 0 when off. As the original ran,
        ImageNet16-120 is never cut (its pipeline had no Cutout) unless --cutout_ramp."""
        if self.data.dataset == "imagenet16-120" and not self.cutout_ramp:
            return 0
        return self.data.cutout_size

    def cutout_prob(self, epoch: int) -> float:
        """Search epoch `epoch`'s per-image cutout probability: --cutout_prob from the first
        epoch, as the original ran (it set a ramped value on an attribute its Cutout never
        read); with --cutout_ramp from 0 at the first epoch to --cutout_prob at the last."""
        if not self.data.cutout:
            return 0.0
        ramp = epoch / max(self.epochs - 1, 1) if self.cutout_ramp else 1.0
        return self.data.cutout_prob * ramp


def flag_value(cfg: Any, flag: str) -> Any:
    """The value of a flag wherever a configuration holds it: in a field of its own or of one
    of its parts (data, run, the space's options, ...); KeyError if none does."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _is_part(value) and f.name == flag:
            return value
        if _is_part(value):
            with contextlib.suppress(KeyError):
                return flag_value(value, flag)
    raise KeyError(flag)


def changed_flags(cfg: Any, default: Any) -> dict[str, Any]:
    """flag -> value, of the settings in which `cfg` differs from `default` (a configuration of
    the same type), wherever the configurations hold them."""
    changed: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value, base = getattr(cfg, f.name), getattr(default, f.name)
        if _is_part(value) and type(value) is type(base):
            changed.update(changed_flags(value, base))
        elif f.metadata.get("flag", True) and value != base:
            changed[f.name] = value
    return changed


def with_flags(cfg: Any, values: dict[str, Any]) -> Any:
    """`cfg` with the given flags' values replaced wherever it holds them (and checked again)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if _is_part(value):
            if inner := {k: v for k, v in values.items() if _holds(value, k)}:
                changes[f.name] = with_flags(value, inner)
        elif f.name in values:
            changes[f.name] = values[f.name]
    return dataclasses.replace(cfg, **changes)


def _is_part(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _holds(cfg: Any, flag: str) -> bool:
    try:
        flag_value(cfg, flag)
    except KeyError:
        return False
    return True
