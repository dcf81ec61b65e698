"""Training a genotype from scratch (sota.train) through the real exp_scripts/eval*.sh, at tiny sizes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from sota.genotypes import genotype_to_dict, get_genotype, register_genotype
from sota.model_eval import NetworkCIFAR, count_parameters_mb
from tests.conftest import TEST_GPU, fails, kill_when, partial_after, read_json, run_script

pytestmark = pytest.mark.slow  # end to end through the exp_scripts

TINY = ["--init_channels", "4", "--layers", "3", "--batch_size", "16", "--report_freq", "100",
        "--gpu", TEST_GPU, "--no_tensorboard"]
RESULT_KEYS = {"status", "kind", "arch", "genotype", "dataset", "seed", "fast", "epochs", "epochs_done",
               "init_channels", "layers", "batch_size", "auxiliary", "nproc", "sync_bn", "params_mb", "best_test_acc",
               "final_test_acc", "final_test_error", "train_time_s"}


@pytest.fixture(scope="module")
def env(tmp_path_factory, cifar10_dir) -> list[str]:
    exp = tmp_path_factory.mktemp("exp")
    return ["--data", str(cifar10_dir), "--exp_root", str(exp), *TINY]


def eval_dir(env: list[str]) -> Path:
    return Path(env[env.index("--exp_root") + 1]) / "sota" / "cifar10" / "eval"


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def published_run(env) -> Path:
    """eval.sh's default genotype (darts_pt_s5_0), auxiliary head and cutout, 2 epochs."""
    run_script("eval.sh", *env, "--epochs", "2")
    return eval_dir(env) / "eval-darts_pt_s5_0-2"


