"""Wall-clock of a whole DARTS-PT pipeline, phase by phase: our path vs the original's costs.

    python -m benchmarks.bench_pipeline                # both spaces, our path and the reference
    python -m benchmarks.bench_pipeline --quick        # smoke test (tiny sizes), well under a minute
    python -m benchmarks.bench_pipeline --repeat 3     # three interleaved runs, then their medians
    python -m benchmarks.bench_pipeline --device cuda --project_full   # + full-size projection

What a researcher waits for, tiny but complete, on CIFAR-shaped synthetic images:
  nb201  NAS-Bench-201 search (DARTS) then projection at --proj_intv 1: 6 tuning epochs, one
         edge decided per round (5 scoring passes over the alpha half each), tuning in between;
  darts  DARTS space s5 search (DARTS) then two-stage projection at --proj_intv 1: 14 op rounds
         (one edge per cell kind, 7 scoring passes each), then 3 topology rounds, 17 tuning epochs.
Sizes (default; --quick in brackets): 32x32 images, batch 32 [16]; NAS-Bench-201 C=8 with 2 cells
per stage [C=4, 1], DARTS space C=8 with 5 cells [C=4, 3]; training images (two halves) 320 for
NAS-Bench-201 and 128 for the DARTS space [64], 64 test images [32]; 2 search epochs [1].

Paths:
  ours       the real entry point, common.run.run, twice (search, then projection), with the
             parsed configuration of `python -m nasbench201.train_search` / `sota.train_search`:
             data from a CIFAR-10 folder, logs, result files, TensorBoard, checkpoints;
  reference  the original code's costs from benchmarks/reference.py: its search step (every op,
             full backward, NCHW), DataLoader batches of PIL images (`next(iter(queue))` per step),
             its per-epoch `infer` passes (NAS-Bench-201 search: the alpha half; DARTS search: the
             alpha half and the test set; tuning epochs: the weight half and the alpha half, all in
             eval mode), its scoring passes (whole alpha half, train mode), its checkpoints (search:
             every --ckpt_interval and the last epoch; DARTS projection: every projection step),
             genotype and softmax(alpha) logged each epoch. Projection decisions use the same plan.

Phases (seconds, wall-clock, each phase excluding the phases inside it): search_steps, tuning_steps
(alpha + weight steps), data (making the training batches), evaluation (per-epoch passes),
scoring (projection scoring passes), checkpoints (writing and reading them), heatmaps (TensorBoard
figures of softmax(alpha)), other (the rest: logging, genotypes, result files, model building).
One line per space, device and path; then the speed-up of ours over the reference per phase and
in total, and where our time goes, largest phase first. On CUDA every phase boundary synchronises.

--project_full measures our per-step and per-pass times at the full NAS-Bench-201 size (C=16,
5 cells per stage, batch 64) and prints the projected time of the whole 100-epoch pipeline:
100 search epochs of 391 steps (25k + 25k images), an alpha-half evaluation after each search
and tuning epoch, 25 tuning epochs, 6 projection rounds x 5 scoring passes over the alpha half.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import pickle
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import reference as ref  # noqa: E402
from benchmarks.bench_search import machine, sync, synthetic_set  # noqa: E402
from common import projection as projection_mod  # noqa: E402
from common import run as run_mod
from common import search as search_mod
from common.config import SearchConfig  # noqa: E402
from common.data import CIFAR10_DIR, CIFAR10_MEAN, CIFAR10_STD, EVAL_VALID, SCORE, ImageSet  # noqa: E402
from common.entry import seed_everything  # noqa: E402
from common.experiment import LOGGER, Board  # noqa: E402
from common.methods import build_method  # noqa: E402
from common.space import SearchSpace  # noqa: E402
from common.trainer import Trainer  # noqa: E402

SPACES = ("nb201", "darts")
PATHS = ("ours", "reference")
PHASES = ("search_steps", "tuning_steps", "data", "evaluation", "scoring", "checkpoints", "heatmaps", "other")


def search_space(space: str) -> SearchSpace:
    if space == "nb201":
        from nasbench201.train_search import SEARCH_SPACE
    else:
        from sota.train_search import SEARCH_SPACE
    return SEARCH_SPACE


# --------------------------------------------------------------------------- sizes and data

@dataclass(frozen=True)
class Sizes:
    channels: int
    cells: int          # NAS-Bench-201: cells per stage; DARTS space: cells
    train_images: int   # split into the weight half and the alpha half
    test_images: int
    batch: int
    epochs: int         # search epochs


def sizes(space: str, quick: bool) -> Sizes:
    if quick:
        return Sizes(4, 1 if space == "nb201" else 3, 64, 32, 16, 1)
    if space == "nb201":
        return Sizes(8, 2, 320, 64, 32, 2)
    return Sizes(8, 5, 128, 64, 32, 2)  # its scoring rounds are many: fewer images keep a run ~7 min


def write_cifar10(root: Path, train: ImageSet, test: ImageSet) -> None:
    """The images in CIFAR-10's python format (five training batches and a test batch)."""
    folder = root / CIFAR10_DIR
    folder.mkdir(parents=True)
    parts = np.array_split(np.arange(len(train)), 5)
    files = [(f"data_batch_{i + 1}", train, idx) for i, idx in enumerate(parts)]
    for name, data, idx in files + [("test_batch", test, np.arange(len(test)))]:
        rows = data.images[idx].numpy().transpose(0, 3, 1, 2).reshape(len(idx), -1)  # channel-major
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": data.labels[idx].tolist()}, f)


