"""NAS-Bench-201 ground truth: the 200-epoch accuracies of every architecture.

Loading the benchmark file takes minutes and several GB of RAM, so the first `open`
reads it once through the official API (`nas_201_api`), extracts the accuracies of all
architectures, and caches them in ``<file>.accuracies.json`` beside it. Later opens read
only that small cache, as long as it was made from the same file (name, size, mtime).

A file of plain data (dicts, lists, numbers, strings: the benchmark files) is read by
Python's C unpickler restricted to such data; anything else goes to torch.load as before.
"""
from __future__ import annotations

import contextlib
import gc
import inspect
import io
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from nas_201_api import NASBench201API

from common.checkpoint import permit_as_umask

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
# The header of torch's legacy file format (torch.serialization.MAGIC_NUMBER, PROTOCOL_VERSION).
_TORCH_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_TORCH_PROTOCOL_VERSION = 1001
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
    def open(cls, path: str | Path, log: Log = print) -> Benchmark | None:
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
                permit_as_umask(f.fileno())
                json.dump(payload, f)
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
    with gc_paused():  # millions of small containers: the cyclic GC would rescan them over and over
        api = NASBench201API(_Owned(_load(path, log)), verbose=False)
        read = _accuracy_reader(api)
        accuracies = {}
        for index, arch in enumerate(api.meta_archs):
            try:
                accuracies[arch] = read(index)
            except (KeyError, ValueError):  # not evaluated, or a dataset is absent (tiny test benchmarks)
                continue
    return accuracies


def _accuracy_reader(api: NASBench201API) -> Callable[[int], dict[str, float]]:
    """Arch index -> its accuracies under the keys of METRICS, as get_more_info(index, dataset,
    hp='200', is_random=False) gives them; KeyError or ValueError where one is missing."""
    more_info = _more_info_200_epochs(api)

    def read_more_info(index: int) -> dict[str, float]:
        infos = {dataset: more_info(index, dataset) for dataset in DATASETS}
        return {key: float(infos[dataset][field]) for key, (dataset, field) in METRICS.items()}

    read_metrics = _metrics_reader(api)
    if read_metrics is None:
        return read_more_info
    # The shortcut reads API internals: make sure it answers as get_more_info does, on a
    # sample of archs, before trusting it with all of them.
    count = len(api.meta_archs)
    sample = sorted({round(k * (count - 1) / (_CHECKED - 1)) for k in range(_CHECKED)}) if count else []
    if all(_outcome(read_metrics, i) == _outcome(read_more_info, i) for i in sample):
        return read_metrics
    return read_more_info


_CHECKED = 16


def _outcome(read: Callable[[int], dict[str, float]], index: int) -> dict[str, float] | None:
    try:
        return read(index)
    except (KeyError, ValueError):
        return None


def _metrics_reader(api: NASBench201API) -> Callable[[int], dict[str, float]] | None:
    """For API 2.x, a reader of the same numbers as get_more_info, 3x faster; else None.

    get_more_info reads each field with ArchResults.get_metrics: the np.mean over the
    dataset's trials (in dataset_seed order) of ResultsCount.get_train() or get_eval(set) at
    the last epoch. This reads the same numbers the same way, for the fields kept only:
    get_metrics also averages losses, epochs and times, and get_more_info also reads sets
    not kept (ori-test of cifar100/ImageNet, x-valid of cifar10).
    """
    arch2infos = getattr(api, "arch2infos_dict", None)
    if not isinstance(arch2infos, dict) or "hp" not in inspect.signature(api.get_more_info).parameters:
        return None

    def read_metrics(index: int) -> dict[str, float]:
        try:
            results = arch2infos[index]["200"]
        except KeyError:
            raise ValueError(f"Did not find {index} from arch2infos_dict.") from None
        return {key: _mean_accuracy(results, dataset, _SET_OF_FIELD[dataset, field])
                for key, (dataset, field) in METRICS.items()}
    return read_metrics


