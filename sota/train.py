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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from common.cli import add_kernel_flags, add_run_flags
from common.data import DATASETS, Batches, load_dataset
from common.device import select_device
from common.experiment import REPO_ROOT, Board, Timer, append_jsonl, new_run_dir, setup_logging, write_json
from common.run import Layout, exit_code, mark_failed, search_target, seed_everything
from common.search import checkpoint_path, truncate_history
from common.trainer import EVAL_TEST, TRAIN, Stats, check_finite, memory_format

from .genotypes import Genotype, genotype_to_dict, is_genotype_literal, resolve_arch
from .model_eval import NetworkCIFAR, count_parameters_mb

log = logging.getLogger("darts_pt")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", default=str(REPO_ROOT / "data"),
                   help="data folder (for imagefolder: the folder holding train/ and test/)")
    g.add_argument("--dataset", default="cifar10", choices=[d for d in DATASETS if d != "imagenet16-120"])
    g.add_argument("--image_size", type=int, default=32, help="imagefolder only: images are resized to this")
    g.add_argument("--cutout", action="store_true", default=False)
    g.add_argument("--cutout_length", type=int, default=16)
    g.add_argument("--cutout_prob", type=float, default=1.0, help="per-image cutout probability")

    g = p.add_argument_group("network and training")
    g.add_argument("--arch", default="DARTS_V2", help="catalog name or genotype literal")
    g.add_argument("--init_channels", type=int, default=36)
    g.add_argument("--layers", type=int, default=20)
    g.add_argument("--auxiliary", action="store_true", default=False, help="auxiliary head")
    g.add_argument("--auxiliary_weight", type=float, default=0.4)
    g.add_argument("--drop_path_prob", type=float, default=0.2, help="reached at the last epoch, ramped from 0")
    g.add_argument("--epochs", type=int, default=600)
    g.add_argument("--batch_size", type=int, default=96)
    g.add_argument("--learning_rate", type=float, default=0.025, help="cosine-annealed to 0")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight_decay", type=float, default=3e-4)
    g.add_argument("--grad_clip", type=float, default=5.0)

    add_kernel_flags(p.add_argument_group("speed (see benchmarks/RESULTS.md)"))
    add_run_flags(p, seed=2, save="eval", ckpt_interval=1)  # as the original eval scripts
    return p


def arch_name(arch: str, genotype: Genotype) -> str:
    """The catalog name, or `custom-<hash>` for a literal, so equal genotypes share a name."""
    if not is_genotype_literal(arch):
        return arch
    digest = hashlib.sha1(json.dumps(genotype_to_dict(genotype), sort_keys=True).encode()).hexdigest()
    return f"custom-{digest[:8]}"


def _run_name(args: argparse.Namespace) -> str:
    name = f"{args.save}-{args.arch_name}-{args.seed}"
    return name + (f"-{args.expid_tag}" if args.expid_tag else "")


