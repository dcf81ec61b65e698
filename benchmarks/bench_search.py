"""Speed of search, projection scoring and evaluation training: our path vs the original's.

    python -m benchmarks.bench_search            # CPU, and CUDA when present; full sizes
    python -m benchmarks.bench_search --quick    # CPU smoke run, under a minute (batch 8)
    python -m benchmarks.bench_search --device cuda --variants fast,fast_cl,amp,compile

Supernets: NAS-Bench-201 (C=16, N=5) and DARTS space s5 (C=16, 8 layers) at batch 64 on
32x32 inputs; evaluation training: darts_pt_s5_0 at C=36, 20 layers, batch 96, auxiliary
head, cutout, drop path. Data are synthetic CIFAR-shaped images in memory (no download).

Paths ("variants"):
  fast       the library's default path: common.trainer.Trainer steps on common.data.Batches
             (for evaluation: sota/train.py's step: data on the device, --memory_format auto)
  fast_cl    the same with --memory_format channels_last (the CPU default)
  fast_nchw  the same with --memory_format contiguous (the CUDA default)
  amp        fast + --amp (bf16 autocast; changes numerics)
  compile    fast + --compile (torch.compile; changes numerics; excludes compile time)
  compile_cg fast + --compile --compile_mode reduce-overhead (CUDA graphs; CUDA only)
  tf32       fast + --tf32 (CUDA: TF32 convolutions and matmuls; changes numerics)
  reference  the original code's costs (benchmarks/reference.py): every op computed, full
             backward in the alpha step, NCHW, PIL + torchvision transforms through a
             DataLoader, a new iterator for every alpha batch, .item() every step
  darts2, reference2  second-order DARTS: the library's, quark0/darts' architect
  gdas       fast with --method gdas: weight step then arch step, each on a hard Gumbel sample,
             only the sampled op of each edge computed
  reference_gdas  AutoDL-Projects' GDAS step (benchmarks/reference.py GDASReferenceStep): its
             sampler, its cells' forward_gdas (the sampled index read back per edge), full
             backward in both steps, on the reference's data pipeline
  drnas / reference_drnas  DrNAS (--method drnas) and xiangning-chen/DrNAS' steps (its cells, a
             Dirichlet sample per row, full backward), on DrNAS' default supernets: NAS-Bench-201
             C=16, N=5, no partial channels (201-space/train_search.py); the DARTS space C=36,
             20 layers, partial channels 1/6 (DARTS-space/train_search.py, its first stage)
  pcdarts / reference_pcdarts  PC-DARTS (--method pcdarts) and yuhuixu1993/PC-DARTS' steps
             (benchmarks/reference.py PCDARTSReferenceStep: its partial-channel cells, edge
             normalisation, full backward) on fast's supernets with partial channels 1/4; the
             "cost pcdarts_vs_fast" line is PC-DARTS against full-channel DARTS on the same size

Each figure is the median over the measured steps after warm-up; the paths of one space
are measured interleaved (fast, reference, fast, reference, ...) so that a change of
machine load hits them alike. One line per space, device and path, `key=value` figures;
then one line of speed-ups per path against its baseline (`reference`; darts2: `reference2`; gdas:
`reference_gdas`), and the cost of a second-order step and of a GDAS step over DARTS' first-order
one (darts2 and gdas against fast: time, memory).
Peak memory, taken on the last (untimed) warm-up call: torch.cuda.max_memory_allocated on
CUDA (everything on the device: model, data, optimiser state, activations); on CPU the
growth of the process's peak RSS (VmHWM, reset after malloc_trim) over its RSS before the
call: the activations and gradients of a step (plus the optimiser state when the call is
the first one, as with --quick), not the model or the data.
"""
from __future__ import annotations

import argparse
import gc
import itertools
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import reference as ref  # noqa: E402
from common import trainer as trainer_mod  # noqa: E402
from common.arch import Architecture  # noqa: E402
from common.cli import search_config, search_parser  # noqa: E402
from common.config import SearchConfig  # noqa: E402
from common.data import CIFAR10_MEAN, CIFAR10_STD, SCORE, TRAIN, Batches, ImageSet  # noqa: E402
from common.device import memory_format, tf32  # noqa: E402
from common.entry import seed_everything  # noqa: E402
from common.method import EVAL  # noqa: E402
from common.metrics import Stats  # noqa: E402
from common.run import search_data  # noqa: E402
from common.space import Space  # noqa: E402
from common.trainer import Trainer  # noqa: E402

