"""Studies (exp_scripts/study.sh): plans, the local executor, resume, retry, Slurm through submitit.

Real tiny runs (NAS-Bench-201 with one cell per stage, a 3-cell S2 supernet, 32 images,
--fast) through the real exp_scripts; Slurm through fake sbatch/squeue/srun commands (the
sbatch files submitit writes) and through submitit's local cluster (a real chain). The
local-executor tests grow one study ("grid") in file order.
"""
from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_GPU, _script_env, read_json, run_script, time_limit

pytestmark = pytest.mark.slow  # end to end: real studies through exp_scripts/study.sh

NB201_GRID = ["--space", "nb201", "--dataset", "cifar10", "--method", "darts"]
FAKE_SLURM = {  # sbatch keeps each script and answers with the next job id; squeue prints a file
    "sbatch": 'n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$FAKE_SLURM/next"\n'
              'cp "$1" "$FAKE_SLURM/job-$n.sh"; echo "Submitted batch job $n"',
    "squeue": 'cat "$FAKE_SLURM/queue" 2>/dev/null || true',
    "srun": "exit 0",
}


@pytest.fixture(scope="module")
def data(small_cifar10) -> Path:
    return small_cifar10


def tiny(data: Path, *extra: str) -> list[str]:
    """Run flags of a tiny study: every run on 32 images, one batch per pass."""
    return ["--data", str(data), "--batch_size", "16", "--init_channels", "4", "--num_cells", "1",
            "--layers", "3", "--report_freq", "100", "--no_tensorboard", "--fast", "--epochs", "2",
            "--ckpt_interval", "1", "--proj_intv", "1", "--gpu", TEST_GPU, *extra]


# A tiny study command takes seconds to a minute; one that hangs (say, rerunning finished runs
# forever) fails after this long rather than the default 10 minutes.
STUDY_LIMIT = 300


def study(root: Path, name: str, *args: str, check: bool = True, env: dict | None = None):
    return run_script("study.sh", "--name", name, "--exp_root", str(root), *args, check=check, env=env,
                      timeout=STUDY_LIMIT)


