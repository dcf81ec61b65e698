"""Datasets held in memory as uint8 tensors, and a deterministic batch iterator.

We do not use torch's DataLoader. A whole dataset lives in memory (on the GPU when
training there) and :class:`Batches` produces batches with torchvision's training
augmentation (RandomCrop with zero padding, RandomHorizontalFlip, Normalize, DARTS'
Cutout) applied per image but vectorised over the batch. All randomness comes from one
CPU ``torch.Generator`` seeded from ``(seed, key)``, so a pass is a pure function of
``(seed, key)``: resumed runs are bit-identical and CPU and CUDA see the same batches.

Readers parse the on-disk formats themselves; torchvision is only used to download
(its dataset classes verify MD5 sums, which small test files cannot pass).
"""
from __future__ import annotations

import copy
import math
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import check
from .install import InstallError, torchvision_module

DATASETS = ("cifar10", "cifar100", "svhn", "imagenet16-120", "imagefolder")
# Classes of the fixed datasets, for what is sized without loading them (reports); an
# imagefolder has as many as its folders.
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet16-120": 120}

CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
IMAGENET16_MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
IMAGENET16_STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)
IMAGENET16_CLASSES = 120  # NAS-Bench-201's ImageNet16-120 keeps labels 1..120

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
SVHN_DIR = "svhn"
IMAGENET16_DIR = "imagenet16"


class DataError(Exception):
    """Raised with one clear, actionable message (what is missing, where to put it)."""


@dataclass
class ImageSet:
    """A whole dataset split in memory."""

    images: torch.Tensor  # uint8, [N, H, W, 3], CPU
    labels: torch.Tensor  # int64, [N]
    num_classes: int
    mean: tuple[float, float, float]  # per channel, in [0, 1] units
    std: tuple[float, float, float]
    padding: int  # RandomCrop padding

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------- loading


def load_dataset(
    name: str, root: str | Path, train: bool, download: bool = True, image_size: int = 32
) -> ImageSet:
    """Load the train or test split of dataset ``name`` from ``root``.

    ``root`` is the data folder holding ``cifar-10-batches-py/``, ``cifar-100-python/``,
    ``svhn/`` or ``imagenet16/``; for ``imagefolder`` it is the folder holding
    ``train/<class>/*`` and ``test/<class>/*``. ``image_size`` is used by ``imagefolder``
    only (images are resized to a square). CIFAR and SVHN are downloaded when missing
    and ``download`` is true, unless the environment sets ``DARTS_PT_OFFLINE=1``.
    """
    key = name.lower()
    root = Path(root).expanduser()
    if key in ("cifar10", "cifar100"):
        return _load_cifar(root, train, download, classes=int(key[5:]))
    if key == "svhn":
        return _load_svhn(root, train, download)
    if key == "imagenet16-120":
        return _load_imagenet16(root, train)
    if key == "imagefolder":
        return _load_imagefolder(root, train, image_size)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


# classes -> folder, the training set's files, the test set's, the label key, mean, std
_CIFAR = {
    10: (CIFAR10_DIR, [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", CIFAR10_MEAN, CIFAR10_STD),
    100: (CIFAR100_DIR, ["train"], ["test"], "fine_labels", CIFAR100_MEAN, CIFAR100_STD),
}


def _load_cifar(root: Path, train: bool, download: bool, classes: int) -> ImageSet:
    """CIFAR-10 or CIFAR-100, in the 'python version' layout."""
    subfolder, train_files, test_files, label_key, mean, std = _CIFAR[classes]
    name, folder, names = f"CIFAR-{classes}", root / subfolder, train_files if train else test_files
    _ensure_files(
        name, folder, names, download,
        fetch=lambda: _torchvision_download(f"CIFAR{classes}", root, train),
        how=f"download the '{name} python version' from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {root}",
    )
    images, labels = _read_pickled_batches([folder / n for n in names], label_key, side=32)
    return ImageSet(images, labels, classes, mean, std, padding=4)


def _load_svhn(root: Path, train: bool, download: bool) -> ImageSet:
    folder = root / SVHN_DIR
    split = "train" if train else "test"
    name = f"{split}_32x32.mat"
    _ensure_files(
        "SVHN", folder, [name], download,
        fetch=lambda: _torchvision_download("SVHN", folder, train),
        how=f"download {name} (format 2, cropped digits) from "
        f"http://ufldl.stanford.edu/housenumbers/ into {folder}",
    )
    path = folder / name
    try:
        import scipy.io

        mat = scipy.io.loadmat(str(path))
        images = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2))  # [32,32,3,N] -> NHWC
        labels = mat["y"].astype(np.int64).reshape(-1)
    except Exception as err:  # any parse failure means the file is unusable
        raise DataError(f"could not read SVHN file {path}: {err}") from err
    _check_images(images, labels, path, side=32)
    labels[labels == 10] = 0  # SVHN stores digit 0 as label 10, torchvision maps it to 0
    return ImageSet(_u8(images), torch.from_numpy(labels), 10, SVHN_MEAN, SVHN_STD, padding=4)