SPACES = ("nb201", "darts")
VARIANTS = ("fast", "fast_cl", "fast_nchw", "amp", "compile", "compile_cg", "tf32", "reference", "darts2",
            "reference2", "gdas", "reference_gdas", "drnas", "reference_drnas", "pcdarts", "reference_pcdarts")
# the reference each path's speed-up is taken against (else "reference")
BASELINE = {"darts2": "reference2", "gdas": "reference_gdas", "drnas": "reference_drnas",
            "pcdarts": "reference_pcdarts"}
REFERENCES = ("reference", "reference2", "reference_gdas", "reference_drnas", "reference_pcdarts")
COSTS = ("darts2", "gdas", "pcdarts")  # paths whose step is also compared with first-order DARTS' (fast)
DRNAS = ("drnas", "reference_drnas")  # paths on DrNAS' default supernets
PCDARTS = ("pcdarts", "reference_pcdarts")  # the default supernets (as fast's) with partial channels 1/4
NODE_INPUTS = (2, 3, 4, 5)  # the DARTS space's edges into each node: PC-DARTS' edge normalisation
EVAL_VARIANTS = ("fast", "fast_cl", "fast_nchw", "tf32", "reference")
COMPILED = {"compile", "compile_cg"}  # variants whose first steps compile


# --------------------------------------------------------------------------- measuring

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Memory:
    """Peak memory of a measured section (MB)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Memory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            _trim_heap()  # hand freed memory back, so that RSS ~ live memory
            self.base = _proc_status("VmRSS")
            _reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            peak = _proc_status("VmHWM")
            self.peak_mb = (peak - self.base) / 1024 if peak and self.base else float("nan")


def _proc_status(key: str) -> int | None:
    """kB from /proc/self/status (Linux), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _trim_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


@dataclass
class Runner:
    """One way of running a step (and a scoring pass), ready to be timed."""

    name: str
    step: Callable[[], Any]
    score: Callable[[], Any] | None = None
    times: dict[str, list[float]] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)


def with_tf32(r: Runner) -> Runner:
    """The tf32 path turns TF32 on around each of its calls (the switches are global, and
    the paths are measured interleaved; every other path runs in float32, as real runs do)."""
    if r.name != "tf32":
        return r

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with tf32(True):
                return fn()
        return call
    r.step = wrap(r.step)
    r.score = wrap(r.score) if r.score else None
    return r


def measure(paths: list[Runner], what: str, device: torch.device, warmup: int, reps: int) -> None:
    """Time `what` ('step' or 'score') of every path, interleaved (a, b, a, b, ...) so that
    a change of machine load hits all paths alike. Peak memory is taken on the last
    warm-up call (there is always one), which is not timed: on CPU the measurement first
    hands freed memory back to the OS, so the call after it page-faults its memory in again."""
    for p in paths:
        for i in range(max(warmup, 1)):
            if i < warmup - 1:
                getattr(p, what)()
                continue
            with Memory(device) as mem:
                getattr(p, what)()
            p.peak_mb[what] = mem.peak_mb
        sync(device)
    for _ in range(reps):
        for p in paths:
            t = time.perf_counter()
            getattr(p, what)()
            sync(device)
            p.times.setdefault(what, []).append(time.perf_counter() - t)


@dataclass
class Result:
    space: str
    device: str
    variant: str
    figures: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        parts = [f"{k}={_fmt(v)}" for k, v in self.figures.items()]
        return f"{self.space} {self.device} {self.variant} " + " ".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


# --------------------------------------------------------------------------- data and models

def synthetic_set(n: int, seed: int = 0, size: int = 32) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageSet(images, labels, 10, CIFAR10_MEAN, CIFAR10_STD, padding=4)


def build_supernet(space: str, drnas: bool = False, k: int = 1) -> nn.Module:
    if space == "nb201":
        from nasbench201.model_search import NB201Supernet

        return NB201Supernet(C=16, N=5, num_classes=10, k=k)
    from sota.model_search import DartsSupernet

    if drnas:  # DrNAS searches at the evaluation network's size, on 1/6 of the channels (its stage 1)
        return DartsSupernet(C=36, num_classes=10, layers=20, space="s5", k=6)
    return DartsSupernet(C=16, num_classes=10, layers=8, space="s5", k=k)