def in_process(capsys, root: Path, name: str, *args: str) -> tuple[int, str, str]:
    """python -m study in this process (no interpreter start-up): exit code, stdout, stderr."""
    from study.__main__ import main

    capsys.readouterr()
    with time_limit(STUDY_LIMIT, f"python -m study --name {name}"):
        code = main(["--name", name, "--exp_root", str(root), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def manifest(root: Path, name: str) -> dict[str, dict]:
    return {r["id"]: r for r in read_json(root / "studies" / name / "study.json")["runs"]}


def log_headers(log: str | Path) -> list[str]:
    return [l for l in Path(log).read_text().splitlines() if l.startswith("==== ")]


def snapshot(root: Path, name: str) -> dict[str, object]:
    """Every run's timings and its log file: what a rerun that starts nothing leaves alone."""
    runs = manifest(root, name)
    return {rid: (r["started"], r["ended"], r["elapsed_s"], r["attempts"],
                  Path(r["log"]).read_text() if Path(r["log"]).exists() else None) for rid, r in runs.items()}


# -- the local executor: one study, grown test by test ------------------------------------------

@pytest.fixture(scope="module")
def grid(tmp_path_factory, data) -> tuple[Path, list[str], subprocess.CompletedProcess]:
    """NAS-Bench-201 DARTS, seeds 1 and 2, search and projection, two runs at a time."""
    root = tmp_path_factory.mktemp("grid")
    flags = tiny(data, "--eval.epochs", "1")
    proc = study(root, "grid", *NB201_GRID, "--seed", "1,2", "--stages", "search,proj", "--jobs", "2", *flags)
    return root, flags, proc


def test_local_study_runs_chains_two_at_a_time(grid):
    root, _, proc = grid
    sdir = root / "studies" / "grid"
    runs = manifest(root, "grid")
    assert list(runs) == [f"nb201-cifar10-darts-seed{s}-{st}" for s in (1, 2) for st in ("search", "proj")]
    for rid, r in runs.items():
        assert r["state"] == "finished" and r["exit_code"] == 0 and r["attempts"] == 1, rid
        assert read_json(Path(r["folder"]) / "result.json")["status"] == "finished"
        assert r["elapsed_s"] > 0 and r["started"] < r["ended"]
        assert len(log_headers(r["log"])) == 1 and Path(r["log"]).parent == sdir / "logs"
        assert f"finished {rid} in " in proc.stdout and f"start    {rid} on " in proc.stdout
    search, proj = runs["nb201-cifar10-darts-seed1-search"], runs["nb201-cifar10-darts-seed1-proj"]
    # the commands are the exp_scripts a user would type, with the study's runs folder
    assert search["command"][:2] == ["bash", str(REPO / "exp_scripts" / "darts-201.sh")]
    assert shlex.join(["--seed", "1", "--dataset", "cifar10", "--exp_root", str(sdir / "runs")]) in \
        shlex.join(search["command"])
    assert proj["command"][1].endswith("darts-proj-201.sh") and proj["depends_on"] == search["id"]
    assert "--resume_expid search-darts-201-1 --resume_epoch -1" in shlex.join(proj["command"])
    assert search["folder"] == str(sdir / "runs" / "nasbench201" / "search-darts-201-1")
    assert proj["folder"] == search["folder"] + "/darts-proj-201-seed1-acc-intv1-ep2"
    # --jobs 2: the two searches ran at the same time; a projection started after its search ended
    t = {rid: (datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["ended"])) for rid, r in runs.items()}
    s1, s2 = t["nb201-cifar10-darts-seed1-search"], t["nb201-cifar10-darts-seed2-search"]
    assert s1[0] < s2[1] and s2[0] < s1[1]
    for seed in (1, 2):
        assert t[f"nb201-cifar10-darts-seed{seed}-proj"][0] >= t[f"nb201-cifar10-darts-seed{seed}-search"][1]
    assert f"report: python -m analysis {sdir} --include_fast (its runs are --fast smoke runs)" in proc.stdout


def test_rerun_starts_nothing(grid):
    root, flags, _ = grid
    before = snapshot(root, "grid")
    proc = study(root, "grid", *NB201_GRID, "--seed", "1,2", "--stages", "search,proj", "--jobs", "2", *flags)
    assert "4 runs: 4 finished, 0 to do" in proc.stdout and " start " not in proc.stdout
    assert snapshot(root, "grid") == before


def test_status_and_dry_run(grid, capsys):
    root, flags, _ = grid
    sdir = root / "studies" / "grid"
    out = study(root, "grid", "--status").stdout
    line = next(l for l in out.splitlines() if l.startswith("nb201-cifar10-darts-seed2-search"))
    assert line.split()[1:4] == ["finished", "2/2", "epochs"] and "runs/nasbench201/search-darts-201-2" in line
    assert "6 tuning epochs" in next(l for l in out.splitlines() if l.startswith("nb201-cifar10-darts-seed1-proj"))

    files = sorted(p for p in sdir.rglob("*"))
    manifest_bytes = (sdir / "study.json").read_bytes()
    code, out, _ = in_process(capsys, root, "grid", *NB201_GRID, "--seed", "1,3", "--stages", "search,proj",
                           *flags, "--dry_run")
    lines = {l.split()[0]: l for l in out.splitlines() if l.startswith("nb201-")}
    assert code == 0 and len(lines) == 4
    assert lines["nb201-cifar10-darts-seed1-search"].split()[1] == "finished"
    assert lines["nb201-cifar10-darts-seed3-proj"].split()[1:4] == ["planned", "after",
                                                                    "nb201-cifar10-darts-seed3-search"]
    assert "darts-proj-201.sh --seed 3" in lines["nb201-cifar10-darts-seed3-proj"]
    assert sorted(p for p in sdir.rglob("*")) == files and (sdir / "study.json").read_bytes() == manifest_bytes
    # a new study's dry run: the paper's evaluation protocol per dataset, and no folder
    code, out, _ = in_process(capsys, root, "fresh", "--space", "s1", "--dataset", "cifar10,cifar100,svhn",
                           "--method", "sdarts-adv", "--seed", "1", "--dry_run")
    evals = [l for l in out.splitlines() if "-eval  " in l]
    assert [l.split()[5].rsplit("/", 1)[1] for l in evals] == ["eval.sh", "eval-c100.sh", "eval-svhn.sh"]
    search = next(l for l in out.splitlines() if l.startswith("s1-cifar10-sdarts-adv-seed1-search"))
    assert "sdarts-rs-sota.sh" in search and "--perturb_alpha pgd_linf --save sdarts-adv-sota" in search
    assert not (root / "studies" / "fresh").exists()


def test_added_darts_space_chain(grid, capsys):
    """The same study with another plan: a DARTS-space search, projection and evaluation (of
    the genotype the projection registered) are added; the finished runs stay as they were."""
    root, flags, _ = grid
    before = snapshot(root, "grid")
    proc = study(root, "grid", "--space", "s2", "--dataset", "cifar10", "--method", "darts", "--seed", "1", *flags)
    assert "3 runs: 0 finished, 3 to do" in proc.stdout
    runs = manifest(root, "grid")
    assert len(runs) == 7 and {k: v for k, v in snapshot(root, "grid").items() if k in before} == before
    proj, ev = runs["s2-cifar10-darts-seed1-proj"], runs["s2-cifar10-darts-seed1-eval"]
    assert proj["state"] == ev["state"] == "finished"
    name = read_json(Path(proj["folder"]) / "result.json")["genotype_name"]
    assert ev["command"][1].endswith("eval.sh") and ev["command"][ev["command"].index("--arch") + 1] == name
    assert ev["folder"] == str(root / "studies" / "grid" / "runs" / "sota" / "cifar10" / "eval" / f"eval-{name}-1")
    result = read_json(Path(ev["folder"]) / "result.json")
    assert result["status"] == "finished" and result["arch"] == name and result["epochs"] == 1  # --eval.epochs
    # a flag the existing runs take cannot change: their tables would mix settings
    code, _, err = in_process(capsys, root, "grid", *NB201_GRID, "--seed", "1", *tiny(root, "--epochs", "3"))
    assert code == 2 and err.startswith("error: nb201-cifar10-darts-seed1-search runs with")


def test_report_of_a_study(grid):
    root, _, _ = grid
    sdir = root / "studies" / "grid"
    def report(*args: str) -> list[dict[str, str]]:
        proc = subprocess.run([sys.executable, "-m", "analysis", str(sdir), *args], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        with open(sdir / "report" / "runs.csv") as f:
            return list(csv.DictReader(f))

    found = report()  # a --fast study: smoke runs, left out of the tables
    assert {(r["fast"], r["counted"]) for r in found} == {("True", "False")}
    assert not (sdir / "report" / "nasbench201-cifar10.csv").exists()
    found = report("--include_fast")
    assert {r["counted"] for r in found} == {"True"} and len(found) == len(manifest(root, "grid"))
    with open(sdir / "report" / "nasbench201-cifar10.csv") as f:
        assert {(r["method"], r["seeds"]) for r in csv.DictReader(f)} == {("DARTS", "1 2"), ("DARTS+PT", "1 2")}
    with open(sdir / "report" / "s2-cifar10.csv") as f:
        pt = next(r for r in csv.DictReader(f) if r["method"] == "DARTS+PT")
    assert pt["eval_runs"] == "1" and pt["test_error_mean"]  # the evaluation joined to its projection


def wait_for(proc: subprocess.Popen, marker: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists(), marker


def test_kill_and_resume(grid, capsys):
    """SIGKILL the study and its runs mid-run; the same command resumes the interrupted run from
    its checkpoint and starts nothing that finished. A second study process meanwhile is refused."""
    root, flags, _ = grid
    before = snapshot(root, "grid")
    args = ["--name", "grid", "--exp_root", str(root), *NB201_GRID, "--seed", "3", "--stages", "search", *flags]
    folder = root / "studies" / "grid" / "runs" / "nasbench201" / "search-darts-201-3"
    proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / "study.sh"), *args], cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_script_env(None),
                            start_new_session=True)  # its own process group: the study and its runs
    try:
        wait_for(proc, folder / "log.txt")
        code, _, err = in_process(capsys, root, "grid", *args[4:])  # a second study process
        assert code == 2 and err.count("\n") == 1
        assert err.startswith("error: study grid is being run by another process")
        wait_for(proc, folder / "checkpoint_1.pth.tar")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    from common.runstate import liveness

    deadline = time.time() + 30  # SIGKILL takes effect when the run's process is next scheduled
    while liveness(folder).alive and time.time() < deadline:
        time.sleep(0.05)
    assert manifest(root, "grid")["nb201-cifar10-darts-seed3-search"]["state"] == "running"  # as left
    code, out, _ = in_process(capsys, root, "grid", "--status")
    assert "nb201-cifar10-darts-seed3-search  interrupted (stopped: process " in out  # its process.json

    proc = run_script("study.sh", *args, timeout=STUDY_LIMIT)
    assert "1 runs: 0 finished, 1 to do" in proc.stdout and "(continuing its folder)" in proc.stdout
    run = manifest(root, "grid")["nb201-cifar10-darts-seed3-search"]
    assert run["state"] == "finished" and run["attempts"] == 2 and run["command"][-2:] == ["--resume_epoch", "-1"]
    assert "resumed from epoch 1" in (folder / "log.txt").read_text()
    assert len((folder / "history.jsonl").read_text().splitlines()) == 2
    assert {k: v for k, v in snapshot(root, "grid").items() if k in before} == before


