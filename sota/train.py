"""Train a genotype from scratch and report its test accuracy (DARTS' cnn/train.py).

    python -m sota.train --dataset cifar10 --arch darts_pt_s5_0 --auxiliary --cutout

`--arch` takes a catalog name (DARTS_V2, the published DARTS-PT cells, or a genotype that
projection registered) or a genotype literal. exp_scripts/eval*.sh wrap this command.
Output: <exp_root>/sota/<dataset>/eval/eval-<arch>-<seed>[-<expid_tag>]/.

Under torchrun (`exp_scripts/eval.sh --nproc N`) it trains in N processes with
DistributedDataParallel (common/distributed.py): `--batch_size` and `--learning_rate` stay
those of the whole batch, each process trains on its shard of every batch, `--sync_bn`
normalises over the whole batch, and process 0 alone writes.

The training loop (`Run`, `train`) is shared with ImageNet (sota/train_imagenet.py), whose
`Run` subclass changes only the data, network, loss, schedule and metrics.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from common import checkpoint as ckpt
from common.batchnorm import SyncBatchNorm2d
from common.cli import (
    Parser,
    add_data_flags,
    add_kernel_flags,
    add_launcher_flags,
    add_optim_flags,
    add_run_flags,
    add_switch,
    data_config,
    parse_config,
    run_config,
    speed_config,
)
from common.config import ConfigError, DataConfig, OptimConfig, RunConfig, SpeedConfig, at_least, check, finite
from common.data import DATASETS, EVAL_TEST, TRAIN, Batches, load_dataset
from common.device import memory_format
from common.distributed import Group
from common.entry import exit_code, seed_everything
from common.experiment import (
    LOGGER,
    Board,
    Timer,
    append_jsonl,
    log_to_file,
    new_run_dir,
    record_config,
    resume_checkpoint,
    set_aside,
    start_logging,
    truncate_history,
    write_json,
)
from common.metrics import Midway, Stats, check_finite
from common.progress import Progress, run_progress
from common.runstate import continue_with, deferred, handling_signals, resume_run, stop_point, stoppable, tracked
from common.threads import use_threads

from .genotypes import Genotype, genotype_to_dict, is_genotype_literal, registry, resolve_arch
from .model_eval import NetworkCIFAR, count_parameters_mb
from .spaces import check_layers

log = logging.getLogger(LOGGER)

AUX_IMAGE_SIZE = 32  # DARTS' CIFAR auxiliary head pools an 8x8 map, i.e. 32x32 inputs
AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CKPT_KEEP_EVERY = 50  # the original kept a checkpoint every 50 epochs
BEST = "model_best.pth.tar"  # the weights of the epoch with the best test accuracy (the original ImageNet's name)
LOADED = "loaded_from"  # start_state's key: the original's checkpoint a new run started from


@dataclass(frozen=True)
class EvalConfig:
    """One from-scratch training of a genotype."""

    arch: str
    data: DataConfig
    run: RunConfig
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate_min=0.0))
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    epochs: int = 600
    init_channels: int = 36
    layers: int = 20
    auxiliary: bool = False
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    nproc: int = 1  # processes (torchrun's WORLD_SIZE; the exp_scripts' --nproc)
    sync_bn: bool = False
    autocast: str = "none"  # forward passes in bf16 or fp16 (AUTOCAST)
    ckpt_steps: int = 0  # a mid-epoch checkpoint every N training steps (0: none, as the original)

    def __post_init__(self) -> None:
        self.check_training()
        check(not self.auxiliary or self.data.image_size == AUX_IMAGE_SIZE, "image_size", self.data.image_size,
              f"the auxiliary head needs {AUX_IMAGE_SIZE}x{AUX_IMAGE_SIZE} inputs: pass --image_size "
              f"{AUX_IMAGE_SIZE} or pass --no_auxiliary")

    def check_training(self) -> None:
        """The checks every evaluation protocol shares."""
        at_least("epochs", self.epochs, 1)
        at_least("nproc", self.nproc, 1)
        check(self.data.batch_size >= self.nproc, "batch_size", self.data.batch_size,
              f"each of the --nproc {self.nproc} processes needs at least one image of every batch")
        at_least("init_channels", self.init_channels, 1)
        check_layers(self.layers)
        finite("auxiliary_weight", self.auxiliary_weight)
        check(0.0 <= self.drop_path_prob < 1.0, "drop_path_prob", self.drop_path_prob, "must be in [0, 1)")
        check(self.autocast in AUTOCAST, "autocast", self.autocast, f"choose one of {', '.join(AUTOCAST)}")
        at_least("ckpt_steps", self.ckpt_steps, 0, " (0: checkpoints at epoch ends only)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(__doc__.splitlines()[0])
    add_data_flags(p.add_argument_group("data"), datasets=[d for d in DATASETS if d != "imagenet16-120"])
    p.set_defaults(batch_size=96)
    add_training_flags(p, init_channels=36, layers=20, drop_path_prob=0.2, epochs=600, learning_rate=0.025,
                       weight_decay=3e-4, ckpt_steps=0)
    return p


def add_training_flags(p: argparse.ArgumentParser, *, init_channels: int, layers: int, drop_path_prob: float,
                       epochs: int, learning_rate: float, weight_decay: float,
                       ckpt_steps: int) -> argparse._ArgumentGroup:
    """The network, training, speed and run flags every evaluation protocol shares, with its
    defaults; the network-and-training group, for a protocol's own flags."""
    g = p.add_argument_group("network and training")
    g.add_argument("--arch", default="DARTS_V2", help="catalog name or genotype literal")
    g.add_argument("--init_channels", type=int, default=init_channels)
    g.add_argument("--layers", type=int, default=layers)
    add_switch(g, "auxiliary", "auxiliary head")
    g.add_argument("--auxiliary_weight", type=float, default=0.4)
    g.add_argument("--drop_path_prob", type=float, default=drop_path_prob,
                   help="reached at the last epoch, ramped from 0")
    g.add_argument("--epochs", type=int, default=epochs)
    g.add_argument("--sync_bn", action="store_true", default=False,
                   help="under torchrun (--nproc N of the exp_scripts): batch norm over the whole batch of all "
                        "processes, as one process; off: each process normalises its own shard")
    add_optim_flags(g)
    p.set_defaults(learning_rate=learning_rate, weight_decay=weight_decay)

    s = p.add_argument_group("speed (see benchmarks/RESULTS.md)")
    add_kernel_flags(s)
    s.add_argument("--autocast", default="none", choices=list(AUTOCAST),
                   help="CHANGES NUMERICS: forward passes in bf16 or fp16 (fp16 with a gradient scaler); "
                        "weights, optimiser and losses stay float32")
    add_launcher_flags(p)
    r = add_run_flags(p, seed=2, save="eval", ckpt_interval=1)  # as the original eval scripts
    r.add_argument("--ckpt_steps", type=int, default=ckpt_steps,
                   help=f"also checkpoint every N training steps inside an epoch, into {ckpt.PARTIAL} (one file, "
                        f"removed at the epoch's end); --resume_epoch -1 continues from it in the middle of the "
                        f"epoch, as if never stopped. 0: at epoch ends only")
    p.set_defaults(ckpt_keep_every=CKPT_KEEP_EVERY)
    return g


