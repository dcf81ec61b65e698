"""Train a genotype from scratch and report its test accuracy (DARTS' cnn/train.py).

    python -m sota.train --dataset cifar10 --arch darts_pt_s5_0 --auxiliary --cutout

`--arch` takes a catalog name (DARTS_V2, the published DARTS-PT cells, or a genotype that
projection registered) or a genotype literal. exp_scripts/eval*.sh wrap this command.
Output: <exp_root>/sota/<dataset>/eval/eval-<arch>-<seed>[-<expid_tag>]/.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, rng_state, save_checkpoint, \
    set_rng_state
from common.cli import Parser, add_data_flags, add_kernel_flags, add_optim_flags, add_run_flags, data_config, \
    parse_config, run_config, speed_config
from common.config import ConfigError, DataConfig, OptimConfig, RunConfig, SpeedConfig, at_least, check, finite
from common.data import DATASETS, EVAL_TEST, TRAIN, Batches, load_dataset
from common.device import memory_format, select_device
from common.experiment import (LOGGER, Board, Timer, append_jsonl, log_to_file, new_run_dir, run_target,
                               start_logging, truncate_history, write_json)
from common.entry import exit_code, mark_failed, seed_everything
from common.metrics import Stats, check_finite

from .genotypes import Genotype, genotype_to_dict, is_genotype_literal, resolve_arch
from .model_eval import NetworkCIFAR, count_parameters_mb

log = logging.getLogger(LOGGER)

AUX_IMAGE_SIZE = 32  # DARTS' AuxiliaryHeadCIFAR pools an 8x8 map, i.e. 32x32 inputs


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

    def __post_init__(self) -> None:
        at_least("epochs", self.epochs, 1)
        at_least("init_channels", self.init_channels, 1)
        check(self.layers >= 2, "layers", self.layers, "must be at least 2, for the two reduction cells")
        finite("auxiliary_weight", self.auxiliary_weight)
        check(0.0 <= self.drop_path_prob < 1.0, "drop_path_prob", self.drop_path_prob, "must be in [0, 1)")
        check(not self.auxiliary or self.data.image_size == AUX_IMAGE_SIZE, "image_size", self.data.image_size,
              f"the auxiliary head needs {AUX_IMAGE_SIZE}x{AUX_IMAGE_SIZE} inputs: pass --image_size "
              f"{AUX_IMAGE_SIZE} or leave out --auxiliary")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(__doc__.splitlines()[0])
    add_data_flags(p.add_argument_group("data"), datasets=[d for d in DATASETS if d != "imagenet16-120"])
    p.set_defaults(batch_size=96)
    g = p.add_argument_group("network and training")
    g.add_argument("--arch", default="DARTS_V2", help="catalog name or genotype literal")
    g.add_argument("--init_channels", type=int, default=36)
    g.add_argument("--layers", type=int, default=20)
    g.add_argument("--auxiliary", action="store_true", default=False, help="auxiliary head")
    g.add_argument("--auxiliary_weight", type=float, default=0.4)
    g.add_argument("--drop_path_prob", type=float, default=0.2, help="reached at the last epoch, ramped from 0")
    g.add_argument("--epochs", type=int, default=600)
    add_optim_flags(g)

    add_kernel_flags(p.add_argument_group("speed (see benchmarks/RESULTS.md)"))
    add_run_flags(p, seed=2, save="eval", ckpt_interval=1)  # as the original eval scripts
    return p


def config(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(arch=args.arch, data=data_config(args), run=run_config(args),
                      optim=OptimConfig(learning_rate=args.learning_rate, learning_rate_min=0.0,
                                        momentum=args.momentum, weight_decay=args.weight_decay,
                                        grad_clip=args.grad_clip),
                      speed=speed_config(args), epochs=args.epochs, init_channels=args.init_channels,
                      layers=args.layers, auxiliary=args.auxiliary, auxiliary_weight=args.auxiliary_weight,
                      drop_path_prob=args.drop_path_prob)


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
    cfg = parse_config(build_parser(), config, argv)
    return exit_code(lambda: run(cfg))


class Run:
    """Model, optimiser, scheduler and data of one evaluation run."""

    def __init__(self, cfg: EvalConfig, genotype: Genotype, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        data = cfg.data
        train_set, test_set = (load_dataset(data.dataset, data.data, train=t, image_size=data.image_size)
                               for t in (True, False))
        common = dict(device=device, seed=cfg.run.seed, limit=1 if cfg.run.fast else None,
                      # channels-last on CPU: the same numbers up to summation order, faster
                      memory_format=memory_format(cfg.speed.memory_format, device))
        self.train_batches = Batches(train_set, None, data.batch_size, augment=True,
                                     cutout_length=data.cutout_size, **common)
        self.test_batches = Batches(test_set, None, data.batch_size, augment=False, shuffle=False, **common)
        self.model = NetworkCIFAR(cfg.init_channels, train_set.num_classes, cfg.layers, cfg.auxiliary,
                                  genotype).to(device, memory_format=common["memory_format"])
        self.optimizer = torch.optim.SGD(self.model.parameters(), cfg.optim.learning_rate,
                                         momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, float(cfg.epochs), eta_min=0)
        self.criterion = nn.CrossEntropyLoss()

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, step the schedule, test: the epoch's history row."""
        lr = self.scheduler.get_last_lr()[0]
        log.info("epoch %d lr %e", epoch, lr)
        train_acc, train_loss = self.train_epoch(epoch)
        self.scheduler.step()
        test_acc, test_loss = self.evaluate()
        return {"epoch": epoch, "lr": lr, "train_acc": train_acc, "train_loss": train_loss,
                "test_acc": test_acc, "test_loss": test_loss, "drop_path_prob": self.model.drop_path_prob}

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """Accuracy (%) and mean loss (auxiliary term included, as DARTS logs it) of one epoch."""
        cfg, model = self.cfg, self.model
        model.train()
        model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs
        stats = Stats(self.device)
        cutout_prob = cfg.data.cutout_prob if cfg.data.cutout else 0.0
        for step, (x, y) in enumerate(self.train_batches((TRAIN, epoch), cutout_prob)):
            self.optimizer.zero_grad(set_to_none=True)
            logits, logits_aux = model(x)
            loss = self.criterion(logits, y)
            if cfg.auxiliary:
                loss = loss + cfg.auxiliary_weight * self.criterion(logits_aux, y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            stats.add(logits, y, loss)
            if step % cfg.run.report_freq == 0:  # the only host syncs inside an epoch
                _check_finite(_log_step("train", step, stats), epoch)
        acc, loss = stats.result()
        _check_finite(loss, epoch)
        log.info("train_acc %f", acc)
        return acc, loss

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        self.model.eval()
        stats = Stats(self.device)
        for step, (x, y) in enumerate(self.test_batches((EVAL_TEST,))):
            logits, _ = self.model(x)
            stats.add(logits, y, self.criterion(logits, y))
            if step % self.cfg.run.report_freq == 0:
                _log_step("valid", step, stats)
        acc, loss = stats.result()
        log.info("valid_acc %f", acc)
        return acc, loss

    def state(self) -> dict[str, Any]:
        return {"state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load(self, state: dict[str, Any], path: Path) -> None:
        epochs = int(state.get("scheduler", {}).get("T_max", -1))
        if epochs != self.cfg.epochs:  # loading the scheduler would silently keep the old schedule
            raise ConfigError("epochs", self.cfg.epochs, f"{path} belongs to a run of {epochs} epochs: "
                                                         f"pass --epochs {epochs} to resume it")
        try:
            self.model.load_state_dict(state["state_dict"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"], self.device)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} does not fit this network (check --arch, --dataset, "
                                  f"--init_channels, --layers and --auxiliary): {e!r}") from e


def run(cfg: EvalConfig) -> dict[str, Any]:
    # Everything that can fail on a bad command runs before the folder is touched.
    start_logging()
    device = select_device(cfg.run.gpu)
    seed_everything(cfg.run.seed, cfg.run.deter, cfg.speed.tf32)
    try:
        genotype = resolve_arch(cfg.arch, cfg.run.exp_root / "sota" / "genotypes")
    except (KeyError, ValueError) as e:
        raise ConfigError("arch", cfg.arch[:60], e.args[0] if e.args else str(e)) from e
    name = arch_name(cfg.arch, genotype)
    folder = run_folder(cfg, name)
    resume_epoch = run_target(folder, cfg.run.resume_epoch, cfg.run.overwrite)
    r = Run(cfg, genotype, device)
    state: dict[str, Any] = {}
    if resume_epoch > 0:
        path = checkpoint_path(folder, resume_epoch)
        state = load_checkpoint(path)
        r.load(state, path)

    new_run_dir(folder, resume=resume_epoch > 0, overwrite=cfg.run.overwrite)
    log_to_file(folder / "log.txt")
    log.info("config = %s", cfg)
    log.info("device = %s (%s), experiment folder = %s", device, r.train_batches.memory_format, folder)
    log.info("genotype = %s", genotype)
    log.info("param size = %fMB", count_parameters_mb(r.model))
    board = Board(folder, enabled=cfg.run.tensorboard)
    try:
        return train(r, name, folder, genotype, state, board)
    except BaseException as e:
        mark_failed(folder, e)
        raise
    finally:
        board.close()


def train(r: Run, name: str, folder: Path, genotype: Genotype, state: dict[str, Any],
          board: Board) -> dict[str, Any]:
    cfg = r.cfg
    start, timer = int(state.get("epoch", 0)), Timer(float(state.get("train_time", 0.0)))
    best_acc, test_acc = state.get("best_acc"), state.get("test_acc")
    if start:
        truncate_history(folder / "history.jsonl", start)
        log.info("resumed from epoch %d", start)
    result = {"status": "running", "kind": "eval", "arch": name, "genotype": genotype_to_dict(genotype),
              "dataset": cfg.data.dataset, "seed": cfg.run.seed, "epochs": cfg.epochs, "epochs_done": start,
              "init_channels": cfg.init_channels, "layers": cfg.layers, "auxiliary": cfg.auxiliary,
              "params_mb": count_parameters_mb(r.model), **_accuracies(best_acc, test_acc, timer)}
    write_json(folder / "result.json", result)
    for epoch in range(start, cfg.epochs):
        row = r.epoch(epoch)
        append_jsonl(folder / "history.jsonl", row)
        board.scalars({k: float(v) for k, v in row.items() if k != "epoch"}, epoch)
        test_acc, best_acc = row["test_acc"], max(row["test_acc"], best_acc or 0.0)
        if (epoch + 1) % cfg.run.ckpt_interval == 0 or epoch + 1 == cfg.epochs:
            save_checkpoint({"epoch": epoch + 1, **r.state(), "best_acc": best_acc, "test_acc": test_acc,
                             "rng": rng_state(r.device), "train_time": timer.elapsed()},
                            checkpoint_path(folder, epoch + 1))
        result.update(epochs_done=epoch + 1, **_accuracies(best_acc, test_acc, timer))
        write_json(folder / "result.json", result)  # progress for whoever watches the run
    result.update(status="finished", **_accuracies(best_acc, test_acc, timer))
    write_json(folder / "result.json", result)
    log.info("finished: test accuracy %.2f%% (best %.2f%%), %.0f s", test_acc, best_acc, timer.elapsed())
    return result


def _log_step(what: str, step: int, stats: Stats) -> float:
    acc, loss = stats.result()
    log.info("%s %03d %e %f", what, step, loss, acc)
    return loss


def _check_finite(loss: float, epoch: int) -> None:
    check_finite(loss, f"training loss at epoch {epoch}",
                 "start again with a lower --learning_rate (and --expid_tag or --overwrite).")


def _accuracies(best_acc: float | None, test_acc: float | None, timer: Timer) -> dict[str, Any]:
    return {"best_test_acc": best_acc, "final_test_acc": test_acc,
            "final_test_error": None if test_acc is None else 100.0 - test_acc,
            "train_time_s": round(timer.elapsed(), 1)}


if __name__ == "__main__":
    raise SystemExit(main())
