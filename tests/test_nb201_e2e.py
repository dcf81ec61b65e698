"""NAS-Bench-201 end to end through the real exp_scripts: search, projection, resume, bad inputs."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from nasbench201.genotypes import parse_arch
from tests.conftest import REPO, TEST_GPU, _script_env, fails, kill_when, read_json, run_script

pytestmark = pytest.mark.slow  # end to end through the exp_scripts

TINY = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100",
        "--gpu", TEST_GPU, "--no_tensorboard"]


@pytest.fixture(scope="module")
def env(tmp_path_factory, cifar10_dir, bench) -> list[str]:
    exp = tmp_path_factory.mktemp("exp")
    return ["--data", str(cifar10_dir), "--exp_root", str(exp), "--api_path", str(bench[0]), *TINY]


def exp_dir(env: list[str]) -> Path:
    return Path(env[env.index("--exp_root") + 1]) / "nasbench201"


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("method", ["darts", "blank"])
def test_search_then_projection(env, bench, method):
    run_script(f"{method}-201.sh", *env, "--epochs", "2", "--ckpt_interval", "1")
    folder = exp_dir(env) / f"search-{method}-201-1"
    result = read_json(folder / "result.json")
    assert result["status"] == "finished" and result["method"] == method and result["seed"] == 1
    assert result["benchmark"] == bench[1][result["genotype"]]
    assert {p.name for p in folder.glob("checkpoint_*")} == {"checkpoint_1.pth.tar", "checkpoint_2.pth.tar"}
    alphas = [torch.load(folder / f"checkpoint_{e}.pth.tar", weights_only=True)["alpha"][0] for e in (1, 2)]
    assert torch.equal(alphas[0], alphas[1]) == (method == "blank")  # fix-alpha never moves alpha

    run_script(f"{method}-proj-201.sh", *env, "--resume_epoch", "2", "--proj_intv", "1")
    proj = folder / f"{method}-proj-201-seed1-acc-intv1-ep2"
    result = read_json(proj / "result.json")
    assert result["status"] == "finished"
    assert len(parse_arch(result["genotype"])) == 3
    assert result["benchmark"] == bench[1][result["genotype"]]
    assert result["search_time_s"] > 0 and result["projection_time_s"] > 0
    # six projections, one per edge: the final supernet is one-hot on every edge
    last = torch.load(proj / "checkpoint_6.pth.tar", weights_only=True)  # the tuned, projected supernet
    assert last["projections"] == 6 and all(last["projection"]["decided"]["cell"])
    # tuning runs at a tenth of the search learning rate, kept constant
    first = torch.load(proj / "checkpoint_0.pth.tar", weights_only=True)
    assert first["optimizer"]["param_groups"][0]["lr"] == last["optimizer"]["param_groups"][0]["lr"] == 0.0025
    assert all(int(row.sum()) == 1 and int((row != 0).sum()) == 1 for row in last["projection"]["proj_weights"]["cell"])
    history = [json.loads(l) for l in (proj / "history.jsonl").read_text().splitlines() if l]
    assert len(history) == 6
    # no test-set passes the original did not make (NAS-Bench-201 search and tuning: alpha half only)
    searched = [json.loads(l) for l in (folder / "history.jsonl").read_text().splitlines() if l]
    assert all("valid_acc" in r and "test_acc" not in r for r in history + searched)
    assert "test-set evaluation while searching: never (as the original" in (folder / "log.txt").read_text()
    for log in (folder / "log.txt", proj / "log.txt"):  # tests/conftest.py's one thread
        assert "threads 1 (OMP_NUM_THREADS=1 in the environment; --threads N to change)" in log.read_text()


def test_search_kill_and_resume_matches_uninterrupted(env):
    args = [*env, "--epochs", "3", "--ckpt_interval", "1", "--seed", "5"]
    run_script("darts-201.sh", *args, "--expid_tag", "full")
    killed = exp_dir(env) / "search-darts-201-5-cut"
    kill_when("darts-201.sh", [*args, "--expid_tag", "cut"], killed / "checkpoint_1.pth.tar")
    for later in (killed / "checkpoint_2.pth.tar", killed / "checkpoint_3.pth.tar"):
        later.unlink(missing_ok=True)  # as if the kill came right after checkpoint 1
    run_script("darts-201.sh", *args, "--expid_tag", "cut", "--resume_epoch", "-1")
    full = exp_dir(env) / "search-darts-201-5-full"
    assert read_json(killed / "result.json")["genotype"] == read_json(full / "result.json")["genotype"]
    a, b = (torch.load(f / "checkpoint_3.pth.tar", weights_only=True) for f in (full, killed))
    assert torch.equal(a["alpha"][0], b["alpha"][0])
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert len((killed / "history.jsonl").read_text().splitlines()) == 3


def test_projection_kill_and_resume_matches_uninterrupted(env):
    run_script("darts-201.sh", *env, "--epochs", "1", "--seed", "7")
    proj = [*env, "--seed", "7", "--resume_epoch", "1", "--proj_intv", "1"]
    run_script("darts-proj-201.sh", *proj, "--log_tag", "full")
    base = exp_dir(env) / "search-darts-201-7"
    cut = base / "darts-proj-201-seed7-acc-intv1-ep1-cut"
    kill_when("darts-proj-201.sh", [*proj, "--log_tag", "cut"], cut / "checkpoint_2.pth.tar")
    for e in range(3, 7):
        (cut / f"checkpoint_{e}.pth.tar").unlink(missing_ok=True)
    out = run_script("darts-proj-201.sh", *proj, "--log_tag", "cut")  # resumes by itself
    assert "resumed projection at tuning epoch 2" in out.stdout
    full = read_json(base / "darts-proj-201-seed7-acc-intv1-ep1-full" / "result.json")
    resumed = read_json(cut / "result.json")
    assert resumed["genotype"] == full["genotype"] and resumed["benchmark"] == full["benchmark"]
    # a finished projection is never redone silently
    again = run_script("darts-proj-201.sh", *proj, "--log_tag", "cut", check=False)
    assert again.returncode != 0 and "already finished" in again.stdout + again.stderr


def test_original_layout_checkpoint_loads(env, tmp_path):
    """A checkpoint as the original code wrote it (alpha as a Parameter list, no RNG state)."""
    from nasbench201.model_search import NB201Supernet

    model = NB201Supernet(4, 1, 10)
    alpha = torch.nn.Parameter(1e-3 * torch.randn(6, 5))
    w_opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9)
    a_opt = torch.optim.Adam([alpha], 3e-4, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, 100.0, eta_min=0.001)
    folder = exp_dir(env) / "search-original-1"
    folder.mkdir(parents=True)
    torch.save({"epoch": 100, "state_dict": model.state_dict(), "alpha": [alpha],
                "optimizer": w_opt.state_dict(), "arch_optimizer": a_opt.state_dict(),
                "scheduler": sched.state_dict()}, folder / "checkpoint_100.pth.tar")
    run_script("darts-proj-201.sh", *env, "--resume_expid", "search-original-1", "--resume_epoch", "-1",
               "--proj_intv", "1")
    assert read_json(folder / "darts-proj-201-seed1-acc-intv1-ep100" / "result.json")["status"] == "finished"


def test_bad_inputs_fail_clearly_and_change_nothing(env, tmp_path):
    run_script("darts-201.sh", *env, "--epochs", "1", "--seed", "9")
    folder = exp_dir(env) / "search-darts-201-9"
    before = tree_digest(folder)

    msg = fails("darts-201.sh", *env, "--epochs", "1", "--seed", "9")
    assert "already exists" in msg and "--resume_epoch" in msg and "--overwrite" in msg and "--expid_tag" in msg
    msg = fails("darts-201.sh", *env, "--seed", "9", "--dataset", "mnist")
    assert "mnist" in msg and "cifar10" in msg
    msg = fails("darts-proj-201.sh", *env, "--resume_expid", "search-nope-1")
    assert "search-nope-1" in msg and "does not exist" in msg
    msg = fails("darts-proj-201.sh", *env, "--seed", "9", "--resume_epoch", "7")
    assert "checkpoint_7.pth.tar not found" in msg and "[1]" in msg
    assert tree_digest(folder) == before

    empty = tmp_path / "nodata"
    empty.mkdir()
    msg = fails("darts-201.sh", *env, "--seed", "10", "--data", str(empty), env={"DARTS_PT_OFFLINE": "1"})
    assert str(empty) in msg and "cifar-10-batches-py" in msg
    assert not (exp_dir(env) / "search-darts-201-10").exists()

    (folder / "checkpoint_1.pth.tar").write_bytes(b"not a checkpoint")
    msg = fails("darts-proj-201.sh", *env, "--seed", "9", "--resume_epoch", "1")
    assert "cannot read checkpoint" in msg


def test_divergence_stops_with_clear_message(env):
    msg = fails("darts-201.sh", *env, "--epochs", "2", "--seed", "11", "--learning_rate", "1e12",
                 "--report_freq", "1")
    assert "diverged" in msg
    folder = exp_dir(env) / "search-darts-201-11"
    assert read_json(folder / "result.json")["status"] == "failed"
    assert not list(folder.glob("checkpoint_*"))


def test_checkpoint_reading_runs_no_code(tmp_path):
    """weights_only loading: a pickle that would run code is refused, not executed."""
    from common.checkpoint import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"epoch": 1, "evil": Evil()}, tmp_path / "evil.pth.tar")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pth.tar")
    assert not marker.exists()


def test_imagefolder_search_writes_tensorboard(tmp_path, bench):
    """A researcher's own ImageFolder data, with TensorBoard on: scalars, and alpha heat-maps
    when asked (--alpha_heatmaps)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.fixtures.datasets import write_imagefolder

    write_imagefolder(tmp_path / "mydata", classes=("cat", "dog", "emu"), n_per_class=8, n_test_per_class=4)
    args = ["--data", str(tmp_path / "mydata"), "--dataset", "imagefolder", "--image_size", "16",
            "--exp_root", str(tmp_path / "exp"), "--api_path", str(bench[0]),
            *[a for a in TINY if a != "--no_tensorboard"], "--epochs", "1", "--eval_freq", "1"]
    run_script("darts-201.sh", *args, "--alpha_heatmaps")
    folder = tmp_path / "exp" / "nasbench201" / "search-darts-201-1-imagefolder"
    result = read_json(folder / "result.json")
    assert result["status"] == "finished" and result["benchmark"] is None  # no benchmark for own data
    events = EventAccumulator(str(folder), size_guidance={"images": 0}).Reload()
    assert {"train_acc", "valid_acc", "test_acc", "train_loss"} <= set(events.Tags()["scalars"])
    assert "alpha/cell" in events.Tags()["images"]