def search_args(cfg: argparse.Namespace, variant: str) -> SearchConfig:
    argv = ["--batch_size", str(cfg.batch_size), "--report_freq", "1000000"]
    if variant == "fast_cl":
        argv += ["--memory_format", "channels_last"]
    elif variant == "fast_nchw":
        argv += ["--memory_format", "contiguous"]
    elif variant == "amp":
        argv += ["--amp"]
    elif variant == "compile":
        argv += ["--compile"]
    elif variant == "compile_cg":
        argv += ["--compile", "--compile_mode", "reduce-overhead"]
    elif variant == "tf32":
        argv += ["--tf32"]
    elif variant == "darts2":
        argv += ["--unrolled"]
    elif variant in ("gdas", "reference_gdas"):
        argv += ["--method", "gdas"]
    elif variant in DRNAS:
        argv += ["--method", "drnas", "--arch_learning_rate", "6e-4"]
    elif variant in PCDARTS:  # its authors' defaults; alpha and beta from the first step
        argv += ["--method", "pcdarts", "--arch_learning_rate", "6e-4", "--arch_start_epoch", "0"]
    methods = ("darts", "gdas", "drnas", "pcdarts")
    return search_config(search_parser("bench", epochs=50, ckpt_interval=10, seed=0, methods=methods)
                         .parse_args(argv), methods=methods)


# --------------------------------------------------------------------------- search + projection

def search_path(space: str, variant: str, device: torch.device, cfg: argparse.Namespace) -> Runner:
    torch.manual_seed(0)
    model = build_supernet(space, drnas=variant in DRNAS, k=4 if variant in PCDARTS else 1).to(device)
    arch = Architecture(model.arch_shapes(), device)
    kind, edge = arch.kinds[0], 0
    n_steps = max(cfg.warmup, 1) + cfg.steps
    data_set = synthetic_set(2 * cfg.batch_size * n_steps + 2 * cfg.batch_size * cfg.proj_batches)
    if variant in REFERENCES:
        step: Any
        if variant == "reference_pcdarts":
            step = ref.PCDARTSReferenceStep(model, arch, search_args(cfg, variant), clip_alpha=space == "nb201",
                                            node_inputs=None if space == "nb201" else NODE_INPUTS)
        elif variant == "reference_drnas":
            step = ref.DrNASReferenceStep(model, arch, search_args(cfg, variant), clip_alpha=space == "nb201")
        elif variant == "reference_gdas":
            step = ref.GDASReferenceStep(model, arch, search_args(cfg, variant))
        elif variant == "reference":
            step = ref.ReferenceStep(model, arch, search_args(cfg, "fast"))
        else:
            step = ref.UnrolledReferenceStep(model, arch, search_args(cfg, "fast"), lambda: build_supernet(space))
        images, labels = data_set.images.numpy(), data_set.labels.numpy()
        train_q, valid_q = ref.search_queues(images, labels, CIFAR10_MEAN, CIFAR10_STD, cfg.batch_size,
                                             pin_memory=device.type == "cuda")
        batches = ref.search_batches(train_q, valid_q, device)

        def one_step() -> None:
            model.train()
            x, y, xs, ys = next(batches)
            if isinstance(step, ref.GDASReferenceStep):  # AutoDL's order: weights first
                logits, loss = step.weight_step(x, y)
                step.alpha_step(xs, ys)
            elif isinstance(step, ref.UnrolledReferenceStep):
                step.alpha_step(xs, ys, x, y)
                logits, loss = step.weight_step(x, y)
            else:
                step.alpha_step(xs, ys)
                logits, loss = step.weight_step(x, y)
            loss.item(), ref.accuracy(logits, y)  # the original logs (and syncs) every step

        masked = arch.masked(kind, edge, 1, _mean(arch) if variant in DRNAS else None)

        def score_pass() -> None:
            ref.scoring_pass(model, itertools.islice(valid_q, cfg.proj_batches), masked, device)
        return Runner(variant, one_step, score_pass)

    args = search_args(cfg, variant)
    sp = Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None,
               alpha_in_model=space == "nb201", widen=getattr(model, "widen", None),
               node_inputs=None if space == "nb201" else NODE_INPUTS)
    data = search_data(args, data_set, data_set, device)
    trainer = Trainer(sp, data, args, device)
    pairs = trainer._pairs(0, 0.0, tuning=False)
    stats = Stats(device)

    alpha_first = not trainer.method.alpha_step_last

    def fast_step() -> None:
        (x, y, _), (xa, ya, _) = next(pairs)  # one process: the batch sizes are len(y)
        if alpha_first:
            trainer.alpha_step(xa, ya, train=(x, y, len(y)))
        logits, loss = trainer.weight_step(x, y)
        if not alpha_first:
            trainer.alpha_step(xa, ya, train=(x, y, len(y)))
        stats.add(logits, y, loss)

    score = data.score.with_batch_size(data.score.batch_size)
    score.limit = cfg.proj_batches
    with torch.no_grad():
        masked, masked_active = arch.masked(kind, edge, 1, trainer.weights(EVAL)), arch.masked_active(kind, edge, 1)

    def fast_score() -> None:
        trainer.evaluate(score, (SCORE, 0, 1), masked, masked_active, train_mode=True)
    return with_tf32(Runner(variant, fast_step, fast_score))