# --------------------------------------------------------------------------- timing phases

class Phases:
    """Wall-clock seconds per phase; a phase entered inside another one pauses it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._mark = 0.0

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._switch()
        self._stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def _switch(self) -> None:
        sync(self.device)
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._mark
        self._mark = now

    def wrap(self, name: str | Callable[..., str], fn: Callable) -> Callable:
        """fn, timed as phase `name` (or as the phase name(*args, **kwargs) gives)."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self(name(*args, **kwargs) if callable(name) else name):
                return fn(*args, **kwargs)
        return timed

    def iterate(self, name: str, items: Iterable) -> Iterator:
        """The items, the time spent making each one timed as phase `name`."""
        it = iter(items)
        while True:
            with self(name):
                item = next(it, StopIteration)
            if item is StopIteration:
                return
            yield item

    def figures(self, total: float) -> dict[str, float]:
        out = {p: self.seconds.get(p, 0.0) for p in PHASES if p != "other"}
        out["other"] = total - sum(out.values())
        out["total"] = total
        return out


# --------------------------------------------------------------------------- our path

@contextlib.contextmanager
def instrumented(phases: Phases, steps: list[str]) -> Iterator[None]:
    """Time the real code's phases by wrapping its methods and functions (steps[0] names the
    phase of the alpha and weight steps: search_steps or tuning_steps)."""
    def step_phase(*_: Any, **__: Any) -> str:
        return steps[0]

    def pairs(real: Callable) -> Callable:
        return lambda self, *a, **k: phases.iterate("data", real(self, *a, **k))

    def evaluate_phase(self: Trainer, *args: Any, train_mode: bool = False, **kwargs: Any) -> str:
        return "scoring" if train_mode else "evaluation"

    patches = [
        mock.patch.object(Trainer, "alpha_step", phases.wrap(step_phase, Trainer.alpha_step)),
        mock.patch.object(Trainer, "weight_step", phases.wrap(step_phase, Trainer.weight_step)),
        mock.patch.object(Trainer, "_pairs", pairs(Trainer._pairs)),
        mock.patch.object(Trainer, "evaluate", phases.wrap(evaluate_phase, Trainer.evaluate)),
        mock.patch.object(Board, "heatmap", phases.wrap("heatmaps", Board.heatmap)),
        mock.patch.object(search_mod, "save_checkpoint", phases.wrap("checkpoints", search_mod.save_checkpoint)),
        mock.patch.object(projection_mod, "save_checkpoint",
                          phases.wrap("checkpoints", projection_mod.save_checkpoint)),
        mock.patch.object(run_mod, "load_search_checkpoint",
                          phases.wrap("checkpoints", run_mod.load_search_checkpoint)),
    ]
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


