"""Projection cost per criterion, and how far each fast criterion's op ranking agrees with the exact one.

    python -m benchmarks.bench_projection                  # CPU: a small supernet, minutes
    python -m benchmarks.bench_projection --device cuda --init_channels 16 --num_cells 5 --train_images 10000

A CIFAR-10 folder in the real on-disk format is written to a temporary directory, with
learnable images (tests/fixtures/datasets.py: a colour per class plus noise), and a NAS-Bench-201
supernet is searched on it for a few epochs (DARTS, through the real Trainer). On that supernet,
for every edge, each op is removed in turn and the supernet scored under each criterion, with the
projection's own Scorer:

  acc          DARTS-PT's exact criterion: accuracy on the whole alpha half (the reference)
  loss         the loss on the whole alpha half (the same passes as acc)
  acc@bK       accuracy (loss@bK: loss) on the first K batches of the alpha half (--proj_batches K)
  nwot, synflow, grad_norm, jacob_cov   zero-cost proxies on one batch (--proj_crit; Zero-Cost-PT)

One line per figure, `key=value`:
  time       seconds per scoring pass (one op removed), per projection round (one edge: every op
             scored once) and for the projection's scoring (every edge); and one tuning epoch,
             which a projection with an exact criterion runs 25 times and a zero-cost one never
  rank       per criterion against acc: Kendall's tau and Spearman's rho of the ops' scores, the
             mean over edges of the per-edge coefficients and over all (edge, op) pairs pooled,
             and `same_op`: on how many edges the criterion keeps the op acc keeps (the loss is
             negated so that for every criterion lower means removing the op hurt more)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import stats

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_search import machine, sync  # noqa: E402
from common.config import PROXY_CRITERIA  # noqa: E402
from common.data import load_dataset  # noqa: E402
from common.entry import seed_everything  # noqa: E402
from common.projection import Scorer  # noqa: E402
from common.run import search_data  # noqa: E402
from common.trainer import Trainer  # noqa: E402
from nasbench201.train_search import SEARCH_SPACE  # noqa: E402
from tests.fixtures.datasets import write_cifar10  # noqa: E402

KIND = "cell"


def criteria(limited: Sequence[int]) -> list[tuple[str, int]]:
    """(criterion, --proj_batches) per timed scoring pass; acc first (the reference)."""
    return [("acc", 0)] + [("acc", k) for k in limited] + [(p, 0) for p in PROXY_CRITERIA]


def label(crit: str, limit: int) -> str:
    return f"{crit}@b{limit}" if limit else crit


def build(args: argparse.Namespace, root: Path, device: torch.device) -> Trainer:
    """The supernet, searched `args.epochs` epochs on a CIFAR-10 folder written into `root`."""
    write_cifar10(root, n_train=args.train_images, n_test=64, seed=args.seed)
    flags = ["--data", str(root), "--init_channels", str(args.init_channels), "--num_cells", str(args.num_cells),
             "--batch_size", str(args.batch_size), "--seed", str(args.seed), "--api_path", str(root / "none.pth"),
             "--report_freq", "1000000", "--gpu", "cpu" if device.type == "cpu" else str(device.index or 0)]
    cfg = SEARCH_SPACE.config(SEARCH_SPACE.parser().parse_args(flags))
    seed_everything(cfg.run.seed, False, False)
    train, test = (load_dataset("cifar10", root, split, download=False) for split in (True, False))
    space = SEARCH_SPACE.build(cfg, 10, device)
    trainer = Trainer(space, search_data(cfg, train, test, device), cfg, device)
    for epoch in range(args.epochs):
        trainer.train_epoch(epoch, train_alpha=True, cutout_prob=0.0)
    return trainer


def score_all(trainer: Trainer, measured: list[tuple[str, int]], device: torch.device
              ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per criterion, [edges, ops] scores (lower: the op's removal hurt more; an accuracy pass
    also gives the negated loss) and seconds per scoring pass. The criteria are measured in turn
    on each edge, so that a change of machine load hits them alike."""
    n_edges, n_ops = trainer.arch.proj_weights[KIND].shape
    values: dict[str, np.ndarray] = defaultdict(lambda: np.zeros((n_edges, n_ops)))
    seconds: dict[str, float] = defaultdict(float)
    for edge in range(n_edges):
        for crit, limit in measured:
            scorer = Scorer(trainer, epoch=0)  # the same batches for every op of the edge
            scorer.limit = limit
            sync(device)
            start = time.perf_counter()
            for op in range(n_ops):
                if crit == "acc":
                    acc, loss = scorer(KIND, edge, op)
                    values[label("acc", limit)][edge, op] = acc
                    values[label("loss", limit)][edge, op] = -loss
                else:
                    values[crit][edge, op] = scorer.proxy(crit, KIND, edge, op)
            sync(device)
            seconds[label(crit, limit)] += time.perf_counter() - start
    return dict(values), {k: v / (n_edges * n_ops) for k, v in seconds.items()}


def rank_figures(values: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    per_edge = [(stats.kendalltau(v, e).statistic, stats.spearmanr(v, e).statistic) for v, e in zip(values, exact)]
    tau, rho = np.nanmean(np.array(per_edge, dtype=float), axis=0) if per_edge else (np.nan, np.nan)
    pooled = values.ravel(), exact.ravel()
    kept = [int(np.nanargmin(v)) if not np.isnan(v).all() else -1 for v in values]
    return {"kendall_edge": tau, "spearman_edge": rho, "kendall_pooled": stats.kendalltau(*pooled).statistic,
            "spearman_pooled": stats.spearmanr(*pooled).statistic,
            "same_op": sum(k == int(np.argmin(e)) for k, e in zip(kept, exact))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--init_channels", type=int, default=8)
    p.add_argument("--num_cells", type=int, default=1, help="search cells per stage (NAS-Bench-201's N)")
    p.add_argument("--train_images", type=int, default=512, help="training images; half of them score")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="search epochs before scoring")
    p.add_argument("--proj_batches", default="1,2", help="comma-separated K of the acc@bK criteria")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a loaded shared machine more threads only contend)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"machine: {machine(device)}; torch {torch.__version__}; NAS-Bench-201 supernet C={args.init_channels} "
          f"N={args.num_cells}, batch {args.batch_size}, {args.train_images} CIFAR-10-format images "
          f"({args.train_images // 2} score), searched {args.epochs} epochs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        build_start = time.perf_counter()
        trainer = build(args, Path(tmp), device)
        print(f"search: {args.epochs} epochs in {time.perf_counter() - build_start:.1f} s", flush=True)
        start = time.perf_counter()
        trainer.train_epoch(args.epochs, train_alpha=True, cutout_prob=0.0, tuning=True)
        sync(device)
        print(f"time criterion=tuning_epoch s={time.perf_counter() - start:.3f}", flush=True)
        limited = [int(k) for k in args.proj_batches.split(",") if k]
        n_edges, n_ops = trainer.arch.proj_weights[KIND].shape
        scores, per_pass = score_all(trainer, criteria(limited), device)
    for name, s in per_pass.items():
        print(f"time criterion={name} pass_s={s:.4f} round_s={s * n_ops:.3f} "
              f"projection_scoring_s={s * n_ops * n_edges:.2f}", flush=True)
    exact = scores["acc"]
    for name, values in scores.items():
        if name != "acc":
            figures = rank_figures(values, exact)
            print(f"rank criterion={name} " + " ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}/{n_edges}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