def _mean(arch: Architecture) -> dict[str, torch.Tensor]:
    """The Dirichlet mean DrNAS' scoring passes mix with (the original has no projection)."""
    with torch.no_grad():
        return {k: (c := nn.functional.elu(a) + 1) / c.sum(-1, keepdim=True) for k, a in arch.alphas.items()}


def search_results(space: str, paths: list[Runner], device: torch.device, cfg: argparse.Namespace) -> list[Result]:
    measure(paths, "step", device, cfg.warmup, cfg.steps)
    measure(paths, "score", device, 1, cfg.proj_reps)
    out = []
    for p in paths:
        step_s = statistics.median(p.times["step"])
        out.append(Result(space, device.type, p.name, {
            "search_step_s": step_s, "images_per_s": 2 * cfg.batch_size / step_s, "batch": cfg.batch_size,
            "peak_mem_mb": p.peak_mb["step"], "proj_pass_s": statistics.median(p.times["score"]),
            "proj_batches": cfg.proj_batches, "proj_peak_mem_mb": p.peak_mb["score"]}))
    return out


# --------------------------------------------------------------------------- evaluation training

def eval_path(variant: str, device: torch.device, cfg: argparse.Namespace) -> Runner:
    from sota.genotypes import get_genotype
    from sota.model_eval import NetworkCIFAR

    torch.manual_seed(0)
    C, layers, bs = cfg.eval_size
    model = NetworkCIFAR(C, 10, layers, True, get_genotype("darts_pt_s5_0")).to(device)
    model.drop_path_prob = 0.1
    data_set = synthetic_set(bs * (max(cfg.eval_warmup, 1) + cfg.eval_steps), seed=1)
    criterion = nn.CrossEntropyLoss()
    if variant == "reference":
        opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        loader = torch.utils.data.DataLoader(
            ref.PILImages(data_set.images.numpy(), data_set.labels.numpy(),
                          ref.eval_transform(CIFAR10_MEAN, CIFAR10_STD, cutout_length=16)),
            batch_size=bs, shuffle=True, pin_memory=device.type == "cuda")
        it = iter(loader)

        def batch():
            x, y = next(it)
            return x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    else:
        fmt = memory_format(search_args(cfg, variant).speed.memory_format, device)  # as sota/train.py picks it
        model.to(memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        batches = Batches(data_set, None, bs, augment=True, device=device, seed=0, cutout_length=16,
                          memory_format=fmt)
        it = iter(batches((TRAIN, 0), 1.0))
        stats = Stats(device)
        batch = lambda: next(it)  # noqa: E731

    def one_step() -> None:
        model.train()
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        logits, logits_aux = model(x)
        loss = criterion(logits, y) + 0.4 * criterion(logits_aux, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if variant == "reference":
            loss.item(), ref.accuracy(logits, y)
        else:
            stats.add(logits, y, loss)
    return with_tf32(Runner(variant, one_step))


def eval_results(paths: list[Runner], device: torch.device, cfg: argparse.Namespace) -> list[Result]:
    measure(paths, "step", device, cfg.eval_warmup, cfg.eval_steps)
    C, layers, bs = cfg.eval_size
    out = []
    for p in paths:
        step_s = statistics.median(p.times["step"])
        out.append(Result("eval_s5", device.type, p.name, {
            "eval_step_s": step_s, "images_per_s": bs / step_s, "batch": bs, "C": C, "layers": layers,
            "peak_mem_mb": p.peak_mb["step"]}))
    return out


# --------------------------------------------------------------------------- main

def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (CPU, and CUDA when present)")
    p.add_argument("--spaces", default="nb201,darts", help="comma-separated: nb201, darts")
    p.add_argument("--variants", default="fast,reference",
                   help=f"comma-separated paths to measure, from {', '.join(VARIANTS)}")
    p.add_argument("--eval_variants", default=None,
                   help=f"paths of the evaluation-training step, from {', '.join(EVAL_VARIANTS)} "
                        "(default fast,fast_nchw,reference; --quick: fast,reference)")
    p.add_argument("--quick", action="store_true", help="CPU smoke run under a minute: batch 8, few steps")
    p.add_argument("--no_eval", action="store_true", help="skip the evaluation-training step")
    p.add_argument("--batch_size", type=int, default=None, help="search batch (default 64; --quick 8)")
    p.add_argument("--steps", type=int, default=None, help="measured search steps per path (default 5)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per path (default 2)")
    p.add_argument("--proj_batches", type=int, default=None, help="batches per scoring pass (default 10)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def configure(cfg: argparse.Namespace) -> argparse.Namespace:
    quick = cfg.quick
    defaults = dict(batch_size=8 if quick else 64, steps=1 if quick else 5, warmup=1 if quick else 2,
                    proj_batches=2 if quick else 10)
    for k, v in defaults.items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    cfg.proj_reps = 1 if quick else 3
    if cfg.eval_variants is None:
        cfg.eval_variants = "fast,reference" if quick else "fast,fast_nchw,reference"
    cfg.eval_size = (36, 20, 8 if quick else 96)
    cfg.eval_warmup, cfg.eval_steps = (1, 1) if quick else (2, 3)
    if COMPILED & set(cfg.variants):
        cfg.warmup = max(cfg.warmup, 3)  # compiling happens in the first calls
    return cfg


def speedups(results: list[Result]) -> list[str]:
    """Each path's speed-up over its baseline, and what a second-order or GDAS step costs over a
    first-order DARTS one (time and peak memory, darts2 and gdas over fast)."""
    lines = []
    for (space, dev), group in itertools.groupby(results, key=lambda r: (r.space, r.device)):
        by_variant = {r.variant: r for r in group}
        for r in by_variant.values():
            base = by_variant.get(BASELINE.get(r.variant, "reference"))
            if base is None or r.variant in REFERENCES:
                continue
            parts = []
            for key in ("search_step_s", "proj_pass_s", "eval_step_s"):
                if key in r.figures and key in base.figures:
                    parts.append(f"{key.removesuffix('_s')}={base.figures[key] / r.figures[key]:.2f}x")
            lines.append(f"{space} {dev} speedup {r.variant}_vs_{base.variant} " + " ".join(parts))
        first = by_variant.get("fast")
        for other in (by_variant.get(v) for v in COSTS):
            if other and first:
                time = other.figures["search_step_s"] / first.figures["search_step_s"]
                memory = other.figures["peak_mem_mb"] / first.figures["peak_mem_mb"]
                lines.append(f"{space} {dev} cost {other.variant}_vs_fast search_step={time:.2f}x "
                             f"peak_mem={memory:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    cfg = build_parser().parse_args(argv)
    cfg.variants = [v for v in cfg.variants.split(",") if v]
    configure(cfg)
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    unknown += [v for v in cfg.eval_variants.split(",") if v and v not in EVAL_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {VARIANTS} (evaluation: {EVAL_VARIANTS})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(0, deterministic=False)  # as real runs: cuDNN autotuning, float32 (no TF32)
    if cfg.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not cfg.quick else [])
    else:
        devices = [cfg.device]
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    if COMPILED & set(cfg.variants):
        trainer_mod.log.addHandler(__import__("logging").StreamHandler(sys.stderr))
    print(f"# torch {torch.__version__}, python {platform.python_version()}; batch {cfg.batch_size}, "
          f"{cfg.warmup} warm-up + {cfg.steps} measured steps" + (" (quick)" if cfg.quick else ""), flush=True)
    results: list[Result] = []
    for dev in devices:
        device = torch.device(dev)
        print(f"# {dev}: {machine(device)}", flush=True)
        for space in [s for s in cfg.spaces.split(",") if s]:
            if space not in SPACES:
                raise SystemExit(f"unknown space {space}; choose from {SPACES}")
            paths = [search_path(space, v, device, cfg) for v in cfg.variants]
            for r in search_results(space, paths, device, cfg):
                results.append(r)
                print(r.line(), flush=True)
            del paths
        if not cfg.no_eval:
            paths = [eval_path(v, device, cfg) for v in cfg.eval_variants.split(",") if v]
            for r in eval_results(paths, device, cfg):
                results.append(r)
                print(r.line(), flush=True)
            del paths
    for line in speedups(results):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