def flags(space: str, s: Sizes, device: torch.device, data: Path, exp_root: Path) -> list[str]:
    """Command-line flags of both runs (as the exp_scripts pass them, at the benchmark's sizes)."""
    argv = ["--dataset", "cifar10", "--data", str(data), "--exp_root", str(exp_root),
            "--gpu", "cpu" if device.type == "cpu" else str(device.index or 0), "--seed", "1",
            "--init_channels", str(s.channels), "--batch_size", str(s.batch), "--epochs", str(s.epochs),
            "--report_freq", "1000", "--proj_intv", "1"]
    if space == "nb201":
        return argv + ["--num_cells", str(s.cells), "--api_path", str(exp_root / "no-benchmark.pth")]
    return argv + ["--space", "s5", "--layers", str(s.cells)]


def config(space: str, argv: list[str]) -> SearchConfig:
    space_def = search_space(space)
    return space_def.config(space_def.parser().parse_args(argv))


def ours(space: str, s: Sizes, device: torch.device, data: Path, work: Path, phases: Phases) -> None:
    """Search, then projection, through common.run.run as the command line runs them."""
    argv = flags(space, s, device, data, work / "experiments")
    search = config(space, argv + ["--method", "darts", "--save", "bench"])
    project = config(space, argv + ["--method", "darts-proj", "--save", "bench-proj",
                                    "--resume_epoch", str(s.epochs)])
    steps = ["search_steps"]
    with instrumented(phases, steps), open(work / "stdout.txt", "w") as out, contextlib.redirect_stdout(out):
        try:
            run_mod.run(search, search_space(space))
            steps[0] = "tuning_steps"
            run_mod.run(project, search_space(space))
        finally:  # the runs' log handlers write to files of this run
            logger = logging.getLogger(LOGGER)
            for h in list(logger.handlers):
                logger.removeHandler(h)
                h.close()


# --------------------------------------------------------------------------- the reference

