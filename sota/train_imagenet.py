"""Train a genotype from scratch on ImageNet (the original's sota/cnn/train_imagenet.py).

    python -m sota.train_imagenet --data DIR --arch darts_pt_s5_0 --auxiliary

DIR holds `train/<class>/*` and `val/<class>/*`; images are streamed from disk by DataLoader
workers (common/imagefolder.py). NetworkImageNet (C=48, 14 cells) trains 250 epochs with SGD
(lr 0.1, momentum 0.9, weight decay 3e-5, lr x0.97 every epoch), batch 128, label smoothing
0.1 on the main and auxiliary losses, and reports top-1 and top-5 accuracy on val/ every
epoch. exp_scripts/eval-imagenet.sh wraps this command; under torchrun (`--nproc N`, with
`--nnodes` for several machines) `--batch_size` is the batch of all processes together.
The training loop is sota/train.py's. `--load PATH` starts a new run where a checkpoint of the
original's train_imagenet.py stopped (its `checkpoint.pth.tar` or `model_best.pth.tar`).
Output: <exp_root>/sota/imagenet/eval/eval-<arch>-<seed>[-<expid_tag>]/.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from common import checkpoint as ckpt
from common.cli import Parser
from common.config import ConfigError, DataConfig, at_least, check, finite
from common.experiment import REPO_ROOT

from .genotypes import Genotype
from .model_eval import count_mult_adds_m
from .model_imagenet import AUX_MAP_SIZES, DOWNSAMPLING, IMAGE_SIZE, NetworkImageNet, final_map_size
from .train import LOADED, EvalConfig, Run, add_training_flags, start, training_config
from .train import run_folder as run_folder  # the study names an evaluation's folder through its module

DATASET = "imagenet"
ORIGINAL_CHECKPOINT = "checkpoint.pth.tar"  # the one file the original's train_imagenet.py rewrote every epoch


@dataclass(frozen=True)
class ImageNetConfig(EvalConfig):
    """One from-scratch training of a genotype on ImageNet; the original's defaults."""

    epochs: int = 250
    init_channels: int = 48
    layers: int = 14
    drop_path_prob: float = 0.0
    label_smooth: float = 0.1
    gamma: float = 0.97
    decay_period: int = 1
    workers: int = 8
    ckpt_steps: int = 1000  # a tenth of an epoch at batch 128; the original has no mid-epoch checkpoints
    load: Path | None = None  # a checkpoint of the original's train_imagenet.py to start from

    def __post_init__(self) -> None:
        self.check_training()
        check(0.0 <= self.label_smooth < 1.0, "label_smooth", self.label_smooth, "must be in [0, 1)")
        finite("gamma", self.gamma, positive=True)
        at_least("decay_period", self.decay_period, 1)
        at_least("workers", self.workers, 0, " (0: read images in the training process)")
        size = self.data.image_size
        check(size % DOWNSAMPLING == 0, "image_size", size,
              f"must be a multiple of {DOWNSAMPLING} (the network downsamples by {DOWNSAMPLING}); {IMAGE_SIZE} as the "
              f"original")
        check(not self.auxiliary or final_map_size(size) in AUX_MAP_SIZES, "image_size", size,
              f"the auxiliary head needs a final map of {' or '.join(f'{m}x{m}' for m in AUX_MAP_SIZES)} "
              f"(--image_size {' or '.join(str(m * DOWNSAMPLING) for m in AUX_MAP_SIZES)}): pass --image_size "
              f"{IMAGE_SIZE} or pass --no_auxiliary")
        check(self.data.batch_size % self.nproc == 0, "batch_size", self.data.batch_size,
              f"must be a multiple of --nproc {self.nproc}: each process trains on an equal share of every batch")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(__doc__.splitlines()[0])
    g = p.add_argument_group("data")
    g.add_argument("--data", default=str(REPO_ROOT / "data" / DATASET),
                   help="the folder holding train/<class>/* and val/<class>/*")
    g.add_argument("--image_size", type=int, default=IMAGE_SIZE,
                   help="training crop and validation centre crop (validation resizes to 256/224 of it first)")
    g.add_argument("--batch_size", type=int, default=128, help="images per step, all processes together")
    g.add_argument("--workers", type=int, default=8, help="DataLoader worker processes of each training process")
    t = add_training_flags(p, init_channels=48, layers=14, drop_path_prob=0.0, epochs=250, learning_rate=0.1,
                           weight_decay=3e-5, ckpt_steps=1000)
    t.add_argument("--label_smooth", type=float, default=0.1, help="label smoothing of the training losses")
    t.add_argument("--gamma", type=float, default=0.97, help="learning rate factor every --decay_period epochs")
    t.add_argument("--decay_period", type=int, default=1, help="epochs between two learning rate decays")
    t.add_argument("--load", type=Path, metavar="PATH",
                   help=f"start a new run where a checkpoint of the original's train_imagenet.py stopped: its "
                        f"{ORIGINAL_CHECKPOINT} (or the folder holding it) or model_best.pth.tar; weights, optimiser, "
                        f"epoch and best accuracy are taken, training goes on to --epochs. Not used when "
                        f"--resume_epoch continues this run's own checkpoints")
    p.set_defaults(seed=0)  # the original's
    return p


