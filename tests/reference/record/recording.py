"""What the recorders share: the authors' code imported from a checkout and run in float64 with the
semantics of the PyTorch 1.x it was written for, random CIFAR-shaped batches, and a trajectory saved
and then replayed from the file to prove it reproduces itself bit for bit.

Not part of the test suite: run a recorder by hand, `python tests/reference/record/record_<name>.py
CHECKOUT`, where CHECKOUT is the authors' repository at the commit its docstring names.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn as nn

BATCH = 16
STEPS_DIR = Path(__file__).resolve().parents[1] / "steps"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def git_blob_sha(path: Path) -> str:
    """The hash git gives the file's content, so a plain copy (git archive) can be checked too."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_checkout(root: Path, blobs: dict[str, str], what: str) -> None:
    """Stop unless root holds exactly the authors' files the recording was made from."""
    for rel, sha in blobs.items():
        path = root / rel
        if not path.is_file():
            fail(f"{path} not found: pass the path of a checkout of {what}")
        if git_blob_sha(path) != sha:
            fail(f"{path} is not the file of {what}: check out that commit")


def pytorch1_semantics() -> None:
    """float64 everywhere, `.cuda()` a no-op, and `zero_grad` zero-filling gradients instead of
    dropping them (PyTorch 1.x): a parameter that took part in an earlier backward keeps a zero
    gradient, so SGD still applies its weight decay and momentum in a step that does not use it.
    One thread, so a replay repeats the record's floating-point reductions exactly."""
    if getattr(torch.optim.Optimizer.zero_grad, "pytorch1", False):
        return
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    optimizer_zero_grad, module_zero_grad = torch.optim.Optimizer.zero_grad, nn.Module.zero_grad
    torch.optim.Optimizer.zero_grad = lambda self, set_to_none=False: optimizer_zero_grad(self, False)
    nn.Module.zero_grad = lambda self, set_to_none=False: module_zero_grad(self, False)
    torch.optim.Optimizer.zero_grad.pytorch1 = True


def import_from(*folders: Path) -> None:
    """Make the authors' modules importable the way their scripts import them (flat names)."""
    for folder in reversed(folders):
        sys.path.insert(0, str(folder))


def round_to_float32(tensors: Iterable[torch.Tensor]) -> None:
    """Start from values a float32 run could hold (the authors initialise in float32), so the
    initial state is stored as float32 without loss and the file stays small."""
    with torch.no_grad():
        for t in tensors:
            if t.is_floating_point():
                t.copy_(t.float())


def float32_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state as float32 tensors; refuses a value float32 cannot hold exactly."""
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            value32 = value.detach().float()
            assert torch.equal(value32.double(), value), f"{key} is not float32-exact"
            out[key] = value32
        else:
            out[key] = value.detach().clone()
    return out


def float64_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in state.items()}


def random_batch(gen: torch.Generator, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """A CIFAR-shaped batch of normalised-image-like values, float32 as a data loader yields them."""
    x = torch.randn(BATCH, 3, 32, 32, generator=gen, dtype=torch.float32)
    y = torch.randint(0, classes, (BATCH,), generator=gen)
    return x, y


def state_sums(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """One float64 number per state_dict entry, in state_dict order: where a replay first departs,
    at a fraction of the size of a state_dict per step."""
    return torch.stack([value.detach().double().sum() for value in state.values()])


def save(obj: dict, path: Path) -> None:
    """Atomically: a reader never sees half a file, an interrupted run leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")


def load(path: Path) -> dict:
    if not path.is_file():
        fail(f"{path} not found: record it first (run this script without --check)")
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_identical(expected: object, actual: object, where: str = "") -> None:
    """Exact equality, tensors bit for bit (dtype included), floats with ==."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), where
        assert expected.dtype == actual.dtype and torch.equal(expected, actual), f"{where} differs"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and list(expected) == list(actual), f"{where} keys differ"
        for key in expected:
            assert_identical(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(expected) == len(actual), f"{where} length differs"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_identical(e, a, f"{where}[{i}]")
    else:
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"


def assert_outputs_reproduced(ref: dict, replayed: dict, output_keys: Iterable[str]) -> None:
    """The replay's results equal the file's: per step, then the final state."""
    keys = list(output_keys)
    for i, (step, again) in enumerate(zip(ref["steps"], replayed["steps"], strict=True)):
        for key in keys:
            assert_identical(step[key], again[key], f"steps[{i}].{key}")
    assert_identical(ref["final_state_dict"], replayed["final_state_dict"], "final_state_dict")


def main(doc: str, files: dict[str, str], record: Callable[[Path, str], dict],
         replay: Callable[[Path, dict], dict], output_keys: Iterable[str]) -> None:
    """Record the chosen variant to steps/<file> (unless --check), then replay the file with the
    authors' code from its initial state and recorded samples and require the very same results."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("checkout", type=Path, help="the authors' repository, checked out at the commit named above")
    parser.add_argument("--variant", choices=list(files), default=next(iter(files)))
    parser.add_argument("--check", action="store_true", help="only replay the existing file and compare")
    args = parser.parse_args()
    path = STEPS_DIR / files[args.variant]
    if not args.check:
        save(record(args.checkout, args.variant), path)
    ref = load(path)
    assert_outputs_reproduced(ref, replay(args.checkout, ref), output_keys)
    print(f"ok: {path.name} replays exactly ({len(ref['steps'])} steps)")
