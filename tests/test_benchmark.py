"""NAS-Bench-201 benchmark access, on tiny benchmark files built with the real API."""
from __future__ import annotations

import gc
import json
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from nas_201_api import NASBench201API

from nasbench201 import benchmark as benchmark_module
from nasbench201.benchmark import METRICS, Benchmark, cache_path
from tests.fixtures.nb201_bench import arch_string, default_accuracy, nb201_archs, write_tiny_benchmark

BEST = arch_string(["nor_conv_3x3"] * 6)
WORST = arch_string(["none"] * 6)
PARTIAL = arch_string(["skip_connect"] * 6)  # CIFAR-10 results only


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture
def bench(tmp_path: Path) -> tuple[Path, dict[str, dict[str, float]]]:
    archs = nb201_archs(40) + [BEST, PARTIAL]
    path = tmp_path / "NAS-Bench-201-tiny.pth"
    return path, write_tiny_benchmark(path, archs, cifar10_only=[PARTIAL])


def test_fixture_defaults() -> None:
    archs = nb201_archs(40)
    assert len(nb201_archs()) == 5 ** 6 and len(set(archs)) == 40
    scores = [default_accuracy(a) for a in nb201_archs()]
    assert len(set(scores)) == len(scores)
    assert max(scores) == default_accuracy(BEST) and min(scores) == default_accuracy(WORST)


def test_query_matches_the_benchmark(bench) -> None:
    path, expected = bench
    log = Log()
    b = Benchmark.open(path, log=log)
    assert b is not None and len(b) == len(expected)
    for arch in [BEST, WORST, *list(expected)[::7]]:
        assert b.query(arch) == expected[arch]
    assert set(b.query(BEST)) == set(METRICS)
    assert b.query(BEST)["cifar10_test"] == default_accuracy(BEST)  # mean of the two trials
    assert b.query(BEST)["cifar10_test"] > b.query(WORST)["cifar10_test"]


def test_arch_without_all_datasets_is_skipped_quietly(bench) -> None:
    path, expected = bench
    log = Log()
    b = Benchmark.open(path, log=log)
    assert PARTIAL not in expected and PARTIAL not in b
    assert not any("skip_connect" in line for line in log)
    with pytest.raises(KeyError, match="no results"):
        b.query(PARTIAL)


def test_unknown_arch_raises_key_error(bench) -> None:
    b = Benchmark.open(bench[0], log=Log())
    with pytest.raises(KeyError, match="not-an-arch"):
        b.query("not-an-arch")