def config(args: argparse.Namespace, nproc: int = 1) -> ImageNetConfig:
    data = DataConfig(data=Path(args.data), dataset=DATASET, image_size=args.image_size, batch_size=args.batch_size)
    return ImageNetConfig(data=data, **training_config(args, nproc), label_smooth=args.label_smooth,
                          gamma=args.gamma, decay_period=args.decay_period, workers=args.workers, load=args.load)


class ImageNetRun(Run):
    """The ImageNet protocol: streamed image folders, NetworkImageNet, label smoothing, a step
    schedule, top-5."""

    top5 = True
    cfg: ImageNetConfig

    def load_data(self) -> int:
        # torchvision on first use: a broken install is then one `error:` line, not a traceback
        from common.imagefolder import Stream, open_splits

        cfg, group = self.cfg, self.group
        train, val = open_splits(cfg.data.data, cfg.data.image_size)
        common = dict(seed=cfg.run.seed, shard=(group.rank, group.size), workers=cfg.workers, device=self.device,
                      limit=1 if cfg.run.fast else None, memory_format=self.memory_format)
        per_process = cfg.data.batch_size // group.size
        self.train_stream = Stream(train, per_process, train=True, **common)
        self.test_stream = Stream(val, per_process, train=False, **common)
        return len(train.classes)

    def network(self, genotype: Genotype, num_classes: int) -> nn.Module:
        cfg = self.cfg
        return NetworkImageNet(cfg.init_channels, num_classes, cfg.layers, cfg.auxiliary, genotype,
                               cfg.data.image_size)

    def size(self) -> dict[str, float]:
        return {**super().size(), "mult_adds_m": count_mult_adds_m(self.net, self.cfg.data.image_size)}

    def schedule(self) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.StepLR(self.optimizer, self.cfg.decay_period, gamma=self.cfg.gamma)

    def train_criterion(self, num_classes: int) -> nn.Module:
        # the original's CrossEntropyLabelSmooth: (1 - eps) * one-hot + eps / classes, as torch's
        return nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smooth)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor, int]]:
        for x, y in self.train_stream(epoch, start):  # equal shares: every process has len(y) images
            yield x, y, len(y) * self.group.size

    def train_steps(self) -> int:
        return len(self.train_stream)

    def test_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.test_stream(0)

    def start_state(self) -> dict[str, Any]:
        """--load: the original's checkpoint (keys epoch, state_dict, best_acc_top1, optimizer;
        `module.`-prefixed names under its --parallel) in the network and optimiser, and the
        schedule at its epoch, as the original's --load continued it."""
        if self.cfg.load is None:
            return {}
        path = self.cfg.load / ORIGINAL_CHECKPOINT if self.cfg.load.is_dir() else self.cfg.load
        state = ckpt.load_checkpoint(path, other="pass --load a checkpoint.pth.tar of the original's train_imagenet.py")
        if not {"epoch", "state_dict", "optimizer"} <= state.keys():
            raise ConfigError("load", path, f"holds {sorted(state)}, not the epoch, state_dict and optimizer of a "
                                            f"checkpoint of the original's train_imagenet.py")
        cfg, epoch = self.cfg, int(state["epoch"])
        if not 0 <= epoch < cfg.epochs:
            raise ConfigError("load", path, f"it stopped at epoch {epoch}: a run that starts there needs --epochs "
                                            f"above it (now {cfg.epochs})")
        weights = {k.removeprefix("module."): v for k, v in state["state_dict"].items()}
        try:
            self.net.load_state_dict(weights)
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ConfigError("load", path, f"does not fit this network (check --arch, --init_channels, --layers "
                                            f"and --auxiliary): {e!r}") from e
        # StepLR at `epoch`, as if it had stepped there: the learning rate of an uninterrupted run
        lrs = [base * cfg.gamma ** (epoch // cfg.decay_period) for base in self.scheduler.base_lrs]
        for group, base, lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs, lrs, strict=True):
            group.update(initial_lr=base, lr=lr)
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), "last_epoch": epoch, "_last_lr": lrs})
        best = state.get("best_acc_top1")
        return {"epoch": epoch, "best_acc": None if best is None else float(best), LOADED: str(path)}


def main(argv: list[str] | None = None) -> int:
    return start(build_parser, config, ImageNetRun, argv)


if __name__ == "__main__":
    raise SystemExit(main())