def _mean_accuracy(results, dataset: str, setname: str) -> float:
    """ArchResults.get_metrics(dataset, setname, iepoch=None, is_random=False)['accuracy']."""
    trials = [results.all_results[(dataset, seed)] for seed in results.dataset_seed[dataset]]
    if not trials:  # get_metrics returns no 'accuracy' then
        raise KeyError(f"no trials on {dataset}")
    if setname == "train":
        return float(np.mean([trial.get_train(None)["accuracy"] for trial in trials]))
    try:
        return float(np.mean([trial.get_eval(setname, None)["accuracy"] for trial in trials]))
    except Exception as exc:  # get_more_info leaves an evaluation out on any error: a KeyError here
        raise KeyError(f"no {setname} results on {dataset}") from exc


# (dataset, get_more_info field) -> the evaluation set get_more_info (API 2.x) reads for it.
_SET_OF_FIELD = {
    **{(dataset, "train-accuracy"): "train" for dataset in DATASETS},
    **{(dataset, "valid-accuracy"): "x-valid" for dataset in DATASETS},
    **{(dataset, "test-accuracy"): "ori-test" if dataset == "cifar10" else "x-test" for dataset in DATASETS},
}


class _Owned(dict):
    """The freshly loaded benchmark, handed to the API, which deep-copies a dict it is given
    (as it cannot know who else holds it). Nobody else holds this one, so its deep copy is
    itself: the API builds its ArchResults from it as it would from a copy, minus the copy
    (seconds on big files)."""

    def __deepcopy__(self, memo: dict) -> _Owned:
        return self


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load(path: Path, log: Log) -> dict:
    data = _load_plain(path)
    if data is not None:
        return data
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # The official files were written in 2020 and may hold objects outside torch's
        # safe-load list (refused by default since torch 2.6). This is the file the user
        # chose as the benchmark, so read it as the original code did.
        data = torch.load(path, map_location="cpu", weights_only=False)
        log(f"note: {path.name} was read with torch.load(weights_only=False)")
        return data


class _PlainUnpickler(pickle.Unpickler):
    """Python's C unpickler, restricted to plain data: dicts, lists, tuples, strings, numbers,
    and the classes in _PLAIN_GLOBALS. Any other class or function, and any tensor storage
    (there is no persistent_load), stops it with UnpicklingError before it is called."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PLAIN_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


_PLAIN_GLOBALS = {("collections", "OrderedDict")}


def _load_plain(path: Path) -> dict | None:
    """The benchmark, if the file holds plain data only (so is safe to load), else None.

    Benchmark files are dicts of dicts and lists: for them this gives what
    torch.load(weights_only=True) gives, in a fraction of the time (torch's safe loader is
    written in Python). Reads both torch file formats: zip (torch >= 1.6) and the legacy one
    of the official files (2020): magic number, protocol version, system info, the object,
    and the keys of the tensor storages that follow (none here).
    """
    def plain(f) -> object:
        return _PlainUnpickler(f, encoding="utf-8").load()  # encoding as torch.load

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
                if len(names) != 1:
                    return None
                data = plain(io.BytesIO(archive.read(names[0])))
        else:
            with open(path, "rb") as f:
                if plain(f) != _TORCH_MAGIC_NUMBER or plain(f) != _TORCH_PROTOCOL_VERSION:
                    return None
                plain(f)  # system info
                data = plain(f)
                if plain(f) != []:  # tensor storages follow
                    return None
    except Exception:  # not plain data, or not a torch file: torch.load decides
        return None
    return data if isinstance(data, dict) else None


def _more_info_200_epochs(api: NASBench201API) -> Callable[[int, str], dict]:
    """get_more_info for the 200-epoch results, averaged over trials, for any API version."""
    if "hp" in inspect.signature(api.get_more_info).parameters:
        return lambda index, dataset: api.get_more_info(index, dataset, hp="200", is_random=False)
    # The API of 2020-02-25 has no `hp`; its default is the 200-epoch result.
    return lambda index, dataset: api.get_more_info(index, dataset, is_random=False)