def config(args: argparse.Namespace, nproc: int = 1) -> EvalConfig:
    return EvalConfig(data=data_config(args), **training_config(args, nproc))


def training_config(args: argparse.Namespace, nproc: int) -> dict[str, Any]:
    """The fields of EvalConfig every protocol's flags give."""
    return dict(arch=args.arch, run=run_config(args),
                optim=OptimConfig(learning_rate=args.learning_rate, learning_rate_min=0.0,
                                  momentum=args.momentum, weight_decay=args.weight_decay, grad_clip=args.grad_clip),
                speed=speed_config(args), epochs=args.epochs, init_channels=args.init_channels,
                layers=args.layers, auxiliary=args.auxiliary, auxiliary_weight=args.auxiliary_weight,
                drop_path_prob=args.drop_path_prob, nproc=nproc, sync_bn=args.sync_bn, autocast=args.autocast,
                ckpt_steps=args.ckpt_steps)


def arch_name(arch: str, genotype: Genotype) -> str:
    """The catalog name, or `custom-<hash>` for a literal, so equal genotypes share a name."""
    if not is_genotype_literal(arch):
        return arch
    digest = hashlib.sha1(json.dumps(genotype_to_dict(genotype), sort_keys=True).encode()).hexdigest()
    return f"custom-{digest[:8]}"