def test_a_projection_stage_never_projects_an_unfinished_search(tmp_path, data):
    """A study starts a projection only once its search has finished; the projection's command,
    run anyway (by a Slurm job whose dependency let it through, by hand), refuses its search while
    that runs and after the study's stop interrupted it, in one line, writing nothing."""
    from study.flags import RunFlags
    from study.plan import Context, Run, launch_command

    flags = tiny(data)
    flags[flags.index("--epochs") + 1] = "1000"  # a search that is still going when its projection is tried
    args = ["--name", "cut", "--exp_root", str(tmp_path), *NB201_GRID, "--seed", "1", "--stages", "search,proj",
            *flags]
    search = tmp_path / "studies" / "cut" / "runs" / "nasbench201" / "search-darts-201-1"
    argv = launch_command(Run("nb201", "cifar10", "darts", 1, "proj"), Context(tmp_path / "studies" / "cut",
                                                                                RunFlags.parse(flags)))

    def project() -> str:  # a refusal takes seconds; the original would train 1000 search epochs first
        proc = subprocess.run(argv, cwd="/", env=_script_env(None), capture_output=True, text=True, timeout=120)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert not [p for p in search.iterdir() if p.is_dir()]  # no projection folder
        return errors[0]

    study_proc = subprocess.Popen(["bash", str(REPO / "exp_scripts" / "study.sh"), *args], cwd="/",
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_script_env(None),
                                  start_new_session=True)
    try:
        wait_for(study_proc, search / "checkpoint_1.pth.tar")
        assert "--resume_expid search-darts-201-1 --resume_epoch -1" in shlex.join(argv)
        assert "is still running (process " in project()
        assert study_proc.poll() is None
    finally:
        study_proc.send_signal(signal.SIGTERM)  # the study stops its runs: the search is interrupted
        study_proc.wait()
    assert read_json(search / "result.json")["status"] == "interrupted"
    assert "was interrupted by SIGTERM before its last epoch" in project()


