"""What the recorders share: run the authors' search code as it ran on PyTorch 1.x, in float64, on
random CIFAR-shaped batches, and record (or replay) every random draw it makes.

The recorders import the authors' code from a checkout given on the command line; none of it is
copied here. A recording is replayed by running the same code again from the recorded initial state
with the recorded draws fed back in place of the RNG; the replay must reproduce every recorded
tensor bit for bit (`check`).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

BATCH_SIZE = 16
# CIFAR-10 normalisation of the authors' data transforms (DrNAS utils.py:107-108, DARTS utils.py)
CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
STEPS_DIR = Path(__file__).resolve().parents[1] / "steps"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(doc: str, outs: dict[str, str], checkouts: dict[str, str], **sizes: int) -> argparse.Namespace:
    """The recorder's command line: the authors' checkouts (argument name -> repository), --variant
    (name -> the file it writes by default; the first is the default), --out, --check to replay only,
    and integer options for the model's size and seed (name -> default)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, repo in checkouts.items():
        parser.add_argument(name, type=Path, help=f"a git checkout of github.com/{repo} (never copied here)")
    parser.add_argument("--variant", choices=list(outs), default=next(iter(outs)))
    parser.add_argument("--out", type=Path, help="the .pt file to write (or check); default: the variant's file "
                        f"in {STEPS_DIR}")
    parser.add_argument("--check", action="store_true", help="only replay the existing --out file and compare")
    for name, default in sizes.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    args.out = args.out or STEPS_DIR / outs[args.variant]
    for name, repo in checkouts.items():
        if not getattr(args, name).is_dir():
            fail(f"{getattr(args, name)} is not a directory: pass the path of a checkout of github.com/{repo}")
    if args.check and not args.out.is_file():
        fail(f"{args.out} does not exist: record it first (run without --check)")
    return args


def commit_of(checkout: Path) -> str:
    """The checkout's HEAD commit, which the recording names as its source."""
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        fail(f"{checkout} is not a git checkout: clone the authors' repository (its commit is recorded)")
    return out.stdout.strip()


def pytorch1_semantics() -> None:
    """float64 everywhere, `.cuda()` a no-op, and zero_grad zero-filling gradients as on PyTorch 1.x
    (set_to_none=False): the authors' code ran on 1.x, and an op that gets no gradient in a step
    still receives weight decay and momentum there."""
    torch.set_default_dtype(torch.float64)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    optimizer_zero_grad, module_zero_grad = torch.optim.Optimizer.zero_grad, nn.Module.zero_grad
    torch.optim.Optimizer.zero_grad = lambda self, set_to_none=False: optimizer_zero_grad(self, set_to_none=False)
    nn.Module.zero_grad = lambda self, set_to_none=False: module_zero_grad(self, set_to_none=False)


def import_authors(checkout: Path, *dirs: str) -> None:
    """Put the checkout's folders first on sys.path, as the authors' scripts find their modules."""
    for folder in reversed(dirs):
        path = checkout / folder
        if not path.is_dir():
            fail(f"{path} not found: is {checkout} a checkout of the right repository?")
        sys.path.insert(0, str(path))


