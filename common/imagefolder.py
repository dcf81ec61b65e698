"""Image folders too large for memory (ImageNet), streamed from disk by DataLoader workers.

`DIR/train/<class>/*` and `DIR/val/<class>/*` (torchvision's ImageFolder layout, as the
original's train_imagenet.py reads them), decoded and augmented in worker processes with
the original's transforms: RandomResizedCrop, horizontal flip and ColorJitter(0.4, 0.4, 0.4,
0.2) for training, Resize(256/224 of the crop) and CenterCrop for validation; the batches
travel as uint8 and are normalised with ImageNet's statistics on the training device.
Unlike common/data.py's in-memory `Batches`, each process reads only its own images: a
DistributedSampler (reshuffled per epoch with `set_epoch`) gives every process of a
multi-process run an equal share of each epoch, so each trains on `batch_size // processes`
images per step. The order is a function of (seed, epoch, processes) and each image's crop,
flip and jitter of (seed, epoch, image), whatever the number of workers, so a run resumed at
an epoch boundary, or in the middle of one (`stream(epoch, start)` skips the first batches
without reading their images), sees the images and crops an uninterrupted run would have.
"""
from __future__ import annotations

import contextlib
import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .config import ConfigError
from .data import TRAIN, stream_seed
from .install import broken_torchvision

try:
    from torchvision import datasets, transforms
except (ImportError, RuntimeError, OSError) as e:  # a torchvision built for another torch: say so
    raise broken_torchvision(e) from e

SPLITS = ("train", "val")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # validation: Resize(256) before CenterCrop(224)


def train_transform(image_size: int) -> transforms.Compose:
    return transforms.Compose([
        transforms.RandomResizedCrop(image_size),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
        transforms.PILToTensor(),  # uint8: a quarter of the bytes to collate, pin and copy; see `normalise`
    ])


def val_transform(image_size: int) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize(round(image_size * RESIZE_RATIO)),
        transforms.CenterCrop(image_size),
        transforms.PILToTensor(),
    ])


def normalise(images: torch.Tensor) -> torch.Tensor:
    """torchvision's ToTensor then Normalize of a uint8 batch [N, 3, H, W], on its device. The
    256 values per channel are computed once on the CPU with torchvision's float32 operations and
    looked up, so that every device gives the same bits (CUDA computes x / 255 as x * (1/255))."""
    levels = torch.arange(256, dtype=torch.float32).view(256, 1).div(255)
    mean, std = (torch.tensor(v, dtype=torch.float32) for v in (IMAGENET_MEAN, IMAGENET_STD))
    table = levels.sub(mean).div(std).to(images.device)  # [byte, channel]
    return torch.stack([table[images[:, c].long(), c] for c in range(3)], dim=1)


def open_image_folder(root: Path, split: str, image_size: int) -> datasets.ImageFolder:
    """One split's ImageFolder (file list only: images are read when batches are drawn);
    a missing or malformed folder is a ConfigError naming --data."""
    folder = root / split
    if not folder.is_dir():
        hint = (" (ImageNet's validation images come in one folder: sort them into one sub-folder per class, "
                "named as in train/, e.g. with the widely used valprep.sh)" if split == "val" else "")
        raise ConfigError("data", root, f"no {split}/ folder; expected {root}/train/<class>/*.JPEG and "
                                        f"{root}/val/<class>/*.JPEG{hint}")
    try:
        data = datasets.ImageFolder(str(folder), train_transform(image_size) if split == "train"
                                    else val_transform(image_size))
    except (FileNotFoundError, OSError) as e:  # no class folders, or a class without images
        raise ConfigError("data", root, f"{folder} is not an image folder ({e}); "
                                        f"expected one sub-folder of images per class") from e
    return data


def open_splits(root: Path, image_size: int) -> tuple[datasets.ImageFolder, datasets.ImageFolder]:
    """The train and val ImageFolders, whose classes must be the same (labels are class indices)."""
    if not root.is_dir():
        raise ConfigError("data", root, "folder not found; pass the folder holding train/ and val/")
    train, val = (open_image_folder(root, s, image_size) for s in SPLITS)
    if train.classes != val.classes:
        odd = sorted(set(train.classes) ^ set(val.classes))
        raise ConfigError("data", root, f"train/ and val/ hold different classes ({len(train.classes)} and "
                                        f"{len(val.classes)}; e.g. {', '.join(odd[:3])} in one only): labels "
                                        f"would not match; give both the same class folders")
    return train, val