def test_retry_failed(tmp_path, data, capsys):
    """A failed run stays failed (and its projection blocked) until --retry_failed."""
    missing = tmp_path / "data"  # the data is not there yet: the search fails
    args = [*NB201_GRID, "--seed", "1", "--stages", "search,proj", *tiny(missing, "--epochs", "1")]
    proc = study(tmp_path, "retry", *args, check=False)
    assert proc.returncode == 1
    runs = manifest(tmp_path, "retry")
    search, proj = runs["nb201-cifar10-darts-seed1-search"], runs["nb201-cifar10-darts-seed1-proj"]
    assert search["state"] == "failed" and search["exit_code"] == 2 and "CIFAR-10 data not found" in search["reason"]
    assert proj["state"] == "blocked" and proj["reason"] == f"needs {search['id']}, which is failed"
    from tests.fixtures.datasets import write_cifar10

    write_cifar10(missing, n_train=32, n_test=16)
    before = snapshot(tmp_path, "retry")
    code, out, _ = in_process(capsys, tmp_path, "retry")  # the study's own plan and flags
    assert code == 1 and "rerun it with --retry_failed" in out
    assert snapshot(tmp_path, "retry") == before
    proc = study(tmp_path, "retry", "--retry_failed")
    runs = manifest(tmp_path, "retry")
    assert [r["state"] for r in runs.values()] == ["finished", "finished"]
    assert runs["nb201-cifar10-darts-seed1-search"]["attempts"] == 2


def test_bad_commands_write_nothing(tmp_path, capsys):
    proc = study(tmp_path, "bad", "--space", "nb201", "--dataset", "cifar10", "--method", "sdarts-rs",
                 "--seed", "1", check=False)
    assert proc.returncode == 2
    assert proc.stderr == "error: --method sdarts-rs is for the DARTS spaces s1..s5, not nb201\n"
    cases = [
        (["--space", "s3", "--dataset", "cifar10", "--method", "darts", "--seed", "1", "--epoch", "2"],
         "unknown run flag --epoch"),
        (["--space", "s3", "--dataset", "cifar10", "--method", "darts", "--seed", "1", "--resume_epoch", "3"],
         "--resume_epoch is set by the study"),
        (["--space", "s3", "--dataset", "svhn", "--method", "darts"], "missing --seed"),
        (["--space", "nb201", "--dataset", "svhn", "--method", "darts", "--seed", "1"], "not searched in nb201"),
        (["--space", "s3", "--dataset", "cifar10", "--method", "darts", "--seed", "1", "--epochs", "x"],
         "invalid int value"),
        (["--space", "s3", "--dataset", "cifar10", "--method", "darts", "--seed", "1", "--partition", "gpu"],
         "for --executor slurm"),
        (["--status"], "no study bad"),
    ]
    if shutil.which("srun") is None:
        cases.append((["--space", "s3", "--dataset", "cifar10", "--method", "darts", "--seed", "1",
                       "--executor", "slurm"], "no Slurm here"))
    for argv, message in cases:
        code, out, err = in_process(capsys, tmp_path, "bad", *argv)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "studies").exists()