def run_folder(cfg: EvalConfig, name: str) -> Path:
    """Evaluation runs sit side by side in one folder per dataset."""
    run = f"{cfg.run.save}-{name}-{cfg.run.seed}" + (f"-{cfg.run.expid_tag}" if cfg.run.expid_tag else "")
    return cfg.run.exp_root / "sota" / cfg.data.dataset / "eval" / run


def main(argv: list[str] | None = None) -> int:
    return start(build_parser, config, Run, argv)


def start(parser: Callable[[], argparse.ArgumentParser], to_config: Callable[[argparse.Namespace, int], Any],
          run_class: type[Run], argv: list[str] | None) -> int:
    """An evaluation entry point in this process of its group: parse, run `run_class`, exit code."""
    group = Group.start()
    try:
        with group.quiet():
            cfg = parse_config(parser(), lambda args: to_config(args, group.size), argv, processes=group.size)
        defaults = to_config(parser().parse_args([]), 1)  # what the log's config block leaves out
        with handling_signals(main=group.main):
            code = exit_code(lambda: run(cfg, group, run_class, defaults), report=group.main)
    except SystemExit as e:  # argparse: a refused flag, or --help
        code = int(e.code or 0)
    group.close()
    return code


class Run:
    """Model, optimiser, scheduler and data of one evaluation run (of this process's part of it).

    CIFAR's protocol (DARTS' train.py); a subclass changes what a protocol changes: `load_data`,
    `network`, `schedule`, `train_criterion`, `train_batches`, `test_batches` and `top5`.
    """

    top5 = False  # also report top-5 accuracy

    def __init__(self, cfg: EvalConfig, genotype: Genotype, device: torch.device, group: Group) -> None:
        self.cfg, self.device, self.group = cfg, device, group
        # channels-last on CPU: the same numbers up to summation order, faster
        self.memory_format = memory_format(cfg.speed.memory_format, device)
        num_classes = self.load_data()
        net = self.network(genotype, num_classes)
        self.net = (SyncBatchNorm2d.convert(net) if cfg.sync_bn else net).to(device, memory_format=self.memory_format)
        self.model: nn.Module = self.net  # what trains: DistributedDataParallel of the net once `distribute` ran
        self.optimizer = torch.optim.SGD(self.net.parameters(), cfg.optim.learning_rate,
                                         momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        self.scheduler = self.schedule()
        self.criterion = self.train_criterion(num_classes)
        self.test_criterion = nn.CrossEntropyLoss()
        self.autocast = AUTOCAST[cfg.autocast]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast == torch.float16)

    # -- the protocol ------------------------------------------------------------------------------
    def load_data(self) -> int:
        """Set up the training and test batches; the number of classes."""
        cfg, group = self.cfg, self.group
        data = cfg.data
        train_set, test_set = (load_dataset(data.dataset, data.data, train=t, image_size=data.image_size)
                               for t in (True, False))
        common = dict(device=self.device, seed=cfg.run.seed, limit=1 if cfg.run.fast else None,
                      memory_format=self.memory_format, shard=(group.rank, group.size))
        self.train_data = Batches(train_set, None, data.batch_size, augment=True,
                                  cutout_length=data.cutout_size, **common)
        self.test_data = Batches(test_set, None, data.batch_size, augment=False, shuffle=False, **common)
        self.train_data.check_shards("batch_size")
        return train_set.num_classes

    def network(self, genotype: Genotype, num_classes: int) -> nn.Module:
        return NetworkCIFAR(self.cfg.init_channels, num_classes, self.cfg.layers, self.cfg.auxiliary, genotype)

    def schedule(self) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, float(self.cfg.epochs), eta_min=0)

    def train_criterion(self, num_classes: int) -> nn.Module:
        return nn.CrossEntropyLoss()

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor, int]]:
        """This process's (images, targets) of each step from step `start` on, and the images of
        the step in all processes."""
        cutout_prob = self.cfg.data.cutout_prob if self.cfg.data.cutout else 0.0
        for step, (x, y) in enumerate(self.train_data((TRAIN, epoch), cutout_prob, start), start):
            yield x, y, self.train_data.batch_size_of(step)

    def train_steps(self) -> int:
        """Steps of a training epoch."""
        return len(self.train_data)

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.test_data((EVAL_TEST,))

    def start_state(self) -> dict[str, Any]:
        """What a new run starts from, loaded into the run: nothing (epoch 0) unless a protocol
        starts from a checkpoint of the original code (ImageNet's --load)."""
        return {}

    def size(self) -> dict[str, float]:
        """The network's size, for result.json."""
        return {"params_mb": count_parameters_mb(self.net)}

    # -- the loop ----------------------------------------------------------------------------------
    def distribute(self) -> None:
        """Wrap the net for multi-process training (a collective: every process, after the checks)."""
        self.model = self.group.wrap(self.net, self.device)

    def epoch(self, epoch: int, progress: Progress, midway: Midway | None = None) -> dict[str, float]:
        """Train one epoch (from `midway` on), test, step the schedule: the epoch's history row. A
        signal during the test (one process) stops the run, saved as the training left it."""
        lr = self.scheduler.get_last_lr()[0]
        log.info("epoch %d lr %e", epoch, lr)
        midway = midway or Midway(Stats(self.device))
        train_acc, train_loss = self.train_epoch(epoch, progress, midway)
        with stoppable(self.group, self.device, functools.partial(_save_trained, self.group, midway, epoch,
                                                                  self.train_steps())):
            test = self.evaluate()
        self.scheduler.step()  # after the test, which a signal may stop: the training left it as it is
        return {"epoch": epoch, "lr": lr, "train_acc": train_acc, "train_loss": train_loss, **test,
                "drop_path_prob": self.net.drop_path_prob}

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, self.autocast, enabled=self.autocast is not None)

    def train_epoch(self, epoch: int, progress: Progress, midway: Midway | None = None) -> tuple[float, float]:
        """Accuracy (%) and mean loss (auxiliary term included, as DARTS logs it) of one epoch,
        from `midway` on (the whole epoch without it). Every step boundary is a stop point
        (common/runstate.py), where `midway.write` saves the epoch so far."""
        cfg, model, group = self.cfg, self.model, self.group
        midway = midway or Midway(Stats(self.device))
        stats, steps = midway.stats, self.train_steps()
        model.train()
        self.net.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs
        lines = progress.epoch(epoch, steps, midway.step)
        for step, (x, y, batch) in enumerate(self.train_batches(epoch, midway.step), midway.step):
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                logits, logits_aux = model(x)
                loss = self.criterion(logits, y)
                if cfg.auxiliary:
                    loss = loss + cfg.auxiliary_weight * self.criterion(logits_aux, y)
            self.scaler.scale(group.weighted(loss, len(y), batch)).backward()
            self.scaler.unscale_(self.optimizer)  # clip the true gradients (no-op without fp16)
            nn.utils.clip_grad_norm_(self.net.parameters(), cfg.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            stats.add(logits, y, loss)
            if lines.due(step):  # the only host syncs inside an epoch
                acc, avg = group.result(stats)
                _check_finite(avg, epoch)
                lines.log(step, f"loss {avg:e} acc {acc:f}")
            if step + 1 < steps:  # the epoch's end is its run's stop point
                if cfg.ckpt_steps and (step + 1) % cfg.ckpt_steps == 0:
                    _save_midway(group, midway, epoch, step + 1)
                stop_point(group, functools.partial(_save_midway, group, midway, epoch, step + 1))
        acc, loss = group.result(stats)
        _check_finite(loss, epoch)
        log.info("train_acc %f", acc)
        return acc, loss

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """test_acc and test_loss (and test_acc_top5) of the test pass."""
        # Per-process batch norm leaves each process its own running statistics: every process
        # tests with process 0's, the ones its checkpoint holds.
        self.group.broadcast(self.net.buffers())
        self.net.eval()
        stats, stats5 = Stats(self.device), Stats(self.device, k=5)
        for step, (x, y) in enumerate(self.test_batches()):
            if len(y):  # a process's shard of a last batch smaller than --nproc may be empty
                with self._autocast():
                    logits, _ = self.net(x)
                    loss = self.test_criterion(logits, y)
                stats.add(logits, y, loss)
                if self.top5:
                    stats5.add(logits, y, loss)
            if step % self.cfg.run.report_freq == 0:
                _log_step("valid", step, self.group.result(stats))
        acc, loss = self.group.result(stats)
        log.info("valid_acc %f", acc)
        row = {"test_acc": acc, "test_loss": loss}
        if self.top5:
            row["test_acc_top5"] = self.group.result(stats5)[0]
            log.info("valid_acc_top5 %f", row["test_acc_top5"])
        return row

    def state(self) -> dict[str, Any] | None:
        """The checkpoint's model, optimiser, scheduler and RNG states, on process 0 (None on the
        others; a collective: every process gives its RNG states)."""
        rngs = self.group.rng_states(self.device)  # "rng", "nproc" and, in several processes, "process_rng"
        if rngs is None:
            return None
        return {"state_dict": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), **rngs, "epochs": self.cfg.epochs,
                **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {})}

    def load(self, state: dict[str, Any], path: Path) -> None:
        # checkpoints from before "epochs" was saved: the cosine schedule's length
        epochs = int(state.get("epochs", state.get("scheduler", {}).get("T_max", -1)))
        if epochs != self.cfg.epochs:  # the schedule and drop path ramp would silently change
            raise ConfigError("epochs", self.cfg.epochs, f"{path} belongs to a run of {epochs} epochs: "
                                                         f"pass --epochs {epochs} to resume it")
        self.group.check_nproc(state, path)  # each process continues the random state it saved
        batch_size = int(state.get("batch_size", self.cfg.data.batch_size))
        if "step" in state and batch_size != self.cfg.data.batch_size:  # its steps are of batches of that size
            raise ConfigError("batch_size", self.cfg.data.batch_size,
                              f"{path} stopped in the middle of an epoch of batches of {batch_size}: pass "
                              f"--batch_size {batch_size} to resume it")
        try:
            self.net.load_state_dict(state["state_dict"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            ckpt.set_rng_state(self.group.process_rng(state) or state["rng"], self.device)
        except (RuntimeError, ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"{path} does not fit this network (check --arch, --dataset, "
                                       f"--init_channels, --layers and --auxiliary): {e!r}") from e


def prepare(cfg: EvalConfig, group: Group, run_class: type[Run]) -> tuple[Run, Path, str, Genotype, dict[str, Any]]:
    """Every check a bad command can fail, and the run set up to start or resume; writes nothing."""
    threads = use_threads(cfg.run.threads, cfg.data.activations(cfg.init_channels, cfg.nproc))  # before torch work
    log.info("%s", threads.line())
    device = group.device(cfg.run.gpu)
    seed_everything(group.seed(cfg.run.seed), cfg.run.deter, cfg.speed.tf32)
    try:
        genotype = resolve_arch(cfg.arch, registry(cfg.run.exp_root))
    except (KeyError, ValueError) as e:
        raise ConfigError("arch", cfg.arch[:60], e.args[0] if e.args else str(e)) from e
    name = arch_name(cfg.arch, genotype)
    folder = run_folder(cfg, name)
    continue_with(lambda: resume_run(folder))
    state, path = resume_state(folder, cfg.run)
    r = run_class(cfg, genotype, device, group)
    if path is not None:
        r.load(state, path)
    else:
        state = r.start_state()
    return r, folder, name, genotype, state


def resume_state(folder: Path, run: RunConfig) -> tuple[dict[str, Any], Path | None]:
    """The checkpoint a run continues, and its file ({} and None: a new run)."""
    path = resume_checkpoint(folder, run.resume_epoch, run.overwrite)
    return (ckpt.load_checkpoint(path), path) if path is not None else ({}, None)


def run(cfg: EvalConfig, group: Group, run_class: type[Run], defaults: EvalConfig) -> dict[str, Any]:
    """The run, checked first; its log shows the configuration where it differs from `defaults`."""
    start_logging(main=group.main)
    # Everything that can fail on a bad command runs, on every process, before the folder is touched.
    r, folder, name, genotype, state = group.agree(lambda: prepare(cfg, group, run_class))
    resume = bool(state) and LOADED not in state  # a run started from the original's checkpoint is new
    group.on_main(lambda: new_run_dir(folder, resume=resume, overwrite=cfg.run.overwrite))
    r.distribute()
    if group.main:
        log_to_file(folder / "log.txt")
    record_config(cfg, defaults, folder, group.main)
    log.info("device = %s (%s), experiment folder = %s", r.device, r.memory_format, folder)
    if cfg.sync_bn and not group.distributed:
        log.info("--sync_bn: one process already normalises over the whole batch")
    log.info("genotype = %s", genotype)
    log.info("params %.3f M (without the auxiliary head)", count_parameters_mb(r.net))  # DARTS' "param size = ...MB"
    board = Board(folder, enabled=cfg.run.tensorboard and group.main)
    try:
        with tracked(folder, main=group.main):
            return train(r, name, folder, genotype, state, board)
    finally:
        board.close()


def train(r: Run, name: str, folder: Path, genotype: Genotype, state: dict[str, Any],
          board: Board) -> dict[str, Any]:
    """The epochs; process 0 writes history, checkpoints and result.json (the others train along)."""
    cfg, main = r.cfg, r.group.main
    start, timer = int(state.get("epoch", 0)), Timer(float(state.get("train_time", 0.0)))
    best_acc, test_acc = state.get("best_acc"), state.get("test_acc")
    top5 = state.get("test_acc_top5")
    if state and main:
        truncate_history(folder / "history.jsonl", start)
        if "step" not in state:  # continued from an epoch's checkpoint
            _set_aside_later(folder, start)

    def write_partial(epoch: int, step: int, stats: Stats) -> None:
        """The mid-epoch checkpoint (a collective: every process gives its states and Stats)."""
        checkpoint, stats_ = r.state(), r.group.per_process("stats", stats.state())
        if checkpoint is not None and stats_ is not None:  # process 0
            ckpt.save_checkpoint({"epoch": epoch, "step": step, **checkpoint, **stats_,
                                  "batch_size": cfg.data.batch_size, **_scores(r, best_acc, test_acc, top5, timer)},
                                 ckpt.partial_path(folder))

    midway = Midway(Stats(r.device), int(state.get("step", 0)), write_partial)
    if midway.step:
        midway.stats.load(r.group.own(state, "stats"))
        log.info("resumed from epoch %d step %d (%s)", start, midway.step, ckpt.PARTIAL)
    elif LOADED in state:
        log.info("started at epoch %d from %s (--load)", start, state[LOADED])
    elif start:
        log.info("resumed from epoch %d", start)
    result = {"status": "running", "kind": "eval", "arch": name, "genotype": genotype_to_dict(genotype),
              "dataset": cfg.data.dataset, "seed": cfg.run.seed, "fast": cfg.run.fast, "epochs": cfg.epochs,
              "epochs_done": start, "init_channels": cfg.init_channels, "layers": cfg.layers,
              "batch_size": cfg.data.batch_size, "auxiliary": cfg.auxiliary,
              "nproc": cfg.nproc, "sync_bn": cfg.sync_bn, **r.size(),
              **_accuracies(best_acc, test_acc, top5 if r.top5 else False, timer)}
    if main:
        write_json(folder / "result.json", result)
    # Several processes log at the same steps only: a line reads the loss of all of them (a
    # collective), and their clocks differ.
    progress = run_progress(cfg.run, cfg.epochs, start + midway.step / r.train_steps(),
                            timed=not r.group.distributed)
    with deferred():  # a signal stops the run at the next step or epoch end, saved there
        for epoch in range(start, cfg.epochs):
            row = r.epoch(epoch, progress, midway if epoch == start else Midway(Stats(r.device), write=write_partial))
            test_acc, top5 = row["test_acc"], row.get("test_acc_top5")
            improved = best_acc is None or test_acc > best_acc
            best_acc = test_acc if improved else best_acc
            checkpointed = (epoch + 1) % cfg.run.ckpt_interval == 0 or epoch + 1 == cfg.epochs
            checkpoint = r.state() if checkpointed else None
            if main:
                append_jsonl(folder / "history.jsonl", row)
                board.scalars({k: float(v) for k, v in row.items() if k != "epoch"}, epoch)
                if improved:
                    ckpt.save_checkpoint({"epoch": epoch + 1, "state_dict": r.net.state_dict(), "best_acc": best_acc,
                                          **({"test_acc_top5": top5} if r.top5 else {})}, folder / BEST)
                if checkpoint is not None:
                    ckpt.save_checkpoint({"epoch": epoch + 1, **checkpoint,
                                          **_scores(r, best_acc, test_acc, top5, timer)},
                                         ckpt.checkpoint_path(folder, epoch + 1))
                    ckpt.partial_path(folder).unlink(missing_ok=True)  # older than the checkpoint just written
                    ckpt.prune_checkpoints(folder, cfg.run.ckpt_keep_every, keep=epoch + 1)
                result.update(epochs_done=epoch + 1,
                              **_accuracies(best_acc, test_acc, top5 if r.top5 else False, timer))
                write_json(folder / "result.json", result)  # progress for whoever watches the run
            stop_point(r.group, functools.partial(_save_epoch_end, r, write_partial, epoch, checkpointed))
    result.update(status="finished", **_accuracies(best_acc, test_acc, top5 if r.top5 else False, timer))
    if main:
        write_json(folder / "result.json", result)
    log.info("finished: test accuracy %.2f%% (best %.2f%%), %.0f s", test_acc, best_acc, timer.elapsed())
    return result


def _save_epoch_end(r: Run, write_partial: Callable[[int, int, Stats], None], epoch: int, checkpointed: bool) -> str:
    """What a stop point at the end of epoch `epoch` saves: nothing more after its checkpoint,
    else the start of the next epoch (a mid-epoch checkpoint at its step 0)."""
    if not checkpointed:
        write_partial(epoch + 1, 0, Stats(r.device))
    return f"the end of epoch {epoch}"


def _save_midway(group: Group, midway: Midway, epoch: int, step: int) -> str:
    """The epoch so far, as a mid-epoch checkpoint (never of a diverged run)."""
    _check_finite(group.result(midway.stats)[1], epoch)
    midway.write(epoch, step, midway.stats)
    return f"epoch {epoch} step {step}"


def _save_trained(group: Group, midway: Midway, epoch: int, steps: int) -> str:
    """What a signal during epoch `epoch`'s test saves: the epoch past its last step."""
    _save_midway(group, midway, epoch, steps)
    return f"the end of epoch {epoch}'s training steps"


def _set_aside_later(folder: Path, epoch: int) -> None:
    """A run that continues from epoch `epoch`'s checkpoint moves the later trajectory's
    checkpoints aside, and its best model if that is of a later epoch."""
    best = folder / BEST
    later = ckpt.later_checkpoints(folder, epoch)
    if best.is_file() and int(ckpt.load_checkpoint(best).get("epoch", 0)) > epoch:
        later.append(best)
    set_aside(folder, later, f"continuing from epoch {epoch}")


def _scores(r: Run, best_acc: float | None, test_acc: float | None, top5: float | None,
            timer: Timer) -> dict[str, Any]:
    """What a checkpoint keeps of the run besides its states."""
    return {"best_acc": best_acc, "test_acc": test_acc, **({"test_acc_top5": top5} if r.top5 else {}),
            "train_time": timer.elapsed()}


def _log_step(what: str, step: int, result: tuple[float, float]) -> None:
    acc, loss = result
    log.info("%s %03d %e %f", what, step, loss, acc)


def _check_finite(loss: float, epoch: int) -> None:
    check_finite(loss, f"training loss at epoch {epoch}",
                 "start again with a lower --learning_rate (and --expid_tag or --overwrite).")


def _accuracies(best_acc: float | None, test_acc: float | None, top5: float | None | bool,
                timer: Timer) -> dict[str, Any]:
    """result.json's accuracies; `top5` False: a protocol without top-5."""
    top = {} if top5 is False else {"final_test_acc_top5": top5,
                                    "final_test_error_top5": None if top5 is None else 100.0 - top5}
    return {"best_test_acc": best_acc, "final_test_acc": test_acc,
            "final_test_error": None if test_acc is None else 100.0 - test_acc, **top,
            "train_time_s": round(timer.elapsed(), 1)}


if __name__ == "__main__":
    raise SystemExit(main())
