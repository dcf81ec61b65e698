"""Shared infrastructure: device choice, atomic checkpoints, experiment folders, alpha state."""
from __future__ import annotations

import os

import pytest
import torch

from common.arch import Architecture
from common.checkpoint import checkpoint_epochs, load_checkpoint, save_checkpoint
from common.device import select_device
from common.experiment import ExperimentError, new_run_dir


def test_device_choice_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no such CUDA device"):
        select_device("0")
    with pytest.raises(ValueError, match="auto"):
        select_device("gpu-please")


def test_auto_picks_the_least_used_visible_gpu(monkeypatch):
    """gpustat numbers all GPUs (NVML order); torch only the visible ones: matched by UUID."""
    import gpustat

    class Gpu:
        def __init__(self, index, used):
            self.index, self.memory_used, self.uuid = index, used, f"GPU-0000000{index}-aaaa"

    # CUDA_VISIBLE_DEVICES=3,1 -> torch's cuda:0 is NVML's GPU 3, cuda:1 is GPU 1.
    visible = [f"0000000{i}-AAAA" for i in (3, 1)]
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(visible))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"uuid": visible[i]})())
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    gpus = [Gpu(0, 5), Gpu(1, 900), Gpu(2, 10), Gpu(3, 500)]  # 0 and 2 are idle but not visible
    monkeypatch.setattr(gpustat, "new_query", lambda: type("Q", (), {"gpus": gpus})())
    assert select_device("auto") == torch.device("cuda:0") and current == [0]  # GPU 3: 500 < 900
    gpus[3].memory_used = 1000
    assert select_device("auto") == torch.device("cuda:1") and current == [0, 1]
    assert select_device("1") == torch.device("cuda:1")
    monkeypatch.setattr(gpustat, "new_query", lambda: 1 / 0)  # no NVML
    assert select_device("auto") == torch.device("cuda:0")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_1.pth.tar"
    save_checkpoint({"epoch": 1}, path)
    real_save = torch.save

    def crash(obj, f):
        real_save(obj, f)
        raise KeyboardInterrupt  # killed after writing, before the rename

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2}, path)
    assert load_checkpoint(path)["epoch"] == 1  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["checkpoint_1.pth.tar"]  # and no temp file is left
    assert checkpoint_epochs(tmp_path) == [1]


def test_existing_folder_is_never_overwritten(tmp_path):
    run = tmp_path / "search-x-1"
    new_run_dir(run, resume=False, overwrite=False)
    (run / "keep.txt").write_text("results")
    with pytest.raises(ExperimentError, match="--resume_epoch"):
        new_run_dir(run, resume=False, overwrite=False)
    new_run_dir(run, resume=False, overwrite=True)  # moved aside, not deleted
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("search-x-1.old-")]
    assert len(aside) == 1 and (aside[0] / "keep.txt").read_text() == "results"
    assert not (run / "keep.txt").exists()


def test_projected_edges_are_one_hot_and_state_round_trips():
    arch = Architecture({"normal": (14, 7), "reduce": (14, 7)})
    arch.project_op("normal", 3, 5)
    arch.drop_edges("normal", 2, [2])
    w = arch.weights()
    assert torch.equal(w["normal"][3], torch.eye(7)[5]) and not w["normal"][2].any()
    assert torch.equal(w["reduce"], torch.softmax(arch.alphas["reduce"], -1))
    assert arch.active()["normal"][3] == [5] and arch.active()["normal"][2] == []
    assert arch.undecided_edges("normal") == [e for e in range(14) if e not in (2, 3)]
    # gradients reach undecided rows only
    w["normal"].sum().backward()
    assert arch.alphas["normal"].grad[3].abs().sum() == 0
    other = Architecture({"normal": (14, 7), "reduce": (14, 7)})
    other.load_projection_state(arch.projection_state())
    other.load_alpha_list(arch.alpha_list())
    for k in ("normal", "reduce"):
        assert torch.equal(other.weights()[k], arch.weights()[k])
    with pytest.raises(ValueError, match="shape"):
        other.load_alpha_list([torch.zeros(14, 3), torch.zeros(14, 3)])


def test_cuda_rng_state_is_the_run_devices_own(monkeypatch):
    """Only the run's GPU generator is saved and restored, so a run resumes on another GPU
    (or where fewer are visible); older checkpoints' per-GPU lists still load."""
    from common.checkpoint import rng_state, set_rng_state

    saved, restored = torch.tensor([7], dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: saved if device == torch.device("cuda:1") else None)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    assert "cuda" not in rng_state("cpu")
    state = rng_state(torch.device("cuda:1"))
    assert state["cuda"] is saved
    set_rng_state(state, torch.device("cuda:0"))
    set_rng_state(state, "cpu")  # a CUDA run resumed on the CPU: nothing to restore
    old = {**state, "cuda": [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)]}
    set_rng_state(old, torch.device("cuda:1"))
    set_rng_state(old, torch.device("cuda:5"))  # saved where fewer GPUs were visible: skipped
    assert [(int(s), d) for s, d in restored] == [(7, torch.device("cuda:0")), (2, torch.device("cuda:1"))]


def _draws() -> tuple:
    """The next numbers of every global generator a run uses."""
    import random

    import numpy as np

    return torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(1).tolist(), random.random()


def test_rng_state_restores_every_generator():
    from common.checkpoint import rng_state, set_rng_state

    torch.manual_seed(1)
    state = rng_state()
    expected = _draws()
    assert _draws() != expected  # the generators moved on
    set_rng_state(state)
    assert _draws() == expected


def test_a_loaded_search_checkpoint_resumes_the_generators(tmp_path):
    """A resumed run draws what the uninterrupted one would have drawn next: the checkpoint's
    RNG state, not the seed's, after `load_search_checkpoint`."""
    from common.checkpoint import rng_state
    from common.search import load_search_checkpoint
    from common.space import Space
    from common.trainer import Trainer
    from tests.fixtures.configs import search_cfg

    def trainer() -> Trainer:
        space = Space(label="toy", model=torch.nn.Linear(2, 2), arch=Architecture({"cell": (1, 2)}), op_names={},
                      edge_names=[], genotype=lambda w: None)
        return Trainer(space, None, search_cfg(), torch.device("cpu"))

    torch.manual_seed(1)
    path = tmp_path / "checkpoint_1.pth.tar"
    save_checkpoint({"epoch": 1, **trainer().state(), "rng": rng_state()}, path)
    expected = _draws()
    torch.manual_seed(2)  # elsewhere in the generators
    load_search_checkpoint(trainer(), path)
    assert _draws() == expected


def test_alpha_heatmaps_only_when_asked(tmp_path):
    """Drawing softmax(alpha) figures costs more than a tiny search epoch and the original did
    not: TensorBoard gets them only with --alpha_heatmaps (scalars always)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from common.experiment import Board

    for heatmaps in (False, True):
        folder = tmp_path / str(heatmaps)
        board = Board(folder, heatmaps=heatmaps)
        board.scalars({"valid_acc": 50.0}, 0)
        board.heatmap("alpha/cell", torch.full((6, 5), 0.2), [str(i) for i in range(6)], list("abcde"), 0)
        board.close()
        tags = EventAccumulator(str(folder), size_guidance={"images": 0}).Reload().Tags()
        assert tags["scalars"] == ["valid_acc"]
        assert tags["images"] == (["alpha/cell"] if heatmaps else [])