def load_file(path: Path, name: str) -> ModuleType:
    """Import one of the authors' files under a name of our choosing (two repositories both have architect.py)."""
    if not path.is_file():
        fail(f"{path} not found: is the checkout the right repository?")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batches(count: int, seed: int, classes: int = 10) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` random CIFAR-shaped batches (x float64 [16, 3, 32, 32], y int64 [16]): random 8-bit
    pixels normalised as the authors' transforms do, so they look like real inputs."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD, dtype=torch.float64).view(3, 1, 1)
    out = []
    for _ in range(count):
        pixels = torch.randint(0, 256, (BATCH_SIZE, 3, 32, 32), generator=g)
        x = (pixels.to(torch.float64) / 255 - mean) / std
        out.append((x, torch.randint(0, classes, (BATCH_SIZE,), generator=g)))
    return out


class Draws:
    """The random tensors a run draws, in order: drawn from the RNG and logged, or replayed from a log.

    A phase of the run (one forward, one widening) reads its draws between `expect` and `cut`."""

    def __init__(self, replay: bool) -> None:
        self.replay = replay
        self._pending: Iterator[torch.Tensor] = iter(())
        self._log: list[torch.Tensor] = []

    def expect(self, recorded: list[torch.Tensor] | None) -> None:
        """Before a phase: on replay, the draws it recorded."""
        self._pending = iter(recorded or [])

    def take(self, draw: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The next draw: `draw()` when recording, the recorded tensor when replaying."""
        if self.replay:
            value = next(self._pending, None)
            if value is None:
                raise AssertionError("the replay draws more random tensors than the recording holds")
        else:
            value = draw()
        self._log.append(value.detach().clone())
        return value

    def cut(self) -> list[torch.Tensor]:
        """After a phase: its draws (and on replay, all the recorded ones were used)."""
        if self.replay and next(self._pending, None) is not None:
            raise AssertionError("the replay draws fewer random tensors than the recording holds")
        log, self._log = self._log, []
        return log


@contextmanager
def dirichlet_draws(draws: Draws) -> Iterator[None]:
    """Route every Dirichlet sample (Dirichlet.rsample calls torch._sample_dirichlet in its forward; its
    backward, the implicit reparameterisation gradient, is PyTorch's own) through `draws`."""
    original = torch._sample_dirichlet

    def sample(concentration: torch.Tensor, *args: Any) -> torch.Tensor:
        value = draws.take(lambda: original(concentration, *args))
        assert value.shape == concentration.shape and value.dtype == concentration.dtype
        return value

    torch._sample_dirichlet = sample
    try:
        yield
    finally:
        torch._sample_dirichlet = original


@contextmanager
def widen_draws(module: ModuleType, model: nn.Module, draws: Draws, calls: list[dict]) -> Iterator[None]:
    """Route the random channel choices of DrNAS's net2wider (InChannelWider, OutChannelWider, BNWider,
    as imported by name into `module`) through `draws`, and append every call to `calls`."""
    names = {id(m): name for name, m in model.named_modules()}
    originals = {fn: getattr(module, fn) for fn in ("InChannelWider", "OutChannelWider", "BNWider")}

    def wrap(fn: str) -> Callable:
        def widen(layer: nn.Module, new_channels: int, index: torch.Tensor | None = None) -> tuple:
            drawn = index is None
            if drawn:  # the authors draw torch.randint(0, old_channels, (new - old,)) inside
                index = draws.take(lambda: originals[fn](layer, new_channels)[1])
                if draws.replay:
                    originals[fn](layer, new_channels, index)
            else:
                originals[fn](layer, new_channels, index)
            calls.append({"fn": fn, "module": names[id(layer)], "new_channels": new_channels,
                          "index": index.clone(), "drawn": drawn})
            return layer, index
        return widen

    for fn in originals:
        setattr(module, fn, wrap(fn))
    try:
        yield
    finally:
        for fn, original in originals.items():
            setattr(module, fn, original)


def pytorch1_state_dict(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() as PyTorch < 1.6 packed it: state keyed by id(param), by reference.
    DrNAS's configure_optimizer (net2wider.py:84) looks the old state up by id(param)."""
    return {"state": {id(p): s for p, s in optimizer.state.items()},
            "param_groups": [{**g, "params": [id(p) for p in g["params"]]} for g in optimizer.param_groups]}


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def momentum_buffers(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The SGD momentum buffer of each named parameter that has one."""
    return {name: optimizer.state[p]["momentum_buffer"].clone() for name, p in model.named_parameters()
            if "momentum_buffer" in optimizer.state.get(p, {})}


def adam_state(optimizer: torch.optim.Optimizer) -> list[dict[str, torch.Tensor]]:
    """Adam's state per architecture parameter, in order (step as a float64 scalar tensor)."""
    return [{k: torch.as_tensor(v, dtype=torch.float64).clone() for k, v in optimizer.state[p].items()}
            for p in optimizer.param_groups[0]["params"]]


def plain_genotype(genotype: Any) -> dict | list:
    """A genotype as plain lists, so a recording loads without the authors' genotypes module."""
    if hasattr(genotype, "_asdict"):  # DARTS space: Genotype namedtuple
        return {k: [list(e) if isinstance(e, tuple) else e for e in v] for k, v in genotype._asdict().items()}
    return [[list(edge) for edge in node] for node in genotype.nodes]  # NAS-Bench-201: Structure


def differences(recorded: Any, replayed: Any, path: str = "") -> list[str]:
    """Where two recordings differ at all (tensors bit for bit, numbers exactly)."""
    if isinstance(recorded, dict):
        if not isinstance(replayed, dict) or recorded.keys() != replayed.keys():
            return [f"{path}: keys differ"]
        return [d for k in recorded for d in differences(recorded[k], replayed[k], f"{path}.{k}")]
    if isinstance(recorded, (list, tuple)):
        if not isinstance(replayed, (list, tuple)) or len(recorded) != len(replayed):
            return [f"{path}: lengths differ"]
        return [d for i, (a, b) in enumerate(zip(recorded, replayed)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(recorded, torch.Tensor):
        same = (isinstance(replayed, torch.Tensor) and recorded.dtype == replayed.dtype
                and recorded.shape == replayed.shape and torch.equal(recorded, replayed))
        return [] if same else [f"{path}: tensors differ"]
    return [] if recorded == replayed else [f"{path}: {recorded!r} != {replayed!r}"]


def packed(record: Any) -> Any:
    """The same nested record with every tensor made a view into one flat storage per dtype: torch.save
    writes one entry per storage, and thousands of tiny entries (BatchNorm buffers, samples) would
    double a small model's file. Loaded, the views read as ordinary tensors."""
    tensors: list[torch.Tensor] = []

    def collect(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            tensors.append(obj.detach())
        elif isinstance(obj, dict):
            for value in obj.values():
                collect(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                collect(value)

    collect(record)
    flat = {dtype: torch.cat([t.reshape(-1) for t in tensors if t.dtype == dtype])
            for dtype in dict.fromkeys(t.dtype for t in tensors)}
    offsets = dict.fromkeys(flat, 0)

    def rebuild(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            start = offsets[obj.dtype]
            offsets[obj.dtype] += obj.numel()
            return flat[obj.dtype][start:start + obj.numel()].view(obj.shape)
        if isinstance(obj, dict):
            return {k: rebuild(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(rebuild(v) for v in obj)
        return obj

    return rebuild(record)


def save(record: dict, path: Path) -> None:
    """Write atomically: a partial file never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(packed(record), tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def record_and_check(args: argparse.Namespace, run: Callable[[dict | None], dict]) -> None:
    """Record with run(None) unless --check, then replay run(recording) and require it to match to 0."""
    if not args.check:
        save(run(None), args.out)
        print(f"recorded {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")
    recording = load(args.out)
    diffs = differences(recording, run(recording))
    if diffs:
        fail(f"the replay of {args.out} differs from the recording: " + "; ".join(diffs[:5]))
    print(f"replayed {args.out}: identical to the recording (0 difference in every tensor)")