def test_projecting_an_early_checkpoint_first_trains_up_to_epochs(env):
    """As the original: --resume_epoch below --epochs trains the supernet the remaining search
    epochs (in the projection folder) before projecting; the result equals the search's own
    later checkpoint, bit for bit. --epochs left out is the search run's own; the log's first
    line says what will run, and the folder's name the search-epoch target."""
    args = [*env, "--ckpt_interval", "1", "--seed", "8"]
    run_script("darts-201.sh", *args, "--epochs", "2")
    search = exp_dir(env) / "search-darts-201-8"
    proc = run_script("darts-proj-201.sh", *args, "--resume_epoch", "1", "--proj_intv", "1")
    assert "1 more search epochs run before projecting, up to --epochs 2" in proc.stdout
    proj = search / "darts-proj-201-seed8-acc-intv1-ep1-to2"
    first = (proj / "log.txt").read_text().splitlines()[0]
    assert "projecting" in first and "1 more search epochs, up to --epochs 2 (the search run's)" in first
    result = read_json(proj / "result.json")
    assert result["status"] == "finished" and result["supernet_trained_to"] == 2 and result["supernet_epoch"] == 2
    trained, searched = (torch.load(p, weights_only=True) for p in (proj / "supernet_2.pth.tar",
                                                                    search / "checkpoint_2.pth.tar"))
    assert torch.equal(trained["alpha"][0], searched["alpha"][0])
    for k, v in searched["state_dict"].items():
        assert torch.equal(trained["state_dict"][k], v), k
    assert [json.loads(l)["epoch"] for l in (proj / "search_history.jsonl").read_text().splitlines()] == [1]

    # --epochs equal to --resume_epoch projects the intermediate supernet as it is
    proc = run_script("darts-proj-201.sh", *args, "--resume_epoch", "1", "--epochs", "1", "--proj_intv", "1",
                      "--log_tag", "asis")
    assert "checkpoint_1.pth.tar as it is (search epoch 1: given; --epochs 1: given)" in proc.stdout
    as_is = search / "darts-proj-201-seed8-acc-intv1-ep1-asis"
    assert "more search epochs" not in proc.stdout and not list(as_is.glob("supernet_*"))
    result = read_json(as_is / "result.json")
    assert result["supernet_epoch"] == 1 and "supernet_trained_to" not in result


