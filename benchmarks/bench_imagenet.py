"""Speed of ImageNet evaluation training: the data pipeline alone and the network's step.

    python -m benchmarks.bench_imagenet --quick                  # CPU smoke run, about a minute
    python -m benchmarks.bench_imagenet --device cuda --workers 8,16 --batch_size 128
    python -m benchmarks.bench_imagenet --data /path/to/imagenet # a real train/ folder instead

Loader: images per second that common/imagefolder.py's training Stream delivers (JPEG decode,
RandomResizedCrop 224, flip, ColorJitter, normalisation, collation) with N DataLoader workers,
after the workers' first batch; the files sit in the page cache (disk reads are not measured).
Without --data the images are synthetic JPEGs of ImageNet's typical size (500x375, about
100 KB), each file linked many times so that one epoch outlasts the measurement.
Network: images per second of sota/train_imagenet.py's training step (NetworkImageNet C=48, 14
cells, auxiliary head, label smoothing, SGD, gradient clipping) on ready tensors, in float32
and with --autocast bf16; peak GPU memory on CUDA. One line per figure, `key=value`.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.distributed import Group  # noqa: E402
from common.imagefolder import Stream, open_image_folder  # noqa: E402
from common.progress import Progress  # noqa: E402
from sota.genotypes import get_genotype  # noqa: E402
from sota.train_imagenet import ImageNetRun, build_parser, config  # noqa: E402

SYNTHETIC_SIZE = (500, 375)  # ImageNet's most common image size


def synthetic_folder(root: Path, distinct: int, links: int, classes: int = 4) -> Path:
    """root/train/<class>/*.JPEG and root/val/...: `distinct` smooth random JPEGs, each linked
    `links` times in train/ (hard links: the same cached bytes, decoded anew every time)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    width, height = SYNTHETIC_SIZE
    for split, n_links in (("train", links), ("val", 1)):
        for i in range(distinct):
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            coarse = rng.integers(0, 256, (height // 25, width // 25, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
            noisy = np.clip(np.asarray(image, dtype=np.int16) + rng.integers(-20, 21, (height, width, 3)), 0, 255)
            first = folder / f"img{i:05d}_0.JPEG"
            Image.fromarray(noisy.astype(np.uint8)).save(first, quality=90)
            for k in range(1, n_links):
                os.link(first, folder / f"img{i:05d}_{k}.JPEG")
    return root


def loader_speed(data: Path, workers: int, batch_size: int, batches: int) -> float:
    """Images per second of the training stream after its first batch (workers started)."""
    stream = Stream(open_image_folder(data, "train", 224), batch_size, train=True, seed=0, shard=(0, 1),
                    workers=workers, device=torch.device("cpu"))
    it = stream(0)
    next(it)
    start, images = time.perf_counter(), 0
    for _, (_, y) in zip(range(batches), it, strict=False):
        images += len(y)
    return images / (time.perf_counter() - start)


class BenchRun(ImageNetRun):
    """ImageNet's 1000 classes, whatever the folder holds."""

    def load_data(self) -> int:
        super().load_data()
        return 1000


def network_speed(data: Path, device: str, batch_size: int, autocast: str, steps: int,
                  warmup: int) -> tuple[float, float | None]:
    """Images per second of the training step, median over `steps` timed steps; peak CUDA memory (GB)."""
    cfg = config(build_parser().parse_args(["--data", str(data), "--gpu", device, "--batch_size", str(batch_size),
                                            "--autocast", autocast, "--auxiliary", "--workers", "0",
                                            "--report_freq", "1000000", "--drop_path_prob", "0.2"]))
    r = BenchRun(cfg, get_genotype("darts_pt_s5_0"), torch.device(device), Group())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, 224, 224, generator=gen).to(r.device, memory_format=r.memory_format)
    y = torch.randint(0, 1000, (batch_size,), generator=gen).to(r.device)
    r.train_batches = lambda epoch, start=0: iter([(x, y, batch_size)])  # type: ignore[method-assign]
    times = []
    for step in range(warmup + steps):
        if step == warmup and r.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(r.device)
        start = time.perf_counter()
        r.train_epoch(0, Progress(1, every_steps=10**9, every_s=0.0))  # one step, ends with a host sync
        if step >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(r.device) / 2**30 if r.device.type == "cuda" else None
    return batch_size / statistics.median(times), peak


def build_bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (CUDA when present)")
    p.add_argument("--data", default=None, help="an ImageNet folder (train/ is read); default: synthetic JPEGs")
    p.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts to measure")
    p.add_argument("--batch_size", type=int, default=None, help="default 128 (--quick: 16)")
    p.add_argument("--loader_batches", type=int, default=None, help="timed batches per worker count (default 20)")
    p.add_argument("--steps", type=int, default=None, help="timed network steps (default 5)")
    p.add_argument("--autocast", default="none,bf16", help="comma-separated: none, bf16, fp16")
    p.add_argument("--quick", action="store_true", help="small batches and few steps")
    p.add_argument("--no_network", action="store_true", help="the loader only")
    return p


def main(argv: list[str] | None = None) -> int:
    cfg = build_bench_parser().parse_args(argv)
    batch = cfg.batch_size or (16 if cfg.quick else 128)
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = f", {torch.cuda.get_device_name()}" if device == "cuda" else ""
    print(f"# torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}{gpu}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(cfg.data) if cfg.data else synthetic_folder(Path(tmp), 16 if cfg.quick else 64,
                                                                 16 if cfg.quick else 64)
        batches = cfg.loader_batches or (4 if cfg.quick else 20)
        for workers in (int(w) for w in cfg.workers.split(",")):
            speed = loader_speed(data, workers, batch, batches)
            print(f"imagenet loader workers={workers} batch={batch} images_per_s={speed:.1f}", flush=True)
        if cfg.no_network:
            return 0
        for autocast in cfg.autocast.split(","):
            speed, peak = network_speed(data, device, batch, autocast, cfg.steps or (2 if cfg.quick else 5),
                                        1 if cfg.quick else 2)
            print(f"imagenet network device={device} batch={batch} autocast={autocast} images_per_s={speed:.1f}"
                  + (f" peak_gb={peak:.2f}" if peak is not None else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