def _load_imagenet16(root: Path, train: bool) -> ImageSet:
    folder = root / IMAGENET16_DIR
    names = [f"train_data_batch_{i}" for i in range(1, 11)] if train else ["val_data"]
    _ensure_files(
        "ImageNet16-120", folder, names, download=False, fetch=None,
        how="download Imagenet16_train.zip and Imagenet16_val.zip (Downsampled ImageNet "
        "16x16, pickle format) from https://image-net.org/download-images.php and "
        f"extract the files into {folder}",
    )
    images, labels = _read_pickled_batches([folder / n for n in names], "labels", side=16)
    # NAS-Bench-201 (use_num_of_class_only=120): keep labels 1..120, make them 0-based.
    keep = (labels >= 1) & (labels <= IMAGENET16_CLASSES)
    return ImageSet(
        images[keep].contiguous(), labels[keep] - 1, IMAGENET16_CLASSES,
        IMAGENET16_MEAN, IMAGENET16_STD, padding=2,
    )


def _load_imagefolder(root: Path, train: bool, image_size: int) -> ImageSet:
    train_classes, train_files = _list_image_folder(root / "train")
    if train:
        files = train_files
    else:
        test_classes, files = _list_image_folder(root / "test")
        if test_classes != train_classes:
            raise DataError(
                f"class folders of {root / 'test'} {test_classes} do not match those of "
                f"{root / 'train'} {train_classes}; both splits need the same class folders"
            )
    images = _read_resized(files, image_size)
    # The test split is normalised with the training statistics, as for CIFAR.
    mean, std = _channel_stats(images if train else _read_resized(train_files, image_size))
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageSet(images, labels, len(train_classes), mean, std, padding=image_size // 8)


def _ensure_files(
    label: str, folder: Path, names: Sequence[str], download: bool,
    fetch: Callable[[], None] | None, how: str,
) -> None:
    """Make sure ``folder/names`` exist, downloading with ``fetch`` when allowed; a download that
    fails leaves none of the empty folders it made (a mistyped --data stays uncreated)."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing and fetch is not None and download:
        if os.environ.get("DARTS_PT_OFFLINE") == "1":
            why = " (automatic download disabled by DARTS_PT_OFFLINE=1)"
        else:
            new = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
            try:
                fetch()
                why = " (even after downloading)"
            except InstallError:
                raise
            except Exception as err:  # no network, server down, ...: explain and stop
                why = f" (automatic download failed: {err})"
            missing = [n for n in names if not (folder / n).is_file()]
            if missing and new is not None:
                _remove_empty(folder, new)
    elif missing:
        why = "" if fetch is None else " (download=False)"
    if missing:
        raise DataError(
            f"{label} data not found{why}: expected {', '.join(missing)} in {folder}. "
            f"To fix: {how}, or pass --data DIR pointing at a folder that already has them."
        )


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove `folder` and its parents up to `top`, as long as they are empty."""
    for path in [folder, *folder.parents]:
        if path.exists():
            try:
                path.rmdir()
            except OSError:  # not empty: it holds something besides what we made
                return
        if path == top:
            return


def _torchvision_download(cls_name: str, root: Path, train: bool) -> None:
    tvd = torchvision_module("datasets")
    if cls_name == "SVHN":
        tvd.SVHN(str(root), split="train" if train else "test", download=True)
    else:
        getattr(tvd, cls_name)(str(root), train=train, download=True)


def _read_pickled_batches(
    paths: Sequence[Path], label_key: str, side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read CIFAR/ImageNet16 pickles: 'data' rows are channel-major 3 x side x side."""
    all_images, all_labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            rows = np.asarray(_entry(entry, "data"), dtype=np.uint8)
            labels = np.asarray(_entry(entry, label_key), dtype=np.int64).reshape(-1)
            images = rows.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)  # -> NHWC
        except Exception as err:  # truncated, not a pickle, wrong keys or shape
            raise DataError(f"could not read dataset file {path}: {err}") from err
        _check_images(images, labels, path, side)
        all_images.append(images)
        all_labels.append(labels)
    images = np.ascontiguousarray(np.concatenate(all_images))
    return _u8(images), torch.from_numpy(np.concatenate(all_labels))


def _entry(batch: dict, key: str) -> object:
    """`batch[key]` of a pickled batch whose keys are str (the official files, pickled by Python 2)
    or bytes (pickled by Python 3 from the official files' bytes keys), as torchvision reads both."""
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise ValueError(f"no {key!r} entry (it holds {', '.join(map(repr, batch))})")


def _check_images(images: np.ndarray, labels: np.ndarray, path: Path, side: int) -> None:
    if images.shape[1:] != (side, side, 3) or len(images) != len(labels):
        raise DataError(
            f"dataset file {path} is malformed: {len(images)} images of shape "
            f"{images.shape[1:]} and {len(labels)} labels (expected {side}x{side}x3 each)"
        )


def _u8(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))


def _list_image_folder(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted folder names) and (path, label) samples, as torchvision's ImageFolder."""
    tv_folder = torchvision_module("datasets.folder")
    if not folder.is_dir():
        raise DataError(
            f"image folder {folder} not found: an imagefolder dataset needs "
            f"{folder.parent}/train/<class>/<images> and {folder.parent}/test/<class>/<images>; "
            "pass --data DIR pointing at the folder that holds train/ and test/"
        )
    try:
        classes, class_to_idx = tv_folder.find_classes(str(folder))
        samples = tv_folder.make_dataset(str(folder), class_to_idx, extensions=tv_folder.IMG_EXTENSIONS)
    except FileNotFoundError as err:  # no class folders, or a class without images
        raise DataError(f"bad image folder {folder}: {err}") from err
    return classes, samples


def _read_resized(files: Sequence[tuple[str, int]], size: int) -> torch.Tensor:
    """Read images as RGB, resized to size x size with PIL bilinear (torchvision's Resize)."""
    from PIL import Image

    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as img:
                out[i] = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        except Exception as err:  # unreadable or not an image
            raise DataError(f"could not read image {path}: {err}") from err
    return torch.from_numpy(out)


def _channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and (population) std in [0, 1] units, exact via integer sums."""
    s1, s2 = [0, 0, 0], [0, 0, 0]
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].reshape(-1, 3).to(torch.int64)
        for c, (a, b) in enumerate(zip(x.sum(0).tolist(), (x * x).sum(0).tolist())):
            s1[c] += a
            s2[c] += b
    n = images[..., 0].numel()
    if n == 0:
        raise DataError("cannot compute normalisation statistics of an empty training set")
    mean = tuple(a / n / 255 for a in s1)
    std = tuple(math.sqrt(max(b * n - a * a, 0)) / n / 255 for a, b in zip(s1, s2))
    return mean, std


def split_indices(n: int, train_portion: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First floor(train_portion * n) indices and the rest, as DARTS splits its train set."""
    split = int(math.floor(train_portion * n))
    return torch.arange(split), torch.arange(split, n)


# --------------------------------------------------------------------------- batches

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def stream_seed(seed: int, key: int | tuple[int, ...]) -> int:
    """A stable 63-bit seed from (seed, key); unlike hash() it is the same in every process."""
    h = 0
    for part in (seed, *(key if isinstance(key, tuple) else (key,))):
        h = _splitmix64(h ^ (int(part) & _MASK64))
    return h >> 1


# Keys of the data streams, so every pass has its own reproducible order and augmentation;
# PROCESS seeds the global RNGs of the processes of a multi-process run (common/distributed.py);
# METHOD a method's own random draws (GDAS' Gumbel noise).
TRAIN, VALID, EVAL_VALID, EVAL_TEST, TUNE_TRAIN, TUNE_VALID, SCORE, PROCESS, METHOD = range(9)


def shard_slice(n: int, rank: int, processes: int) -> slice:
    """Process `rank`'s contiguous part of n items split over `processes` as evenly as possible
    (the first n % processes parts hold one item more)."""
    size, extra = divmod(n, processes)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (rank < extra))


# Columns of the per-pass random parameter table built by Batches._draw.
_ORDER, _OFF_Y, _OFF_X, _FLIP, _CUT, _CUT_Y, _CUT_X = range(7)


class Batches:
    """Deterministic batches over ``data[indices]`` with optional training augmentation.

    ``batches(key)`` yields one pass of ``(images, targets)``: float32 [B, 3, H, W]
    normalised images and int64 targets on ``device``. Order and augmentation depend
    only on ``(seed, key)``, never on the device. With ``shard=(rank, processes)`` every
    batch is drawn whole, as in one process, and only process ``rank``'s contiguous part of
    it (``shard_slice``) is yielded: the processes of a multi-process run together see exactly
    the batches, crops, flips and cutouts of a one-process run.
    """

    def __init__(
        self,
        data: ImageSet,
        indices: torch.Tensor | None,
        batch_size: int,
        *,
        augment: bool,
        device: torch.device | str = "cpu",
        seed: int = 0,
        cutout_length: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        limit: int | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        images, labels = data.images, data.labels
        if indices is not None:
            indices = torch.as_tensor(indices, dtype=torch.int64)
            images, labels = images[indices], labels[indices]
        # Only the selected images go to the device, once, still as uint8.
        self.images = images.to(self.device, non_blocking=True)
        self.labels = labels.to(self.device, dtype=torch.int64, non_blocking=True)
        self.batch_size = batch_size
        self.augment = augment
        self.seed = seed
        self.cutout_length = cutout_length
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.limit = limit
        self.memory_format = memory_format  # layout of the images yielded (values do not depend on it)
        self.shard = shard
        self.padding = data.padding
        # torchvision's ToTensor then Normalize of every byte value and channel, computed once on
        # CPU with the same float32 operations: looking the values up gives the same bits on
        # every device (CUDA computes x / 255 as x * (1 / 255), one ulp off for half the values).
        levels = torch.arange(256, dtype=torch.float32).view(256, 1).div(255)
        mean, std = (torch.tensor(v, dtype=torch.float32) for v in (data.mean, data.std))
        table = levels.sub(mean).div(std)
        self._table = table.flatten().to(self.device)  # [byte * 3 + channel]
        self._channels = torch.arange(3, device=self.device)
        _, self.height, self.width, _ = self.images.shape
        self._rows = torch.arange(self.height, device=self.device)
        self._cols = torch.arange(self.width, device=self.device)

    def with_batch_size(self, batch_size: int) -> Batches:
        """The same images (not copied) in batches of another size."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        other = copy.copy(self)
        other.batch_size = batch_size
        return other

    def with_limit(self, limit: int) -> Batches:
        """The same images (not copied), a pass stopping after its first `limit` batches."""
        other = copy.copy(self)
        other.limit = limit if self.limit is None else min(limit, self.limit)
        return other

    @property
    def num_samples(self) -> int:
        """Number of images selected (one pass visits each once, unless limited)."""
        return len(self.labels)

    def __len__(self) -> int:
        n = self.num_samples
        count = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return count if self.limit is None else min(count, self.limit)

    def batch_size_of(self, step: int) -> int:
        """Images in batch `step` of a pass, all shards together."""
        return min(self.batch_size, self.num_samples - step * self.batch_size)

    def check_shards(self, flag: str) -> None:
        """Refuse (naming `flag`, the batch size's) a pass whose last batch leaves a process without
        images: a batch norm over none is undefined."""
        processes, last = self.shard[1], self.batch_size_of(len(self) - 1)
        check(last >= processes, flag, self.batch_size,
              f"the last batch of a pass over {self.num_samples} images holds {last}, fewer than the --nproc "
              f"{processes} processes: choose a batch size that leaves at least {processes}")

    def __call__(
        self, key: int | tuple[int, ...], cutout_prob: float = 0.0, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass from its batch ``start`` on (a pass resumed mid-way: the order and augmentation
        are drawn for the whole pass, as always); ``cutout_prob`` is the per-image Cutout
        probability (DARTS ramps it)."""
        self._check_prob(cutout_prob)
        params = self._draw(key, cutout_prob)
        for b in range(start, len(self)):
            yield self._batch(params[b * self.batch_size : (b + 1) * self.batch_size])

    def sample(
        self, key: int | tuple[int, ...], cutout_prob: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of ``batch_size`` distinct images drawn at random (all of them if fewer):
        what the original's ``next(iter(queue))`` gives, the first batch of a fresh shuffle.
        Successive keys draw independently, so images repeat across steps."""
        self._check_prob(cutout_prob)
        return self._batch(self._draw(key, cutout_prob, min(self.batch_size, self.num_samples)))

    def _batch(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = p[shard_slice(len(p), *self.shard)]
        order = p[:, _ORDER]
        return self._transform(self.images[order], p), self.labels[order]

    @staticmethod
    def _check_prob(cutout_prob: float) -> None:
        if not 0.0 <= cutout_prob <= 1.0:
            raise ValueError(f"cutout_prob must be in [0, 1], got {cutout_prob}")

    def _draw(self, key: int | tuple[int, ...], cutout_prob: float, count: int | None = None) -> torch.Tensor:
        """The random numbers of one pass (or of its first ``count`` images), drawn on CPU, as
        an int64 [count, 7] table on the device."""
        n = self.num_samples
        gen = torch.Generator().manual_seed(stream_seed(self.seed, key))
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        n = n if count is None else count
        params = torch.zeros(n, 7, dtype=torch.int64)
        params[:, _ORDER] = order[:n]
        if self.augment:
            # Drawn even when cutout is off so that the crops and flips do not depend on it.
            span = 2 * self.padding + 1  # torchvision: offset uniform in [0, 2 * padding]
            params[:, _OFF_Y : _OFF_X + 1] = torch.randint(0, span, (n, 2), generator=gen)
            params[:, _FLIP] = torch.randint(0, 2, (n,), generator=gen)
            params[:, _CUT] = torch.rand(n, generator=gen) < cutout_prob
            params[:, _CUT_Y] = torch.randint(0, self.height, (n,), generator=gen)
            params[:, _CUT_X] = torch.randint(0, self.width, (n,), generator=gen)
        if self.device.type == "cuda":
            params = params.pin_memory()  # lets the copy below run asynchronously
        return params.to(self.device, non_blocking=True)

    def _transform(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.augment:
            images = self._crop_flip(images, p[:, _OFF_Y], p[:, _OFF_X], p[:, _FLIP])
        x = self._table[images.long() * 3 + self._channels]  # [n, h, w, 3]: ToTensor + Normalize
        x = x.permute(0, 3, 1, 2).contiguous(memory_format=self.memory_format)
        if self.augment and self.cutout_length > 0:
            x = self._cutout(x, p[:, _CUT], p[:, _CUT_Y], p[:, _CUT_X])
        return x

    def _crop_flip(
        self, images: torch.Tensor, off_y: torch.Tensor, off_x: torch.Tensor, flip: torch.Tensor
    ) -> torch.Tensor:
        """Per-image RandomCrop(zero padding) then RandomHorizontalFlip, as one gather."""
        n, h, w, c = images.shape
        pad = self.padding
        padded = images.new_zeros((n, h + 2 * pad, w + 2 * pad, c))
        padded[:, pad : pad + h, pad : pad + w] = images
        rows = off_y[:, None] + self._rows  # [n, h]
        # A flipped crop reads the crop's columns right to left.
        cols = off_x[:, None] + torch.where(flip[:, None] == 1, w - 1 - self._cols, self._cols)
        batch = torch.arange(n, device=images.device)[:, None, None]
        return padded[batch, rows[:, :, None], cols[:, None, :]]

    def _cutout(
        self, x: torch.Tensor, apply: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor
    ) -> torch.Tensor:
        """DARTS Cutout: zero [cy-L//2, cy+L//2) x [cx-L//2, cx+L//2), clipped to the image."""
        half = self.cutout_length // 2
        rows, cols = self._rows[None, :, None], self._cols[None, None, :]
        in_rows = (rows >= (cy - half)[:, None, None]) & (rows < (cy + half)[:, None, None])
        in_cols = (cols >= (cx - half)[:, None, None]) & (cols < (cx + half)[:, None, None])
        hole = in_rows & in_cols & (apply[:, None, None] == 1)
        return x.mul_((~hole).unsqueeze(1).to(x.dtype))  # DARTS multiplies by a 0/1 mask