def test_a_finished_search_is_projected_with_resume_expid_alone(env):
    """--resume_epoch left out is the search run's last epoch (its result.json), whatever its length."""
    run_script("darts-201.sh", *env, "--epochs", "3", "--seed", "13")
    search = exp_dir(env) / "search-darts-201-13"
    proc = run_script("darts-proj-201.sh", *env, "--resume_expid", "search-darts-201-13", "--proj_intv", "1")
    proj = search / "darts-proj-201-seed1-acc-intv1-ep3"
    assert read_json(proj / "result.json")["status"] == "finished"
    first = (proj / "log.txt").read_text().splitlines()[0]
    assert first.endswith("checkpoint_3.pth.tar as it is (search epoch 3: the search run's last, from its "
                          "result.json; --epochs 3: the search run's)"), first
    assert "more search epochs" not in proc.stdout and not list(proj.glob("supernet_*"))


def test_a_live_or_interrupted_search_is_never_projected(env):
    """A search still running in another process, then stopped by SIGTERM before its last epoch:
    its projection is refused in one line each time, before anything is written (the original
    took the latest checkpoint and trained the rest of the search itself, in the same folder)."""
    args = [*env, "--seed", "12", "--ckpt_interval", "1"]
    search = exp_dir(env) / "search-darts-201-12"
    live = subprocess.Popen(["bash", str(REPO / "exp_scripts" / "darts-201.sh"), *args, "--epochs", "1000"], cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_script_env(None),
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (search / "checkpoint_1.pth.tar").exists() and live.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        # a refusal takes seconds; the original's projection would train 1000 search epochs
        out = fails("darts-proj-201.sh", *args, "--resume_epoch", "-1", "--proj_intv", "1", timeout=120)
        assert live.poll() is None, "the search ended before its projection was refused"
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "is still running (process " in errors[0], out
        assert "project it once it has finished" in errors[0] and "--epochs 1000" not in errors[0]
        assert not [p for p in search.iterdir() if p.is_dir()]  # no projection folder in the live search's
    finally:
        os.killpg(live.pid, signal.SIGTERM)
        live.wait()
    assert read_json(search / "result.json")["status"] == "interrupted"
    before = tree_digest(search)
    out = fails("darts-proj-201.sh", *args, "--proj_intv", "1")
    assert "was interrupted by SIGTERM before its last epoch" in out and "continue it" in out
    # the epochs' checkpoints (a SIGTERM mid-epoch also leaves checkpoint_partial.pth.tar, which is none)
    last = max(int(p.name.split("_")[1].split(".")[0]) for p in search.glob("checkpoint_[0-9]*.pth.tar"))
    assert f"or pass --resume_epoch {last} --epochs {last} to project checkpoint {last} as it is" in out
    assert tree_digest(search) == before