def test_second_open_reads_only_the_cache(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected = bench
    Benchmark.open(path, log=Log())
    assert json.loads(cache_path(path).read_text())["benchmark"]["name"] == path.name
    # Same name, size and mtime, unreadable content: only the cache can answer.
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def no_load(*args, **kwargs):
        raise AssertionError("the benchmark file was loaded although the cache is valid")

    monkeypatch.setattr(torch, "load", no_load)
    monkeypatch.setattr(benchmark_module, "_load_plain", no_load)
    log = Log()
    b = Benchmark.open(path, log=log)
    assert b is not None and log == []
    assert b.query(BEST) == expected[BEST]


def test_changed_file_invalidates_the_cache(bench) -> None:
    path, _ = bench
    Benchmark.open(path, log=Log())
    archs = [BEST, WORST]
    expected = write_tiny_benchmark(path, archs, accuracies={BEST: 80.0, WORST: 20.0})
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # a clearly newer file
    b = Benchmark.open(path, log=Log())
    assert len(b) == 2 and b.query(BEST) == expected[BEST]
    assert b.query(BEST)["cifar10_test"] == 80.0
    assert len(Benchmark.open(path, log=Log())) == 2


def test_unreadable_cache_is_rebuilt(bench) -> None:
    path, expected = bench
    cache_path(path).write_text("{ not json")
    log = Log()
    b = Benchmark.open(path, log=log)
    assert b.query(BEST) == expected[BEST]
    assert any("rebuilding" in line for line in log)
    assert json.loads(cache_path(path).read_text())["accuracies"][BEST] == expected[BEST]


def test_unwritable_cache_folder_keeps_answers_in_memory(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected = bench

    def refuse(*args, **kwargs):
        raise PermissionError("read-only folder")

    monkeypatch.setattr(benchmark_module.tempfile, "mkstemp", refuse)
    log = Log()
    b = Benchmark.open(path, log=log)
    assert b.query(BEST) == expected[BEST]
    assert not cache_path(path).exists()
    assert any("could not write the benchmark cache" in line for line in log)


def test_missing_file_gives_none_and_one_line(tmp_path: Path) -> None:
    log = Log()
    path = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    assert Benchmark.open(path, log=log) is None
    assert len(log) == 1
    assert str(path) in log[0] and "--api_path" in log[0] and "not found" in log[0]


def test_corrupt_file_gives_none_and_a_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    path.write_bytes(b"this is not a benchmark")
    log = Log()
    assert Benchmark.open(path, log=log) is None
    assert any(str(path) in line and "could not be read" in line for line in log)
    assert not cache_path(path).exists()


def test_old_api_without_hp_argument() -> None:
    class OldAPI:  # the 2020-02-25 API: get_more_info has no `hp`
        def get_more_info(self, index, dataset, iepoch=None, use_12epochs_result=False, is_random=True):
            return {"index": index, "dataset": dataset, "is_random": is_random}

    query = benchmark_module._more_info_200_epochs(OldAPI())
    assert query(3, "cifar100") == {"index": 3, "dataset": "cifar100", "is_random": False}


def test_file_beyond_torch_safe_load_list_still_opens(bench) -> None:
    # Files written in 2020 may hold objects (here a numpy scalar) that torch >= 2.6
    # refuses to load by default.
    path, expected = bench
    data = torch.load(path, weights_only=True)
    data["flop_budget"] = np.float64(1.5)
    torch.save(data, path)
    log = Log()
    b = Benchmark.open(path, log=log)
    assert b is not None and b.query(BEST) == expected[BEST]
    assert any("weights_only=False" in line for line in log)


def test_fixture_file_is_read_without_torch_load(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture writes torch's legacy format, as the official files are: plain data is
    # read by the restricted C unpickler, not by torch.load's (much slower) safe loader.
    path, expected = bench
    assert not zipfile.is_zipfile(path)

    def no_torch_load(*args, **kwargs):
        raise AssertionError("plain benchmark data went through torch.load")

    monkeypatch.setattr(torch, "load", no_torch_load)
    b = Benchmark.open(path, log=Log())
    assert b is not None and b.query(BEST) == expected[BEST] and len(b) == len(expected)


def test_zip_format_gives_the_same_answers(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected = bench
    torch.save(torch.load(path, weights_only=True), path)  # torch >= 1.6 format
    assert zipfile.is_zipfile(path)

    def no_torch_load(*args, **kwargs):
        raise AssertionError("plain benchmark data went through torch.load")

    monkeypatch.setattr(torch, "load", no_torch_load)
    b = Benchmark.open(path, log=Log())
    assert b is not None and len(b) == len(expected)
    assert all(b.query(arch) == values for arch, values in expected.items())


CALLS: list[str] = []


def _record(tag: str) -> str:
    CALLS.append(tag)
    return tag


class _CallsOnLoad:
    def __reduce__(self):
        return (_record, ("called on load",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_plain_loader_refuses_anything_callable_without_calling_it(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "bench.pth"
    torch.save({"meta_archs": [], "x": _CallsOnLoad()}, path, _use_new_zipfile_serialization=zip_format)
    CALLS.clear()
    assert benchmark_module._load_plain(path) is None
    assert CALLS == []
    torch.save({"meta_archs": [], "t": torch.zeros(2)}, path, _use_new_zipfile_serialization=zip_format)
    assert benchmark_module._load_plain(path) is None  # tensors: torch.load decides
    torch.save({"meta_archs": [], "o": OrderedDict(a=1)}, path, _use_new_zipfile_serialization=zip_format)
    assert benchmark_module._load_plain(path) == torch.load(path, weights_only=True)


def test_shortcut_reader_answers_as_get_more_info(bench) -> None:
    path, _ = bench
    api = NASBench201API(str(path), verbose=False)
    read_metrics = benchmark_module._metrics_reader(api)
    assert read_metrics is not None

    def more_info(index):
        infos = {d: api.get_more_info(index, d, hp="200", is_random=False) for d in benchmark_module.DATASETS}
        return {key: float(infos[dataset][field]) for key, (dataset, field) in METRICS.items()}

    outcomes = [(benchmark_module._outcome(read_metrics, i), benchmark_module._outcome(more_info, i))
                for i in range(len(api))]
    assert all(fast == slow for fast, slow in outcomes)
    assert sum(fast is None for fast, _ in outcomes) == 1  # PARTIAL
    assert benchmark_module._accuracy_reader(api) is not None


def test_shortcut_reader_that_disagrees_is_not_used(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    path, expected = bench

    def off_by_one(api):
        def read(index):
            return {key: value + 1.0 for key, value in real(api)(index).items()}
        return read

    real = benchmark_module._metrics_reader
    monkeypatch.setattr(benchmark_module, "_metrics_reader", off_by_one)
    b = Benchmark.open(path, log=Log())
    assert all(b.query(arch) == values for arch, values in expected.items())


def test_open_leaves_the_garbage_collector_as_it_was(bench) -> None:
    assert gc.isenabled()
    Benchmark.open(bench[0], log=Log())
    assert gc.isenabled()
    gc.disable()
    try:
        cache_path(bench[0]).unlink()
        Benchmark.open(bench[0], log=Log())
        assert not gc.isenabled()
    finally:
        gc.enable()