def test_published_genotype_trains_and_reports(published_run):
    result = read_json(published_run / "result.json")
    assert set(result) == RESULT_KEYS
    genotype = get_genotype("darts_pt_s5_0")
    assert result["status"] == "finished" and result["kind"] == "eval" and result["arch"] == "darts_pt_s5_0"
    assert result["genotype"] == genotype_to_dict(genotype)
    assert (result["dataset"], result["seed"], result["epochs"], result["epochs_done"]) == ("cifar10", 2, 2, 2)
    assert (result["init_channels"], result["layers"], result["auxiliary"]) == (4, 3, True)
    assert (result["nproc"], result["sync_bn"]) == (1, False)
    assert 0 <= result["final_test_acc"] <= result["best_test_acc"] <= 100
    assert result["final_test_error"] == pytest.approx(100 - result["final_test_acc"])
    assert result["train_time_s"] > 0
    net = NetworkCIFAR(4, 10, 3, True, genotype)
    assert result["params_mb"] == pytest.approx(count_parameters_mb(net))

    history = [json.loads(l) for l in (published_run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[0]["drop_path_prob"] == 0 and history[1]["drop_path_prob"] == pytest.approx(0.1)
    assert history[0]["lr"] == pytest.approx(0.025) and history[1]["lr"] == pytest.approx(0.0125)
    assert history[-1]["test_acc"] == result["final_test_acc"]

    ckpt = torch.load(published_run / "checkpoint_2.pth.tar", weights_only=True)
    assert {"epoch", "state_dict", "optimizer", "scheduler", "best_acc", "rng", "train_time"} <= set(ckpt)
    # NetworkCIFAR's own layout, auxiliary head (fed the 8x8 map after cell 2) included
    expected = {k: v.shape for k, v in net.state_dict().items()}
    assert {k: v.shape for k, v in ckpt["state_dict"].items()} == expected
    assert any(k.startswith("auxiliary_head.") for k in expected)
    log = (published_run / "log.txt").read_text()
    assert f"params {count_parameters_mb(net):.3f} M (without the auxiliary head)\n" in log  # millions, not MB
    assert "(torch.channels_last)" in log  # the faster CPU layout by default
    assert "threads 1 (OMP_NUM_THREADS=1 in the environment; --threads N to change)" in log  # tests/conftest.py
    # the configuration: the script's and the command's settings in the log, all of it in config.json
    assert "  arch=darts_pt_s5_0 data=" in log and "EvalConfig(" not in log
    config = read_json(published_run / "config.json")
    assert config["config"] == "EvalConfig" and config["layers"] == 3 and config["optim"]["momentum"] == 0.9


def test_existing_folder_is_refused_and_left_alone(env, published_run):
    before = tree_digest(published_run)
    msg = fails("eval.sh", *env, "--epochs", "2")
    assert "already exists" in msg and "--resume_epoch" in msg and "--overwrite" in msg and "--expid_tag" in msg
    assert tree_digest(published_run) == before


def test_unknown_arch_fails_clearly_and_creates_nothing(env):
    proc = run_script("eval.sh", *env, "--arch", "darts_pt_s5_O", check=False)
    msg = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in msg
    assert "unknown genotype 'darts_pt_s5_O'; close matches: " in msg and "darts_pt_s5_0" in msg
    assert not list(eval_dir(env).glob("eval-darts_pt_s5_O-*"))


def test_svhn_script_trains_a_registered_genotype(tmp_path, svhn_dir):
    """As after a projection run: the genotype it registered is found by name."""
    genotype = get_genotype("DARTS_V1")
    register_genotype("my_cell", genotype, tmp_path / "sota" / "genotypes")
    run_script("eval-svhn.sh", "--data", str(svhn_dir), "--exp_root", str(tmp_path), *TINY,
               "--arch", "my_cell", "--epochs", "1", "--fast")
    result = read_json(tmp_path / "sota" / "svhn" / "eval" / "eval-my_cell-2" / "result.json")
    assert result["status"] == "finished" and result["dataset"] == "svhn" and result["epochs_done"] == 1
    assert result["genotype"] == genotype_to_dict(genotype)


def test_genotype_literal(env):
    genotype = get_genotype("DARTS_V2")
    run_script("eval.sh", *env, "--arch", repr(genotype), "--epochs", "1", "--fast", "--memory_format", "contiguous")
    folders = list(eval_dir(env).glob("eval-custom-*-2"))
    assert len(folders) == 1 and len(folders[0].name) == len("eval-custom-12345678-2")
    assert "(torch.contiguous_format)" in (folders[0] / "log.txt").read_text()  # the flag reaches the run
    result = read_json(folders[0] / "result.json")
    assert result["arch"] == folders[0].name[len("eval-"):-len("-2")]
    assert result["genotype"] == genotype_to_dict(genotype)


def test_kill_and_resume_matches_uninterrupted(env, published_run):
    cut = eval_dir(env) / "eval-darts_pt_s5_0-2-cut"
    kill_when("eval.sh", [*env, "--epochs", "2", "--expid_tag", "cut"], cut / "checkpoint_1.pth.tar")
    (cut / "checkpoint_2.pth.tar").unlink(missing_ok=True)  # as if the kill came right after checkpoint 1
    run_script("eval.sh", *env, "--epochs", "2", "--expid_tag", "cut", "--resume_epoch", "-1")
    a, b = (read_json(f / "result.json") for f in (published_run, cut))
    assert b["status"] == "finished"
    assert (a["final_test_acc"], a["best_test_acc"]) == (b["final_test_acc"], b["best_test_acc"])
    ha, hb = ((f / "history.jsonl").read_text().splitlines() for f in (published_run, cut))
    assert len(hb) == 2 and ha == hb  # every epoch's losses and accuracies, to the last bit
    sa, sb = (torch.load(f / "checkpoint_2.pth.tar", weights_only=True)["state_dict"] for f in (published_run, cut))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_killed_mid_epoch_and_resumed_matches_uninterrupted(env, published_run):
    """--ckpt_steps 2 (6 steps an epoch): killed after a mid-epoch checkpoint of the second epoch
    (drop path and cutout on), resumed from it: the batches, masks and running sums continue."""
    cut = eval_dir(env) / "eval-darts_pt_s5_0-2-mid"
    args = [*env, "--epochs", "2", "--expid_tag", "mid"]
    kill_when("eval.sh", [*args, "--ckpt_steps", "2"], partial_after(cut, 1))
    step = torch.load(cut / "checkpoint_partial.pth.tar", weights_only=True)["step"]
    resumed = run_script("eval.sh", *args, "--resume_epoch", "-1")  # --ckpt_steps may differ: 0 here
    assert f"resumed from epoch 1 step {step} (checkpoint_partial.pth.tar)" in resumed.stdout
    ha, hb = ((f / "history.jsonl").read_text().splitlines() for f in (published_run, cut))
    assert len(hb) == 2 and ha == hb
    sa, sb = (torch.load(f / "checkpoint_2.pth.tar", weights_only=True)["state_dict"] for f in (published_run, cut))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
