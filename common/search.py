"""Supernet training (the search phase), shared by both spaces: epochs, logs, checkpoints."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
                         split_model_state)
from .experiment import Board, Timer, append_jsonl, write_json
from .trainer import EVAL_TEST, EVAL_VALID, Trainer

log = logging.getLogger("darts_pt")


def checkpoint_path(folder: Path, epoch: int) -> Path:
    return folder / f"checkpoint_{epoch}.pth.tar"


def load_search_checkpoint(trainer: Trainer, path: Path, scheduler: Any | None = None,
                           with_optimizers: bool = True) -> dict[str, Any]:
    """Load weights, alpha, optimizers (and scheduler) from a search checkpoint.

    Accepts checkpoints written by the original DARTS-PT code (same keys, no RNG state).
    """
    state = load_checkpoint(path)
    sd, inner_alpha = split_model_state(state, ("_arch_parameters", "alphas_normal", "alphas_reduce"))
    try:
        trainer.model.load_state_dict(sd)
        alpha = state.get("alpha", inner_alpha)
        if alpha is None:
            raise CheckpointError(f"{path} holds no alpha")
        trainer.arch.load_alpha_list(list(alpha) if isinstance(alpha, (list, tuple)) else [alpha])
        if with_optimizers:  # the run continues: its weights' gradient tensors too
            trainer.w_opt.load_state_dict(state["optimizer"])
            trainer.restore_grads(state.get("grads", []))
        if "arch_optimizer" in state:
            trainer.a_opt.load_state_dict(state["arch_optimizer"])
        if scheduler is not None and "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path} does not fit this supernet (check --dataset, --space, "
                              f"--init_channels and the layer flags): {e}") from e
    if "rng" in state:
        set_rng_state(state["rng"], trainer.device)
    return state


def _scheduler(trainer: Trainer) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    args = trainer.args
    return torch.optim.lr_scheduler.CosineAnnealingLR(trainer.w_opt, float(args.epochs), eta_min=args.learning_rate_min)


def run_search(trainer: Trainer, folder: Path, resume_epoch: int, board: Board) -> dict[str, Any]:
    args, space = trainer.args, trainer.space
    scheduler = _scheduler(trainer)
    start, timer = 0, Timer()
    if resume_epoch > 0:
        state = load_search_checkpoint(trainer, checkpoint_path(folder, resume_epoch), scheduler)
        if scheduler.T_max != args.epochs:  # the loaded scheduler would silently keep its own length
            raise CheckpointError(f"the checkpoint was trained for --epochs {scheduler.T_max:g}; resume it "
                                  f"with the same --epochs (not {args.epochs})")
        start, timer = int(state["epoch"]), Timer(float(state.get("search_time", 0.0)))
        truncate_history(folder / "history.jsonl", start)
        log.info("resumed from epoch %d", start)
    result = _result_base(args, space, "running")
    write_json(folder / "result.json", result)
    search_epochs(trainer, scheduler, start, timer, folder, board)
    genotype = space.genotype(trainer.arch.weights())
    result.update(status="finished", epochs_done=args.epochs, genotype=space.genotype_str(genotype),
                  benchmark=space.query(genotype), search_time_s=round(timer.elapsed(), 1))
    write_json(folder / "result.json", result)
    log.info("search finished: genotype = %s", result["genotype"])
    return result


def search_epochs(trainer: Trainer, scheduler: Any, start: int, timer: Timer, folder: Path, board: Board,
                  prefix: str = "checkpoint", history: str = "history.jsonl") -> None:
    """Supernet training from epoch `start` to --epochs, a checkpoint `{prefix}_{epoch}.pth.tar`
    every --ckpt_interval epochs and at the end."""
    args, space = trainer.args, trainer.space
    train_alpha = args.base_method != "blank"
    for epoch in range(start, args.epochs):
        lr = scheduler.get_last_lr()[0]
        cutout_prob = args.cutout_prob * epoch / max(args.epochs - 1, 1) if args.cutout else 0.0
        epsilon = sdarts_epsilon(args, epoch, args.epochs)
        log.info("epoch %d lr %e%s", epoch, lr, f" epsilon_alpha {epsilon:e}" if space.perturb else "")
        train_acc, train_loss = trainer.train_epoch(epoch, train_alpha=train_alpha,
                                                    cutout_prob=cutout_prob, epsilon=epsilon)
        scheduler.step()
        row = epoch_report(trainer, epoch, board, {"train_acc": train_acc, "train_loss": train_loss, "lr": lr})
        append_jsonl(folder / history, row)
        if (epoch + 1) % args.ckpt_interval == 0 or epoch + 1 == args.epochs:
            save_checkpoint({"epoch": epoch + 1, **trainer.state(), "scheduler": scheduler.state_dict(),
                             "rng": rng_state(trainer.device), "search_time": timer.elapsed()},
                            folder / f"{prefix}_{epoch + 1}.pth.tar")


SUPERNET = "supernet"  # checkpoints of the search epochs a projection runs first, in its folder


def continue_search(trainer: Trainer, source: Path, folder: Path, board: Board) -> Path:
    """Train the supernet of checkpoint `source` up to --epochs, as the original's projection
    command does before it projects; the final state is returned as a checkpoint path.

    The epochs run with the search's learning rate and the checkpoint's schedule, log to
    `search_history.jsonl` and write `supernet_{epoch}.pth.tar` into the projection folder, so
    an interrupted run continues from the latest of those (`source` may be one of them).
    """
    args = trainer.args
    scheduler = _scheduler(trainer)
    state = load_search_checkpoint(trainer, source, scheduler)
    start = int(state["epoch"])
    if start < args.epochs:
        log.info("the supernet checkpoint is from search epoch %d: %d more search epochs run before projecting, "
                 "up to --epochs %d (pass --epochs %d to project it as it is)", start, args.epochs - start,
                 args.epochs, start)
        truncate_history(folder / "search_history.jsonl", start)
        search_epochs(trainer, scheduler, start, Timer(float(state.get("search_time", 0.0))), folder, board,
                      prefix=SUPERNET, history="search_history.jsonl")
    return folder / f"{SUPERNET}_{args.epochs}.pth.tar" if start < args.epochs else source


def sdarts_epsilon(args: Any, epoch: int, epochs: int) -> float:
    """SDARTS ramps the perturbation radius linearly from 0.03 to --epsilon_alpha."""
    eps_max = getattr(args, "epsilon_alpha", 0.3)
    return 0.03 + (eps_max - 0.03) * epoch / epochs


def epoch_report(trainer: Trainer, epoch: int, board: Board, row: dict[str, Any],
                 tuning: bool = False) -> dict[str, Any]:
    """Evaluate, log, query the benchmark and write TensorBoard for one finished epoch."""
    space, data = trainer.space, trainer.data
    valid_acc, valid_loss = trainer.evaluate(data.valid, (EVAL_VALID, epoch, int(tuning)))
    row.update(epoch=epoch, valid_acc=valid_acc, valid_loss=valid_loss)
    if data.test is not None:
        row["test_acc"], row["test_loss"] = trainer.evaluate(data.test, (EVAL_TEST,))
    genotype = space.genotype(trainer.arch.weights())
    row["genotype"] = space.genotype_str(genotype)
    row["benchmark"] = space.query(genotype)
    log.info("train_acc %.2f valid_acc %.2f%s", row["train_acc"], valid_acc,
             f" test_acc {row['test_acc']:.2f}" if "test_acc" in row else "")
    log.info("genotype = %s", row["genotype"])
    softmax = trainer.arch.softmax()
    row["softmax"] = {kind: [[round(v, 5) for v in r] for r in w.detach().cpu().tolist()]
                      for kind, w in softmax.items()}
    for kind, w in softmax.items():
        log.info("softmax(alpha) %s:\n%s", kind, _format_matrix(w))
    if row["benchmark"]:
        log.info("benchmark: %s", json.dumps(row["benchmark"]))
    prefix = "tune/" if tuning else ""
    board.scalars({f"{prefix}{k}": v for k, v in row.items() if isinstance(v, float)}, epoch)
    board.scalars({f"{prefix}benchmark/{k}": v for k, v in (row["benchmark"] or {}).items()}, epoch)
    for kind, w in softmax.items():
        board.heatmap(f"{prefix}alpha/{kind}", w, space.edge_names, space.op_names[kind], epoch)
    return row


def _format_matrix(w: torch.Tensor) -> str:
    return "\n".join(" ".join(f"{v:.4f}" for v in r) for r in w.detach().cpu().tolist())


def _result_base(args: Any, space: Any, status: str) -> dict[str, Any]:
    return {"status": status, "space": space.extra.get("space", space.name), "method": args.method,
            "dataset": args.dataset, "seed": args.seed, "epochs": args.epochs}


def truncate_history(path: Path, start_epoch: int) -> None:
    """Drop history rows of epochs a killed run logged after its last checkpoint."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("epoch", -1) < start_epoch]
    path.write_text("".join(r + "\n" for r in rows))