def test_one_line_errors(tmp_path, capsys):
    from study.__main__ import main

    assert main(["--name", "x", "--exp_root", str(tmp_path), "--space", "s3", "--dataset", "cifar10",
                 "--method", "darts", "--seed", "1", "--eval.proj_intv", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown run flag --eval.proj_intv: not a flag of the eval scripts\n"


def test_status_takes_the_plan_flags(tmp_path, capsys):
    """The study's command with --status added shows the state of that command's runs (those
    not started yet as planned) and writes nothing; run flags that differ from the study's are
    refused, as the command itself would refuse them."""
    from study.flags import RunFlags
    from study.manifest import Manifest
    from study.plan import Context, plan_runs

    flags = RunFlags.parse(["--epochs", "2"])
    sdir = tmp_path / "studies" / "st"
    manifest_ = Manifest(sdir / "study.json", "st", flags.argv())
    manifest_.add(plan_runs(("nb201",), ("cifar10",), ("darts",), (1, 2), ("search", "proj")), Context(sdir, flags))
    manifest_.save()
    before = (sdir / "study.json").read_bytes()
    plan = [*NB201_GRID, "--seed", "2,3", "--stages", "search", "--epochs", "2", "--jobs", "1"]
    code, out, err = in_process(capsys, tmp_path, "st", *plan, "--status")
    assert code == 0, err
    runs = {l.split()[0]: l.split()[1] for l in out.splitlines() if l.startswith("nb201-")}
    assert runs == {"nb201-cifar10-darts-seed2-search": "planned", "nb201-cifar10-darts-seed3-search": "planned"}
    assert out.rstrip().endswith("2 planned")
    code, out, _ = in_process(capsys, tmp_path, "st", "--status")  # the whole study
    assert code == 0 and out.rstrip().endswith("4 planned")
    assert (sdir / "study.json").read_bytes() == before and sorted(sdir.iterdir()) == [sdir / "study.json"]
    code, _, err = in_process(capsys, tmp_path, "st", *NB201_GRID, "--seed", "1", "--epochs", "3", "--status")
    assert code == 2 and "nb201-cifar10-darts-seed1-search runs with the run flags [--epochs 2]" in err
    code, _, err = in_process(capsys, tmp_path, "st", "--status", "--dry_run")
    assert code == 2 and err.startswith("error: --status shows the study and runs nothing")


def test_imagefolder_studies(tmp_path, capsys):
    """Your own images in every space, searched, projected and (DARTS spaces) evaluated as
    CIFAR-10 is; the data folder must be given."""
    images = tmp_path / "images"
    plan = ["--space", "s5,nb201", "--dataset", "imagefolder", "--method", "darts", "--seed", "1"]
    code, out, err = in_process(capsys, tmp_path, "img", *plan, "--data", str(images), "--dry_run")
    assert code == 0, err
    lines = {l.split()[0]: l for l in out.splitlines() if l.startswith(("s5-", "nb201-"))}
    assert set(lines) == {"s5-imagefolder-darts-seed1-search", "s5-imagefolder-darts-seed1-proj",
                          "s5-imagefolder-darts-seed1-eval", "nb201-imagefolder-darts-seed1-search",
                          "nb201-imagefolder-darts-seed1-proj"}
    for line in lines.values():
        assert "--dataset imagefolder" in line and f"--data {images}" in line
    assert "/eval.sh " in lines["s5-imagefolder-darts-seed1-eval"]
    assert "--resume_expid search-darts-sota-s5-1 " in lines["s5-imagefolder-darts-seed1-proj"]
    code, _, err = in_process(capsys, tmp_path, "img", *plan)
    assert code == 2 and err.count("\n") == 1
    assert "--dataset imagefolder needs --data DIR" in err
    assert not (tmp_path / "studies").exists()


# -- plan pieces -------------------------------------------------------------------------------------

def test_run_flags_go_where_they_belong():
    from study.flags import RunFlags

    flags = RunFlags.parse(["--eval.epochs", "7", "--epochs", "2", "--num_cells", "1", "--fast",
                            "--proj.proj_intv=1"])
    assert flags.for_run("search", "nasbench201.train_search") == ["--epochs", "2", "--num_cells", "1", "--fast"]
    assert flags.for_run("search", "sota.train_search") == ["--epochs", "2", "--fast"]
    assert flags.for_run("proj", "sota.train_search") == ["--epochs", "2", "--fast", "--proj_intv", "1"]
    assert flags.for_run("eval", "sota.train") == ["--epochs", "2", "--fast", "--epochs", "7"]  # the stage's wins


def test_nproc_reaches_the_scripts_only(tmp_path):
    """--nproc is the exp_scripts' own flag (exp_scripts/common.sh): a run's command gets it, its
    module's parse (the folder the study names) does not see it; --STAGE.nproc limits it to a stage."""
    from study.flags import RunFlags
    from study.plan import Context, Run, command, run_config

    flags = RunFlags.parse(["--nproc", "4", "--epochs", "2"])
    assert flags.for_run("eval", "sota.train") == ["--nproc", "4", "--epochs", "2"]
    assert flags.for_run("eval", "sota.train", script=False) == ["--epochs", "2"]
    for stage in ("search", "proj"):
        assert flags.for_run(stage, "sota.train_search") == ["--nproc", "4", "--epochs", "2"]
        assert flags.for_run(stage, "sota.train_search", script=False) == ["--epochs", "2"]
    ctx = Context(tmp_path, flags)
    run = Run("s5", "cifar10", "darts", 1, "eval")
    assert command(run, ctx, "my_cell")[-4:] == ["--nproc", "4", "--epochs", "2"]
    assert run_config(run, ctx, "my_cell").cfg.epochs == 2  # parsed by sota.train, without --nproc
    search = Run("s5", "cifar10", "darts", 1, "search")
    assert command(search, ctx)[-4:] == ["--nproc", "4", "--epochs", "2"]
    assert run_config(search, ctx).cfg.epochs == 2
    assert RunFlags.parse(["--eval.nproc", "2"]).for_run("eval", "sota.train") == ["--nproc", "2"]
    only_search = RunFlags.parse(["--search.nproc", "2"])
    assert only_search.for_run("search", "sota.train_search") == ["--nproc", "2"]
    assert only_search.for_run("eval", "sota.train") == []


def test_resume_args(tmp_path):
    from study.plan import Run, resume_args

    search = Run("s3", "cifar10", "darts", 1, "search")
    folder = tmp_path / "run"
    assert resume_args(search, folder) == []                       # not started: start it
    folder.mkdir()
    assert resume_args(search, folder) == ["--overwrite"]          # nothing to resume: move it aside
    (folder / "checkpoint_3.pth.tar").write_bytes(b"")
    assert resume_args(search, folder) == ["--resume_epoch", "-1"]
    assert resume_args(Run("s3", "cifar10", "darts", 1, "proj"), folder) == []  # projections resume themselves
    stopped = tmp_path / "eval"  # an evaluation stopped in its first epoch, after a mid-epoch checkpoint
    stopped.mkdir()
    (stopped / "checkpoint_partial.pth.tar").write_bytes(b"")
    assert resume_args(Run("s3", "cifar10", "darts", 1, "eval"), stopped) == ["--resume_epoch", "-1"]


def test_sdarts_adv_has_folders_of_its_own(tmp_path):
    from study.flags import RunFlags
    from study.plan import Context, Run, run_folder

    ctx = Context(tmp_path, RunFlags())
    rs, adv = (run_folder(Run("s5", "svhn", m, 3, "search"), ctx) for m in ("sdarts-rs", "sdarts-adv"))
    assert rs == tmp_path / "runs" / "sota" / "svhn" / "search-sdarts-rs-sota-s5-3"
    assert adv == tmp_path / "runs" / "sota" / "svhn" / "search-sdarts-adv-sota-s5-3"


def test_one_run_per_gpu(tmp_path, monkeypatch, capsys):
    """Without --gpu each run sees one GPU of its own (CUDA_VISIBLE_DEVICES) as --gpu 0, one run
    per visible GPU at once; the processes are faked (no GPU needed)."""
    import study.executors as ex

    monkeypatch.setattr(ex, "visible_gpus", lambda: ["4", "7"])
    assert [(s.gpu, s.device_args) for s in ex.device_slots(None, None)] == [("4", ("--gpu", "0")),
                                                                            ("7", ("--gpu", "0"))]
    assert [s.gpu for s in ex.device_slots(3, None)] == ["4", "7", "4"]
    assert [(s.gpu, s.device_args) for s in ex.device_slots(None, "1")] == [(None, ())] * 2  # the user's --gpu
    launched = []

    class Exited:  # a run that ends at once, failing
        def __init__(self, argv: list[str], log, env: dict[str, str], lock_fd: int | None) -> None:
            launched.append((argv, env.get("CUDA_VISIBLE_DEVICES"), lock_fd))

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(ex, "spawn", Exited)
    code, out, _ = in_process(capsys, tmp_path, "gpus", *NB201_GRID, "--seed", "1,2", "--stages", "search")
    assert code == 1 and "up to 2 at once (GPU 4, GPU 7)" in out
    assert sorted(gpu for _, gpu, _ in launched) == ["4", "7"]
    assert all(argv[2:4] == ["--gpu", "0"] and lock is not None for argv, _, lock in launched)
    monkeypatch.setattr(ex, "visible_gpus", lambda: [])
    assert [(s.gpu, s.device_args) for s in ex.device_slots(None, None)] == [(None, ("--gpu", "cpu"))]


# -- Slurm -----------------------------------------------------------------------------------------

@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> tuple[Path, dict[str, str]]:
    """sbatch, squeue and srun on the PATH (of this process too: later commands run in it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_SLURM.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM": str(tmp_path)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return tmp_path, env


def sbatch_options(script: Path) -> dict[str, str]:
    return dict(l[len("#SBATCH --"):].split("=", 1) if "=" in l else (l[len("#SBATCH --"):], "")
                for l in script.read_text().splitlines() if l.startswith("#SBATCH --"))


def test_slurm_jobs_and_their_dependencies(fake_slurm, capsys):
    root, env = fake_slurm
    args = ["--space", "s3", "--dataset", "cifar100", "--method", "darts", "--seed", "1", "--executor", "slurm",
            "--partition", "gpu", "--time", "600", "--gpus_per_job", "1", "--cpus_per_job", "4", "--mem_gb", "32",
            "--slurm_extra", "account=nas,exclude=n1,n2", "--data", "/nowhere"]
    proc = study(root, "slurm", *args, env=env)
    assert "3 jobs submitted" in proc.stdout
    jobs = {n: sbatch_options(root / f"job-{n}.sh") for n in (101, 102, 103)}
    expected = {101: ("s3-cifar100-darts-seed1-search", None), 102: ("s3-cifar100-darts-seed1-proj", "afterok:101"),
                103: ("s3-cifar100-darts-seed1-eval", "afterok:102")}
    for n, (name, dependency) in expected.items():
        o = jobs[n]
        assert o["job-name"] == name and o.get("dependency") == dependency
        assert (o["partition"], o["time"], o["gpus-per-node"], o["cpus-per-task"], o["mem"]) == \
            ("gpu", "600", "1", "4", "32GB")
        assert (o["account"], o["exclude"], o["kill-on-invalid-dep"]) == ("nas", "n1,n2", "yes")
        assert o["output"].startswith(str(root / "studies" / "slurm" / "slurm") + "/")
    assert f"export PYTHONPATH={REPO}" in (root / "job-101.sh").read_text()
    runs = manifest(root, "slurm")
    assert [(r["state"], r["slurm_job_id"]) for r in runs.values()] == \
        [("submitted", "101"), ("submitted", "102"), ("submitted", "103")]
    assert runs["s3-cifar100-darts-seed1-eval"]["command"][1].endswith("eval-c100.sh")

    # while the jobs are queued, a rerun submits nothing and --status shows the queue
    (root / "queue").write_text("101 RUNNING\n102 PENDING\n103 PENDING\n")
    code, out, _ = in_process(capsys, root, "slurm", *args)
    assert code == 0 and "0 jobs submitted" in out and not (root / "job-104.sh").exists()
    code, out, _ = in_process(capsys, root, "slurm", "--status")
    assert "s3-cifar100-darts-seed1-search  running" in out and "s3-cifar100-darts-seed1-eval    submitted" in out

    # the search's job failed: its dependants are not submitted, until --retry_failed
    (root / "queue").write_text("")
    attempt = root / "studies" / "slurm" / "attempts" / "s3-cifar100-darts-seed1-search.json"
    attempt.write_text(json.dumps({**read_json(attempt), "started": "2024-01-01T00:00:00.000",
                                   "ended": "2024-01-01T00:01:00.000", "exit_code": 1, "reason": "boom"}))
    code, out, _ = in_process(capsys, root, "slurm", *args)
    assert code == 1 and "0 jobs submitted" in out and "blocked  s3-cifar100-darts-seed1-proj" in out
    assert manifest(root, "slurm")["s3-cifar100-darts-seed1-search"]["reason"] == "boom"
    code, out, _ = in_process(capsys, root, "slurm", *args, "--retry_failed")
    assert code == 0 and "3 jobs submitted" in out
    assert "dependency" not in sbatch_options(root / "job-104.sh")
    assert sbatch_options(root / "job-105.sh")["dependency"] == "afterok:104"


def test_submitit_local_runs_a_chain(tmp_path, data, monkeypatch):
    """A search and its projection as submitit jobs on submitit's local cluster (no Slurm needed):
    the jobs run RunJob, which makes each command when the job starts."""
    from study.__main__ import main

    for k, v in _script_env({"PYTHONPATH": str(REPO)}).items():
        monkeypatch.setenv(k, v)
    args = ["--name", "chain", "--exp_root", str(tmp_path), *NB201_GRID, "--seed", "1", "--stages", "search,proj",
            "--executor", "slurm", "--gpus_per_job", "0", *tiny(data, "--epochs", "1")]
    with time_limit(STUDY_LIMIT, "a submitit-local study"):
        assert main(args, cluster="local") == 0
    runs = manifest(tmp_path, "chain")
    assert [r["state"] for r in runs.values()] == ["finished"] * 2
    assert all(r["slurm_job_id"] and r["attempts"] == 1 for r in runs.values())
    proj = runs["nb201-cifar10-darts-seed1-proj"]
    assert "--resume_expid search-darts-201-1 --resume_epoch -1" in shlex.join(proj["command"])
    assert read_json(Path(proj["folder"]) / "result.json")["status"] == "finished"
    jobs = tmp_path / "studies" / "chain" / "slurm"
    assert {p.name for p in jobs.glob("*_0_log.out")} == {f"{r['slurm_job_id']}_0_log.out" for r in runs.values()}


def test_imagenet_stage_transfers_the_projected_genotype(tmp_path):
    """eval-imagenet follows the projection, as eval does, through eval-imagenet.sh (no --dataset:
    ImageNet is its only one); it is planned only when asked, and never on NAS-Bench-201."""
    from study.config import parse_config
    from study.flags import RunFlags
    from study.plan import Context, Run, command, plan_runs, run_folder

    assert "eval-imagenet" not in parse_config(["--name", "x"]).stages
    runs = plan_runs(("nb201", "s5"), ("cifar10",), ("darts",), (1,), ("search", "proj", "eval-imagenet"))
    assert [r.id for r in runs] == ["nb201-cifar10-darts-seed1-search", "nb201-cifar10-darts-seed1-proj",
                                    "s5-cifar10-darts-seed1-search", "s5-cifar10-darts-seed1-proj",
                                    "s5-cifar10-darts-seed1-eval-imagenet"]
    run = runs[-1]
    assert run.upstream == Run("s5", "cifar10", "darts", 1, "proj")
    ctx = Context(tmp_path, RunFlags.parse(["--data", "/cifar", "--eval-imagenet.data", "/imagenet",
                                            "--eval-imagenet.nproc", "8", "--epochs", "2"]))
    argv = command(run, ctx, "my_cell")
    assert argv[1].endswith("exp_scripts/eval-imagenet.sh") and "--dataset" not in argv
    assert argv[2:] == ["--seed", "1", "--exp_root", str(tmp_path / "runs"), "--arch", "my_cell", "--data", "/cifar",
                        "--epochs", "2", "--data", "/imagenet", "--nproc", "8"]
    assert run_folder(run, ctx, "my_cell") == tmp_path / "runs" / "sota" / "imagenet" / "eval" / "eval-my_cell-1"


def test_slurm_evaluations_span_nodes_per_job(fake_slurm):
    """--nodes_per_job N: evaluation jobs take N machines (one task each), searches and
    projections one; each task meets the others at the first machine (node_args)."""
    from study.executors import node_args

    root, env = fake_slurm
    study(root, "nodes", "--space", "s5", "--dataset", "cifar10", "--method", "darts", "--seed", "1",
          "--stages", "search,proj,eval,eval-imagenet", "--executor", "slurm", "--gpus_per_job", "8",
          "--nodes_per_job", "4", "--eval-imagenet.nproc", "8", env=env)
    nodes = {n: sbatch_options(root / f"job-{n}.sh") for n in (101, 102, 103, 104)}
    assert [(o["job-name"].rsplit("seed1-", 1)[1], o["nodes"], o["ntasks-per-node"], o["gpus-per-node"])
            for o in nodes.values()] == [("search", "1", "1", "8"), ("proj", "1", "1", "8"), ("eval", "4", "1", "8"),
                                         ("eval-imagenet", "4", "1", "8")]
    assert nodes[104]["dependency"] == "afterok:102"  # after the projection, not after the CIFAR evaluation
    assert node_args("12345", ["gpu7", "gpu9"], 1) == ["--nnodes", "2", "--node_rank", "1", "--rdzv_endpoint",
                                                        "gpu7:29745", "--rdzv_id", "12345"]


@pytest.mark.parametrize("method", ["gdas", "drnas", "pcdarts"])
def test_a_study_runs_each_method_through_its_own_scripts(tmp_path, method):
    """--method gdas|drnas|pcdarts: the method's scripts in each space, the seed scripts' folder
    names; the projection finds its search run (and takes the method's flags from its result.json)."""
    from study.flags import RunFlags
    from study.plan import Context, Run, command, run_folder

    ctx = Context(tmp_path, RunFlags())
    for space, script, folder in (("nb201", f"{method}-201.sh", f"nasbench201/search-{method}-201-1"),
                                  ("s5", f"{method}-sota.sh", f"sota/cifar10/search-{method}-sota-s5-1")):
        search, proj = (Run(space, "cifar10", method, 1, stage) for stage in ("search", "proj"))
        line = " ".join(command(search, ctx))
        assert f"exp_scripts/{script} " in line and "--seed 1" in line
        assert run_folder(search, ctx) == tmp_path / "runs" / folder
        line = " ".join(command(proj, ctx))
        assert script.replace("-", "-proj-", 1) in line and f"--resume_expid {folder.rsplit('/', 1)[1]}" in line
