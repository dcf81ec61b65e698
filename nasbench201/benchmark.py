"""NAS-Bench-201 ground truth: the 200-epoch accuracies of every architecture.

Loading the benchmark file takes minutes and several GB of RAM, so the first `open`
reads it once through the official API (`nas_201_api`), extracts the accuracies of all
architectures, and caches them in ``<file>.accuracies.json`` beside it. Later opens read
only that small cache, as long as it was made from the same file (name, size, mtime).
"""
from __future__ import annotations

import inspect
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable

import torch
from nas_201_api import NASBench201API

Log = Callable[[str], None]

# Query key -> (API dataset name, get_more_info field). Accuracies are in percent.
METRICS: dict[str, tuple[str, str]] = {
    "cifar10_train": ("cifar10", "train-accuracy"),
    "cifar10_test": ("cifar10", "test-accuracy"),            # ori-test
    "cifar100_train": ("cifar100", "train-accuracy"),
    "cifar100_valid": ("cifar100", "valid-accuracy"),        # x-valid
    "cifar100_test": ("cifar100", "test-accuracy"),          # x-test
    "imagenet16_train": ("ImageNet16-120", "train-accuracy"),
    "imagenet16_valid": ("ImageNet16-120", "valid-accuracy"),
    "imagenet16_test": ("ImageNet16-120", "test-accuracy"),
}
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# Bump when what the cache holds changes, so old caches are rebuilt.
CACHE_FORMAT = 1


def cache_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".accuracies.json")


class Benchmark:
    """Accuracies of the architectures of one NAS-Bench-201 benchmark file."""

    def __init__(self, accuracies: dict[str, dict[str, float]], path: Path) -> None:
        self._accuracies = accuracies
        self.path = path

    @classmethod
    def open(cls, path: str | Path, log: Log = print) -> "Benchmark | None":
        """The benchmark at `path`, or None (after one log line) if it is missing or unreadable."""
        path = Path(path)
        if not path.is_file():
            log(f"NAS-Bench-201 benchmark not found at {path}; runs go on without benchmark queries. "
                "Download NAS-Bench-201-v1_0-e61699.pth into data/ or pass --api_path")
            return None
        stamp = _file_stamp(path)
        accuracies = _read_cache(cache_path(path), stamp, log)
        if accuracies is None:
            try:
                accuracies = _accuracies_from_file(path, log)
            except Exception as exc:  # whatever is wrong with the file, the run goes on without it
                first_line = (str(exc).splitlines() or [""])[0][:200]
                log(f"NAS-Bench-201 benchmark file {path} could not be read ({type(exc).__name__}: "
                    f"{first_line}); runs go on without benchmark queries.")
                return None
            _write_cache(cache_path(path), stamp, accuracies, log)
        return cls(accuracies, path)

    def query(self, arch: str) -> dict[str, float]:
        """Accuracies (percent, 200 epochs, mean over trials) under the keys of METRICS."""
        try:
            return dict(self._accuracies[arch])
        except KeyError:
            raise KeyError(f"architecture {arch!r} has no results in the NAS-Bench-201 benchmark "
                           f"{self.path}") from None

    def __contains__(self, arch: object) -> bool:
        return arch in self._accuracies

    def __len__(self) -> int:
        return len(self._accuracies)


def _file_stamp(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_cache(cache: Path, stamp: dict[str, object], log: Log) -> dict[str, dict[str, float]] | None:
    """The cached accuracies if the cache was made from the file described by `stamp`."""
    if not cache.is_file():
        return None
    try:
        with open(cache) as f:
            data = json.load(f)
        if data["format"] == CACHE_FORMAT and data["benchmark"] == stamp:
            return data["accuracies"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log(f"benchmark cache {cache} is out of date or unreadable; rebuilding it")
    return None


def _write_cache(cache: Path, stamp: dict[str, object], accuracies: dict[str, dict[str, float]],
                 log: Log) -> None:
    payload = {"format": CACHE_FORMAT, "benchmark": stamp, "accuracies": accuracies}
    try:
        # Temp file + rename: a reader never sees a half-written cache.
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f)
            os.chmod(tmp, 0o644)
            os.replace(tmp, cache)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        log(f"could not write the benchmark cache {cache} ({exc}); keeping the accuracies in memory only")
        return
    log(f"cached the accuracies of {len(accuracies)} architectures in {cache}")


def _accuracies_from_file(path: Path, log: Log) -> dict[str, dict[str, float]]:
    log(f"loading NAS-Bench-201 benchmark {path} (once: takes minutes and several GB of RAM)")
    api = NASBench201API(_load(path, log), verbose=False)
    more_info = _more_info_200_epochs(api)
    accuracies = {}
    for index, arch in enumerate(api.meta_archs):
        try:
            infos = {dataset: more_info(index, dataset) for dataset in DATASETS}
            accuracies[arch] = {key: float(infos[dataset][field]) for key, (dataset, field) in METRICS.items()}
        except (KeyError, ValueError):  # not evaluated, or a dataset is absent (tiny test benchmarks)
            continue
    return accuracies


def _load(path: Path, log: Log) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # The official files were written in 2020 and may hold objects outside torch's
        # safe-load list (refused by default since torch 2.6). This is the file the user
        # chose as the benchmark, so read it as the original code did.
        data = torch.load(path, map_location="cpu", weights_only=False)
        log(f"note: {path.name} was read with torch.load(weights_only=False)")
        return data


def _more_info_200_epochs(api: NASBench201API) -> Callable[[int, str], dict]:
    """get_more_info for the 200-epoch results, averaged over trials, for any API version."""
    if "hp" in inspect.signature(api.get_more_info).parameters:
        return lambda index, dataset: api.get_more_info(index, dataset, hp="200", is_random=False)
    # The API of 2020-02-25 has no `hp`; its default is the 200-epoch result.
    return lambda index, dataset: api.get_more_info(index, dataset, is_random=False)
