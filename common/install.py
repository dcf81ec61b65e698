"""torchvision, imported so that a broken install says what it is and how to fix it.

Each torchvision release is built for one torch release (torchvision 0.N for torch 2.(N-15)).
A torchvision built for another torch fails as soon as it is imported (`operator
torchvision::nms does not exist`, or an undefined symbol of its C++ extension), which would
otherwise read as a failure of whatever it was imported for (a download, an image folder).
"""
from __future__ import annotations

import re
from importlib import import_module, metadata
from types import ModuleType

import torch

# torch 2.N pairs with torchvision 0.(N + TORCHVISION_OFFSET)
TORCHVISION_OFFSET = 15


class InstallError(Exception):
    """torchvision is missing or was built for another torch: one line naming the fix."""


def torchvision_module(name: str) -> ModuleType:
    """torchvision's module `name` (e.g. "datasets"); InstallError if torchvision cannot be imported."""
    try:
        return import_module(f"torchvision.{name}")
    except (ImportError, RuntimeError, OSError) as e:
        raise broken_torchvision(e) from e


def broken_torchvision(error: BaseException) -> InstallError:
    """What to tell the user when importing torchvision failed with `error`."""
    ours = torch.__version__.split("+")[0]
    fix = f'pip install "torch=={ours}" "torchvision=={pair}"' if (pair := matching_torchvision(ours)) else \
        f"install the torchvision release built for torch {ours} (https://github.com/pytorch/vision#installation)"
    try:
        installed = f"torchvision {metadata.version('torchvision')}"
    except metadata.PackageNotFoundError:
        return InstallError(f"torchvision is not installed: {fix}")
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return InstallError(f"{installed} does not work with the installed torch {torch.__version__} ({reason}): "
                        f"install a torchvision built for this torch, e.g. {fix}")


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision release series built for torch `torch_version` ("0.29.*" for "2.14.1");
    None for a torch whose pairing this does not know."""
    m = re.match(r"2\.(\d+)(\.|$)", torch_version)
    return f"0.{int(m.group(1)) + TORCHVISION_OFFSET}.*" if m else None