# Evaluation runs sit side by side in one folder per dataset; they have no projections.
LAYOUT = Layout(space_dir=lambda a: Path(a.exp_root) / "sota" / a.dataset / "eval",
                search_name=_run_name, projection_name=lambda a, epoch: "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code(lambda: run(args))


class Run:
    """Model, optimiser, scheduler and data of one evaluation run."""

    def __init__(self, args: argparse.Namespace, genotype: Genotype, device: torch.device) -> None:
        self.args, self.device = args, device
        train_set, test_set = (load_dataset(args.dataset, args.data, train=t, image_size=args.image_size)
                               for t in (True, False))
        limit = 1 if args.fast else None
        fmt = memory_format(args, device)  # channels-last on CPU: same numbers up to summation order, faster
        self.train_batches = Batches(train_set, None, args.batch_size, augment=True, device=device,
                                     seed=args.seed, cutout_length=args.cutout_length if args.cutout else 0,
                                     limit=limit, memory_format=fmt)
        self.test_batches = Batches(test_set, None, args.batch_size, augment=False, shuffle=False,
                                    device=device, seed=args.seed, limit=limit, memory_format=fmt)
        self.model = NetworkCIFAR(args.init_channels, train_set.num_classes, args.layers, args.auxiliary,
                                  genotype).to(device, memory_format=fmt)
        self.optimizer = torch.optim.SGD(self.model.parameters(), args.learning_rate,
                                         momentum=args.momentum, weight_decay=args.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, float(args.epochs), eta_min=0)
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
        args, model = self.args, self.model
        model.train()
        model.drop_path_prob = args.drop_path_prob * epoch / args.epochs
        stats = Stats(self.device)
        cutout_prob = args.cutout_prob if args.cutout else 0.0
        for step, (x, y) in enumerate(self.train_batches((TRAIN, epoch), cutout_prob)):
            self.optimizer.zero_grad(set_to_none=True)
            logits, logits_aux = model(x)
            loss = self.criterion(logits, y)
            if args.auxiliary:
                loss = loss + args.auxiliary_weight * self.criterion(logits_aux, y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            self.optimizer.step()
            stats.add(logits, y, loss)
            if step % args.report_freq == 0:  # the only host syncs inside an epoch
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
            if step % self.args.report_freq == 0:
                _log_step("valid", step, stats)
        acc, loss = stats.result()
        log.info("valid_acc %f", acc)
        return acc, loss

    def state(self) -> dict[str, Any]:
        return {"state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load(self, state: dict[str, Any], path: Path) -> None:
        epochs = int(state.get("scheduler", {}).get("T_max", -1))
        if epochs != self.args.epochs:  # loading the scheduler would silently keep the old schedule
            raise CheckpointError(f"{path} belongs to a run of {epochs} epochs: pass --epochs {epochs} to resume it")
        try:
            self.model.load_state_dict(state["state_dict"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"], self.device)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} does not fit this network (check --arch, --dataset, "
                                  f"--init_channels, --layers and --auxiliary): {e!r}") from e


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Everything that can fail on a bad command runs before the folder is touched.
    device = select_device(args.gpu)
    seed_everything(args.seed, args.deter, args.tf32)
    if args.epochs < 1 or args.ckpt_interval < 1:
        raise ValueError("--epochs and --ckpt_interval must be at least 1")
    if args.auxiliary and args.dataset == "imagefolder" and args.image_size != 32:
        raise ValueError("the auxiliary head (DARTS' AuxiliaryHeadCIFAR) needs 32x32 inputs: "
                         "pass --image_size 32 or leave out --auxiliary")
    genotype = resolve_arch(args.arch, Path(args.exp_root) / "sota" / "genotypes")
    args.arch_name = arch_name(args.arch, genotype)
    folder, resume_epoch = search_target(args, LAYOUT)
    r = Run(args, genotype, device)
    state: dict[str, Any] = {}
    if resume_epoch > 0:
        path = checkpoint_path(folder, resume_epoch)
        state = load_checkpoint(path)
        r.load(state, path)

    new_run_dir(folder, resume=resume_epoch > 0, overwrite=args.overwrite)
    setup_logging(folder / "log.txt")
    log.info("args = %s", vars(args))
    log.info("device = %s (%s), experiment folder = %s", device, r.train_batches.memory_format, folder)
    log.info("genotype = %s", genotype)
    log.info("param size = %fMB", count_parameters_mb(r.model))
    board = Board(folder, enabled=not args.no_tensorboard)
    try:
        return train(r, folder, genotype, state, board)
    except BaseException as e:
        mark_failed(folder, e)
        raise
    finally:
        board.close()


def train(r: Run, folder: Path, genotype: Genotype, state: dict[str, Any], board: Board) -> dict[str, Any]:
    args = r.args
    start, timer = int(state.get("epoch", 0)), Timer(float(state.get("train_time", 0.0)))
    best_acc, test_acc = state.get("best_acc"), state.get("test_acc")
    if start:
        truncate_history(folder / "history.jsonl", start)
        log.info("resumed from epoch %d", start)
    result = {"status": "running", "kind": "eval", "arch": args.arch_name, "genotype": genotype_to_dict(genotype),
              "dataset": args.dataset, "seed": args.seed, "epochs": args.epochs, "epochs_done": start,
              "init_channels": args.init_channels, "layers": args.layers, "auxiliary": args.auxiliary,
              "params_mb": count_parameters_mb(r.model), **_accuracies(best_acc, test_acc, timer)}
    write_json(folder / "result.json", result)
    for epoch in range(start, args.epochs):
        row = r.epoch(epoch)
        append_jsonl(folder / "history.jsonl", row)
        board.scalars({k: float(v) for k, v in row.items() if k != "epoch"}, epoch)
        test_acc, best_acc = row["test_acc"], max(row["test_acc"], best_acc or 0.0)
        if (epoch + 1) % args.ckpt_interval == 0 or epoch + 1 == args.epochs:
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