class ReferencePipeline:
    """The original's search and projection loops at its costs (benchmarks/reference.py)."""

    def __init__(self, space: str, s: Sizes, device: torch.device, train: ImageSet, test: ImageSet,
                 work: Path, phases: Phases) -> None:
        argv = flags(space, s, device, work / "unused", work / "experiments")
        self.cfg = config(space, argv + ["--method", "darts"])
        self.project_cfg = config(space, argv + ["--method", "darts-proj"])
        self.space_name, self.device, self.work, self.phases = space, device, work, phases
        seed_everything(self.cfg.run.seed, self.cfg.run.deter, self.cfg.speed.tf32)
        self.space = search_space(space).build(self.cfg, train.num_classes, device)
        self.model, self.arch = self.space.model, self.space.arch
        cuda = device.type == "cuda"
        self.train_q, self.valid_q = ref.search_queues(train.images.numpy(), train.labels.numpy(), CIFAR10_MEAN,
                                                       CIFAR10_STD, s.batch, pin_memory=cuda)
        test_set = ref.PILImages(test.images.numpy(), test.labels.numpy(),
                                 ref.cifar_transform(CIFAR10_MEAN, CIFAR10_STD, augment=False))
        self.test_q = torch.utils.data.DataLoader(test_set, batch_size=s.batch, pin_memory=cuda)
        self.log = logging.getLogger(f"bench_reference_{id(self)}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.addHandler(logging.FileHandler(work / "reference_log.txt"))

    def run(self) -> None:
        try:
            self.search()
            self.projection()
        finally:
            for h in list(self.log.handlers):
                self.log.removeHandler(h)
                h.close()

    def search(self) -> None:
        cfg, p = self.cfg, self.phases
        step = ref.ReferenceStep(self.model, self.arch, cfg)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(step.w_opt, float(cfg.epochs),
                                                               eta_min=cfg.optim.learning_rate_min)
        for epoch in range(cfg.epochs):
            self.train_epoch(step, ref.search_batches(self.train_q, self.valid_q, self.device), "search_steps",
                             train_alpha=True)
            scheduler.step()
            with p("evaluation"):
                self.infer(self.valid_q)
                if self.space_name == "darts":  # the original's DARTS-space search tests every epoch
                    self.infer(self.test_q)
            self.log_epoch(epoch)
            if (epoch + 1) % cfg.run.ckpt_interval == 0 or epoch + 1 == cfg.epochs:
                self.checkpoint(step, epoch + 1, scheduler)

    def projection(self) -> None:
        cfg = self.project_cfg
        tuned_optim = dataclasses.replace(cfg.optim, learning_rate=cfg.optim.learning_rate / 10)
        tuned = dataclasses.replace(cfg, optim=tuned_optim)
        step = ref.ReferenceStep(self.model, self.arch, tuned)
        plan = search_space(self.space_name).plan(cfg, self.space)
        rounds = 0
        for epoch in range(plan.tune_epochs):
            if plan.is_projection_epoch(epoch):
                if self.space_name == "darts":  # the original checkpoints each projection step there
                    self.checkpoint(step, epoch, None)
                plan.project(ReferenceScorer(self, epoch), plan.stage(rounds), rounds)
                rounds += 1
            self.train_epoch(step, ref.tuning_batches(self.train_q, self.valid_q, self.device), "tuning_steps",
                             train_alpha=build_method(cfg).trains_alpha)
            with self.phases("evaluation"):
                self.infer(self.train_q)
                self.infer(self.valid_q)
            self.log_epoch(epoch)

    def train_epoch(self, step: ref.ReferenceStep, batches: Iterator, phase: str, train_alpha: bool) -> None:
        self.model.train()
        for x, y, xs, ys in self.phases.iterate("data", batches):
            with self.phases(phase):
                if train_alpha:
                    step.alpha_step(xs, ys)
                logits, loss = step.weight_step(x, y)
                loss.item(), ref.accuracy(logits, y)  # the original logs (and syncs) every step

    def infer(self, queue, weights: dict[str, torch.Tensor] | None = None, train: bool = False) -> tuple[float, float]:
        if weights is None:
            weights = {k: w.detach() for k, w in self.arch.weights().items()}
        return ref.infer(self.model, queue, weights, self.device, train=train)

    def log_epoch(self, epoch: int) -> None:
        """What the original logged after each epoch: the genotype and softmax(alpha)."""
        self.log.info("epoch %d genotype = %s", epoch, self.space.genotype(self.arch.weights()))
        for kind, w in self.arch.softmax().items():
            self.log.info("%s\n%s", kind, w)

    def checkpoint(self, step: ref.ReferenceStep, epoch: int, scheduler: Any) -> None:
        with self.phases("checkpoints"):
            state = {"epoch": epoch, "state_dict": self.model.state_dict(), "alpha": self.arch.alpha_list(),
                     "optimizer": step.w_opt.state_dict(), "arch_optimizer": step.a_opt.state_dict()}
            if scheduler is not None:
                state["scheduler"] = scheduler.state_dict()
            torch.save(state, self.work / f"reference_checkpoint_{epoch}.pth.tar")


class ReferenceScorer:
    """A projection scoring pass as the original ran it: `infer` in train mode over the whole
    alpha half, with the op (or edge) masked."""

    def __init__(self, pipeline: ReferencePipeline, epoch: int) -> None:
        self.pipeline, self.epoch = pipeline, epoch

    def __call__(self, kind: str, edge: int, op: int | None) -> tuple[float, float]:
        p = self.pipeline
        with p.phases("scoring"):
            return p.infer(p.valid_q, p.arch.masked(kind, edge, op), train=True)


# --------------------------------------------------------------------------- one run

@dataclass
class Result:
    space: str
    device: str
    path: str
    figures: dict[str, float]

    def line(self) -> str:
        return f"{self.space} {self.device} {self.path} " + " ".join(f"{k}_s={v:.3g}" for k, v in self.figures.items())


def warm_imports() -> None:
    """Import what both paths import lazily on first use, so that neither is charged the one-off
    cost (a real run pays it once per process): torch.optim's first optimiser imports
    torch._dynamo (~1.8 s here), the first SummaryWriter tensorboard (~0.3 s)."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with contextlib.suppress(ImportError):
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401


def run_path(space: str, path: str, device: torch.device, cfg: argparse.Namespace) -> Result:
    s = sizes(space, cfg.quick)
    train, test = synthetic_set(s.train_images, seed=0), synthetic_set(s.test_images, seed=1)
    phases = Phases(device)
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        work = Path(tmp)
        if path == "ours":
            write_cifar10(work / "data", train, test)
        sync(device)
        start = time.perf_counter()
        if path == "ours":
            ours(space, s, device, work / "data", work, phases)
        else:
            ReferencePipeline(space, s, device, train, test, work, phases).run()
        sync(device)
        total = time.perf_counter() - start
    return Result(space, device.type, path, phases.figures(total))


def speedup_line(ours_r: Result, ref_r: Result) -> str:
    parts = [f"{k}={ref_r.figures[k] / v:.2f}x" for k, v in ours_r.figures.items() if v > 0 and ref_r.figures[k] > 0]
    return f"{ours_r.space} {ours_r.device} speedup ours_vs_reference " + " ".join(parts)


def shares_line(r: Result) -> str:
    total = r.figures["total"]
    phases = sorted(((v, k) for k, v in r.figures.items() if k != "total"), reverse=True)
    return f"{r.space} {r.device} {r.path} where_the_time_goes " + " ".join(f"{k}={100 * v / total:.0f}%"
                                                                           for v, k in phases)


def median_result(results: list[Result]) -> Result:
    keys = results[0].figures
    return Result(results[0].space, results[0].device, results[0].path + "_median",
                  {k: statistics.median(r.figures[k] for r in results) for k in keys})


def report(results: list[Result]) -> list[str]:
    """Speed-ups and shares for each space of one run (or of the medians)."""
    lines = []
    by_key = {(r.space, r.path.removesuffix("_median")): r for r in results}
    for space in dict.fromkeys(r.space for r in results):
        o, r = by_key.get((space, "ours")), by_key.get((space, "reference"))
        if o and r:
            lines.append(speedup_line(o, r))
        lines += [shares_line(x) for x in (o, r) if x]
    return lines


# --------------------------------------------------------------------------- full-size projection

FULL = dict(search_epochs=100, tune_epochs=25, steps_per_epoch=391, rounds=6, ops_per_round=5)


def project_full(device: torch.device, measured_batches: int = 5) -> list[str]:
    """Our per-step and per-batch times at the full NAS-Bench-201 size, and the projected wall-clock
    of the whole pipeline (FULL) from them."""
    from common.arch import Architecture
    from common.run import search_data
    from common.space import Space
    from nasbench201.model_search import NB201Supernet

    cfg = config("nb201", ["--batch_size", "64", "--report_freq", "1000000"])
    torch.manual_seed(0)
    model = NB201Supernet(16, 5, 10).to(device)
    arch = Architecture(model.arch_shapes(), device)
    space = Space(label="nb201", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    images = synthetic_set(64 * 2 * (measured_batches + 2))
    data = search_data(cfg, images, images, device)
    trainer = Trainer(space, data, cfg, device)
    pairs = trainer._pairs(0, 0.0, tuning=False)

    def step() -> None:
        (x, y, _), (xa, ya, _) = next(pairs)  # one process: the batch sizes are len(y)
        trainer.alpha_step(xa, ya)
        trainer.weight_step(x, y)

    def passes(train_mode: bool) -> Callable[[], None]:
        score = data.valid.with_batch_size(64)
        score.limit = measured_batches
        weights, active = (arch.masked("cell", 0, 1), arch.masked_active("cell", 0, 1)) if train_mode else (None, None)
        return lambda: trainer.evaluate(score, (SCORE if train_mode else EVAL_VALID, 0), weights, active,
                                        train_mode=train_mode)

    step_s = _median_time(step, 2, measured_batches, device)
    eval_s = _median_time(passes(False), 1, 3, device) / measured_batches
    score_s = _median_time(passes(True), 1, 3, device) / measured_batches
    f = FULL
    parts = {"search": f["search_epochs"] * f["steps_per_epoch"] * step_s,
             "tuning": f["tune_epochs"] * f["steps_per_epoch"] * step_s,
             "evaluation": (f["search_epochs"] + f["tune_epochs"]) * f["steps_per_epoch"] * eval_s,
             "scoring": f["rounds"] * f["ops_per_round"] * f["steps_per_epoch"] * score_s}
    total_h = sum(parts.values()) / 3600
    return [f"nb201 {device.type} full_size step_s={step_s:.4g} eval_batch_s={eval_s:.4g} score_batch_s={score_s:.4g}"
            " (C=16, 5 cells per stage, batch 64)",
            f"nb201 {device.type} projected_full_pipeline_h={total_h:.3g} "
            + " ".join(f"{k}_h={v / 3600:.3g}" for k, v in parts.items())
            + " (100 search epochs x 391 steps, 25 tuning epochs, alpha-half evaluation each epoch, "
              "6 rounds x 5 scoring passes; tuning steps timed as search steps)"]


def _median_time(fn: Callable[[], Any], warmup: int, reps: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--spaces", default="nb201,darts", help="comma-separated: nb201, darts")
    p.add_argument("--paths", default="ours,reference", help="comma-separated: ours, reference")
    p.add_argument("--quick", action="store_true", help="smoke test at tiny sizes")
    p.add_argument("--repeat", type=int, default=1, help="runs per path, interleaved; medians when more than one")
    p.add_argument("--project_full", action="store_true",
                   help="also project the full-size NAS-Bench-201 pipeline from measured step and pass times")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def main(argv: list[str] | None = None) -> int:
    cfg = build_parser().parse_args(argv)
    spaces, paths = [s for s in cfg.spaces.split(",") if s], [p for p in cfg.paths.split(",") if p]
    unknown = [s for s in spaces if s not in SPACES] + [p for p in paths if p not in PATHS]
    if unknown:
        raise SystemExit(f"unknown spaces or paths {unknown}; choose from {SPACES} and {PATHS}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    warm_imports()
    print(f"# torch {torch.__version__}; {device.type}: {machine(device)}; sizes: "
          + "; ".join(f"{s} {sizes(s, cfg.quick)}" for s in spaces), flush=True)
    runs: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for rep in range(cfg.repeat):
        one_run = []
        for space in spaces:
            order = paths if rep % 2 == 0 else paths[::-1]  # alternate which path goes first
            for path in order:
                r = run_path(space, path, device, cfg)
                runs[space, path].append(r)
                one_run.append(r)
                print(r.line() + (f" (run {rep + 1})" if cfg.repeat > 1 else ""), flush=True)
        for line in report(one_run):
            print(line, flush=True)
    if cfg.repeat > 1:
        medians = [median_result(rs) for rs in runs.values()]
        for r in medians:
            print(r.line(), flush=True)
        for line in report(medians):
            print(line, flush=True)
    if cfg.project_full:
        for line in project_full(device):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