class _Seeded(Dataset):
    """An ImageFolder whose transform draws its randomness from (seed, epoch, image index)
    rather than from the global RNG of whichever process (or worker) reads the image."""

    def __init__(self, folder: datasets.ImageFolder, seed: int) -> None:
        self.folder, self.seed, self.epoch = folder, seed, 0

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.folder.samples[index]
        image = self.folder.loader(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stream_seed(self.seed, (TRAIN, self.epoch, index)))
            return self.folder.transform(image), label


class _Strided(Sampler[int]):
    """Every `processes`-th index from `rank`, in order, without the padding DistributedSampler
    adds: the processes together test every image exactly once."""

    def __init__(self, n: int, rank: int, processes: int) -> None:
        self.n, self.rank, self.processes = n, rank, processes

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.processes))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.processes))


class _Tail(Sampler[int]):
    """`order`'s indices from its `skip`-th on: a pass resumed mid-epoch draws the order as a whole
    pass does and loads none of the images before `skip`."""

    def __init__(self, order: Sampler[int]) -> None:
        self.order, self.skip = order, 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.order), self.skip, None)

    def __len__(self) -> int:
        return len(self.order) - self.skip  # type: ignore[arg-type]  # both orders have a length


def _leave_signals_to_the_run(worker: int) -> None:
    """A worker ignores SIGINT and SIGTERM (Ctrl-C and Slurm signal every process of the job):
    the training process stops at its next step and ends its workers (common/runstate.py). A
    worker that stopped on its own would end the run with a DataLoader error instead."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


class Stream:
    """Batches of one split for one process: `stream(epoch)` yields (images, targets) on `device`.

    Training: a DistributedSampler shuffles with the run's seed and the epoch (`set_epoch`),
    and each image is augmented with its own seed. Testing: every image once, in order, split
    over the processes. A pass has as many batches on every process (what the largest share
    needs), so that the processes meet at the same collectives: a process whose share has ended
    (validation shares differ by one image) yields empty batches for the rest of the pass.
    """

    def __init__(self, folder: datasets.ImageFolder, batch_size: int, *, train: bool, seed: int,
                 shard: tuple[int, int], workers: int, device: torch.device, limit: int | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        rank, processes = shard
        self.device, self.limit, self.memory_format, self.batch_size = device, limit, memory_format, batch_size
        self.data: Dataset = _Seeded(folder, seed) if train else folder
        self.order: Sampler[int] = (DistributedSampler(self.data, processes, rank, shuffle=True, seed=seed)
                                    if train else _Strided(len(folder), rank, processes))
        self.sampler = _Tail(self.order)
        largest = -(-len(folder) // processes)  # share: every process's in training (DistributedSampler pads)
        self.steps = -(-largest // batch_size)  # of a whole pass
        # workers start per pass (not persistent), so that they see the epoch set below
        self.loader = DataLoader(self.data, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
                                 worker_init_fn=_leave_signals_to_the_run if workers else None)

    def __len__(self) -> int:
        return self.steps if self.limit is None else min(self.steps, self.limit)

    def __call__(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pass of epoch `epoch` from its batch `start` on."""
        if isinstance(self.order, DistributedSampler):
            self.order.set_epoch(epoch)
        if isinstance(self.data, _Seeded):
            self.data.epoch = epoch
        self.sampler.skip = start * self.batch_size
        # A pass draws its workers' seed from the global RNG: a resumed pass's draw happened
        # before the checkpoint's RNG state, so it must not draw again.
        with torch.random.fork_rng(devices=[]) if start else contextlib.nullcontext():
            batches = iter(self.loader)
        done = start
        for step, (x, y) in enumerate(batches, start):
            if step >= len(self):  # --fast: one batch (a resumed pass may start past it)
                return
            x = normalise(x.to(self.device, non_blocking=True))
            yield x.contiguous(memory_format=self.memory_format), y.to(self.device, non_blocking=True)
            done = step + 1
        for _ in range(done, len(self)):  # this process's share has ended
            yield self._empty()

    def _empty(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of no images (its image size unknown, 0 x 0), no targets."""
        return (torch.empty((0, 3, 0, 0), device=self.device),
                torch.empty(0, dtype=torch.int64, device=self.device))
