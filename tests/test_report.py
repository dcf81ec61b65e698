"""The study report (python -m analysis): tables checked against the runs' result.json.

NAS-Bench-201: a real experiments/ tree from end-to-end runs through the exp_scripts on
tiny data (DARTS and fix-alpha, two seeds each, supernet and projection), plus an
unfinished, a failed and an unreadable run. DARTS space: hand-written result.json files
(search, projection, evaluation), for the tables and the evaluation join.

Set DARTS_PT_WRITE_REPORT_EXAMPLE=1 to also refresh docs/report_example.{md,png} from the
NAS-Bench-201 report.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, TEST_GPU, read_json, run_script

pytestmark = pytest.mark.slow  # end to end through the exp_scripts

TINY = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100",
        "--gpu", TEST_GPU, "--no_tensorboard"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = ("1", "2")
METHODS = {"darts": "DARTS", "blank": "fix-alpha"}


def report(exp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis", str(exp), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50, (path, img.shape)


# -- NAS-Bench-201, from real runs -------------------------------------------------------------

@pytest.fixture(scope="module")
def study(tmp_path_factory, cifar10_dir, bench) -> Path:
    exp = tmp_path_factory.mktemp("exp")
    env = ["--data", str(cifar10_dir), "--exp_root", str(exp), "--api_path", str(bench[0]), *TINY, "--epochs", "2"]

    def pipeline(method: str, seed: str) -> None:
        run_script(f"{method}-201.sh", *env, "--seed", seed)
        run_script(f"{method}-proj-201.sh", *env, "--seed", seed, "--resume_epoch", "2", "--proj_intv", "1")

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        for f in [pool.submit(pipeline, m, s) for m in METHODS for s in SEEDS]:
            f.result()
    nb = exp / "nasbench201"
    # An unfinished supernet (as a killed run leaves it): one epoch logged, status still running.
    cut = nb / "search-darts-201-3"
    cut.mkdir()
    result = read_json(nb / "search-darts-201-2" / "result.json")
    for key in ("epochs_done", "genotype", "benchmark", "search_time_s"):
        result.pop(key)
    (cut / "result.json").write_text(json.dumps({**result, "status": "running", "seed": 3}))
    first = (nb / "search-darts-201-2" / "history.jsonl").read_text().splitlines()[0]
    (cut / "history.jsonl").write_text(first + "\n" + first[:40])  # and a half-written line
    # A failed projection, for real: a learning rate that makes the tuning loss NaN.
    bad = run_script("darts-proj-201.sh", *env, "--seed", "1", "--resume_epoch", "2", "--proj_intv", "1",
                     "--learning_rate", "1e38", "--log_tag", "bad", check=False)
    assert bad.returncode != 0
    # An unreadable run: result.json cut off mid-write.
    (nb / "search-blank-201-4").mkdir()
    (nb / "search-blank-201-4" / "result.json").write_text('{"status": "fini')
    # Folders the report must ignore: one moved aside by --overwrite, the genotype registry.
    shutil.copytree(nb / "search-blank-201-1", nb / "search-blank-201-1.old-20240101-000000",
                    ignore=shutil.ignore_patterns("*.pth.tar"))
    (exp / "sota" / "genotypes").mkdir(parents=True)
    (exp / "sota" / "genotypes" / "x.json").write_text("{}")
    return exp


@pytest.fixture(scope="module")
def nb201_report(study) -> Path:
    proc = report(study)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("11 runs (8 finished, 1 running, 1 failed, 1 unreadable)"), proc.stdout
    out = study / "report"
    if os.environ.get("DARTS_PT_WRITE_REPORT_EXAMPLE"):
        write_docs_example(out)
    return out


def finished_results(study: Path, method: str) -> list[dict]:
    """result.json of the finished supernets (`method`) or projections (`method-proj`) of seeds 1, 2."""
    nb = study / "nasbench201"
    if method.endswith("-proj"):
        paths = [nb / f"search-{method[:-5]}-201-{s}" / f"{method}-201-seed{s}-acc-intv1-ep2" / "result.json"
                 for s in SEEDS]
    else:
        paths = [nb / f"search-{method}-201-{s}" / "result.json" for s in SEEDS]
    results = [read_json(p) for p in paths]
    assert all(r["status"] == "finished" for r in results)
    return results


@pytest.mark.parametrize("method", ["darts", "darts-proj", "blank", "blank-proj"])
def test_nb201_table_matches_result_files(study, nb201_report, method):
    label = METHODS[method.removesuffix("-proj")] + ("+PT" if method.endswith("-proj") else "")
    results = finished_results(study, method)
    found = read_csv(nb201_report / "nasbench201-cifar10.csv")
    rows = {r["method"]: r for r in found if "--log_tag" not in r["setting"]}  # the diverged one: a row of its own
    assert set(rows) == {"DARTS", "DARTS+PT", "fix-alpha", "fix-alpha+PT"} and len(found) == 5
    row = rows[label]
    assert row["runs"] == "2" and row["seeds"] == "1 2"
    for key in ("cifar10_test", "cifar100_test", "imagenet16_test"):
        values = [r["benchmark"][key] for r in results]
        assert float(row[f"{key}_mean"]) == pytest.approx(np.mean(values), abs=1e-9)
        assert float(row[f"{key}_std"]) == pytest.approx(np.std(values), abs=1e-9)  # ddof=0
    acc = [r["benchmark"]["cifar10_test"] for r in results]
    assert float(row["best"]) == pytest.approx(max(acc))
    assert float(row["search_time_s"]) == pytest.approx(np.mean([r["search_time_s"] for r in results]))
    if method.endswith("-proj"):
        assert float(row["projection_time_s"]) == pytest.approx(np.mean([r["projection_time_s"] for r in results]))
    assert set(row["genotypes"].split(" ; ")) == {r["genotype"] for r in results}

    md = (nb201_report / "nasbench201-cifar10.md").read_text()
    line = next(l for l in md.splitlines() if l.startswith(f"| {label} |"))
    cells = [c.strip() for c in line.strip("|").split(" | ")]
    assert cells[1] == "2" and cells[2] == "1, 2"
    assert f"{np.mean(acc):.2f} ± {np.std(acc):.2f}" in line and f"| {max(acc):.2f} |" in line
    for r in results:  # genotypes with their pipes escaped for Markdown
        assert r["genotype"].replace("|", "\\|") in line


def test_nb201_not_counted_runs_are_listed(study, nb201_report):
    rows = {r["method"] + (" bad" if "--log_tag bad" in r["setting"] else ""): r
            for r in read_csv(nb201_report / "nasbench201-cifar10.csv")}
    assert rows["DARTS"]["not_counted"] == "1 running"        # search-darts-201-3 (no process record)
    assert rows["DARTS+PT"]["not_counted"] == "—"
    # the projection that diverged (--log_tag bad, another learning rate): a row of its own
    assert (rows["DARTS+PT bad"]["runs"], rows["DARTS+PT bad"]["not_counted"]) == ("0", "1 failed")
    assert rows["fix-alpha"]["not_counted"] == "1 unreadable"    # the cut-off result.json
    assert rows["fix-alpha+PT"]["not_counted"] == "—"
    inventory = {r["run"]: r for r in read_csv(nb201_report / "runs.csv")}
    assert len(inventory) == 11  # 8 finished, 1 running, 1 failed, 1 unreadable
    expect = {"nasbench201/search-darts-201-3": ("running", "search"),
              "nasbench201/search-darts-201-1/darts-proj-201-seed1-acc-intv1-ep2-bad": ("failed", "projection"),
              "nasbench201/search-blank-201-4": ("unreadable", "search")}
    for rel, (status, kind) in expect.items():
        assert inventory[rel]["status"] == status and inventory[rel]["kind"] == kind
        assert inventory[rel]["counted"] == "False"
    assert sum(r["counted"] == "True" for r in inventory.values()) == 8
    assert not any(".old-" in r or "genotypes" in r for r in inventory)  # ignored folders
    assert "DivergedError" in inventory["nasbench201/search-darts-201-1/darts-proj-201-seed1-acc-intv1-ep2-bad"][
        "detail"]
    assert "1/2 epochs logged" in inventory["nasbench201/search-darts-201-3"]["detail"]
    md = (nb201_report / "nasbench201-cifar10.md").read_text()
    not_counted = md.split("### Runs not counted")[1]
    for rel, (status, _) in expect.items():
        line = next(l for l in not_counted.splitlines() if rel in l)
        assert status in line


def test_nb201_figures_are_valid_pngs(nb201_report):
    folder = nb201_report / "nasbench201-cifar10"
    expected = ["trajectory.png", "supernet_acc.png", "alpha-DARTS.png", "alpha-DARTS-PT.png",
                "alpha-fix-alpha.png", "alpha-fix-alpha-PT.png"]
    expected += [f"cells/{m}-seed{s}.png" for m in ("DARTS", "DARTS-PT", "fix-alpha", "fix-alpha-PT") for s in SEEDS]
    for name in expected:
        assert_png(folder / name)
    md = (nb201_report / "index.md").read_text()
    assert "](nasbench201-cifar10/trajectory.png)" in md


def test_report_replaces_its_folder_and_refuses_others(study, nb201_report, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = report(study, "--out", str(foreign))
    assert proc.returncode == 2 and "not written by this command" in proc.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
    acc = [r["benchmark"]["cifar10_test"] for r in finished_results(study, "darts")]
    out = tmp_path / "elsewhere"
    for ddof in (1, 0):
        proc = report(study, "--out", str(out), "--ddof", str(ddof))
        assert proc.returncode == 0, proc.stderr
        assert not (out / "stale.png").exists()  # the second report replaced the first whole
        (out / "stale.png").write_bytes(PNG_MAGIC)
        row = next(r for r in read_csv(out / "nasbench201-cifar10.csv") if r["method"] == "DARTS")
        assert float(row["cifar10_test_std"]) == pytest.approx(np.std(acc, ddof=ddof))
    assert not (study / "report" / "stale.png").exists() and (study / "report" / "index.md").is_file()


def write_docs_example(out: Path) -> None:
    """docs/report_example.{md,png}: the NAS-Bench-201 table and trajectory figure of this test."""
    md = (out / "nasbench201-cifar10.md").read_text()
    table = md.split("Figures (finished runs only):")[0].rstrip()
    not_counted = md.split("### Runs not counted")[1].strip()
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(out / "nasbench201-cifar10" / "trajectory.png", docs / "report_example.png")
    (docs / "report_example.md").write_text(
        "# Example report output\n\n"
        "Written by `python -m analysis EXPERIMENTS` from the runs of `tests/test_report.py`: tiny "
        "NAS-Bench-201 searches (2 epochs on 96 CIFAR-10 images, a synthetic benchmark), so the numbers say "
        "nothing about the methods; the layout is that of a real study. Refresh with "
        "`DARTS_PT_WRITE_REPORT_EXAMPLE=1 python -m pytest tests/test_report.py`.\n\n"
        + table.replace("## ", "## Table: ", 1) + "\n\n"
        "Runs not counted:\n\n" + not_counted + "\n\n"
        "## Figure: test accuracy of the selected architecture (the paper's Figure 4)\n\n"
        "![trajectory](report_example.png)\n")


# -- DARTS space, from hand-written result files ------------------------------------------------

def _genotype(ops: list[str]) -> str:
    from sota.genotypes import Genotype

    edges = [(ops[k % len(ops)], j) for k, j in enumerate([0, 1, 0, 1, 1, 2, 0, 3])]
    return repr(Genotype(normal=edges, normal_concat=range(2, 6), reduce=edges, reduce_concat=range(2, 6)))


def _genotype_dict(s: str) -> dict:
    from sota.genotypes import genotype_from_string, genotype_to_dict

    return genotype_to_dict(genotype_from_string(s))


def _write(folder: Path, result: dict | str, history: list[dict] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(result if isinstance(result, str) else json.dumps(result))
    if history:
        (folder / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))


def _softmax_rows(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: (rng.dirichlet(np.ones(7), size=14)).round(5).tolist() for k in ("normal", "reduce")}


@pytest.fixture
def darts_tree(tmp_path) -> Path:
    exp = tmp_path / "experiments"
    c10 = exp / "sota" / "cifar10"
    gdarts = {1: _genotype(["sep_conv_3x3", "skip_connect"]), 2: _genotype(["skip_connect"])}
    gpt = {1: _genotype(["sep_conv_3x3", "dil_conv_3x3"]), 2: _genotype(["sep_conv_5x5"])}
    for seed in (1, 2):
        search = c10 / f"search-darts-sota-s5-{seed}"
        history = [{"epoch": e, "train_acc": 50.0 + e + seed, "valid_acc": 40.0 + e, "genotype": gdarts[seed],
                    "benchmark": None, "softmax": _softmax_rows(seed)} for e in range(3)]
        _write(search, {"status": "finished", "space": "s5", "method": "darts", "dataset": "cifar10", "seed": seed,
                        "epochs": 3, "epochs_done": 3, "genotype": gdarts[seed], "benchmark": None,
                        "search_time_s": 100.0 * seed}, history)
        _write(search / f"darts-proj-sota-seed{seed}-acc-intv1-ep3",
               {"status": "finished", "space": "s5", "method": "darts-proj", "dataset": "cifar10", "seed": seed,
                "supernet": str(search / "checkpoint_3.pth.tar"), "supernet_epoch": 3,
                "search_time_s": 100.0 * seed, "genotype": gpt[seed], "benchmark": None,
                "projection_time_s": 50.0 * seed, "genotype_name": f"c10_pt_{seed}",
                "eval_size": {"init_channels": 36, "layers": 20, "params_mb": 3.1 + seed / 10,
                              "params_mb_with_aux": 3.5}},
               [{"epoch": e, "projections": e + 1, "genotype": gpt[seed], "benchmark": None,
                 "softmax": _softmax_rows(seed + 10)} for e in range(2)])
    # an unfinished projection of seed 3, a failed search of seed 4
    _write(c10 / "search-darts-sota-s5-3" / "darts-proj-sota-seed3-acc-intv1-ep3",
           {"status": "running", "space": "s5", "method": "darts-proj", "dataset": "cifar10", "seed": 3,
            "supernet_epoch": 3})
    _write(c10 / "search-darts-sota-s5-4", {"status": "failed", "space": "s5", "method": "darts",
                                            "dataset": "cifar10", "seed": 4, "epochs": 3,
                                            "error": "DivergedError: loss is nan"})

    def ev(name: str, arch: str, geno: str, seed: int, err: float | None, status: str = "finished") -> None:
        _write(c10 / "eval" / name,
               {"status": status, "kind": "eval", "arch": arch, "genotype": _genotype_dict(geno), "dataset": "cifar10",
                "seed": seed, "epochs": 600, "epochs_done": 600 if err is not None else 12, "init_channels": 36,
                "layers": 20, "auxiliary": True, "params_mb": 3.0 + seed / 100,
                "best_test_acc": None if err is None else 100 - err + 0.1,
                "final_test_acc": None if err is None else 100 - err,
                "final_test_error": err, "train_time_s": 3600.0 * (seed + 1)},
               [{"epoch": e, "test_acc": 50.0 + 10 * e + seed} for e in range(4)])

    ev("eval-c10_pt_1-0", "c10_pt_1", gpt[1], 0, 2.60)
    ev("eval-c10_pt_1-1", "c10_pt_1", gpt[1], 1, 2.80)
    ev("eval-c10_pt_2-0", "c10_pt_2", gpt[2], 0, 2.50)
    ev("eval-c10_pt_2-1", "c10_pt_2", gpt[2], 1, None, status="running")
    ev("eval-mine-0", "darts_seed1_by_hand", gdarts[1], 0, 3.10)  # joined by genotype, not by name
    ev("eval-DARTS_V2-0", "DARTS_V2", _genotype(["max_pool_3x3"]), 0, 3.00)
    _write(c10 / "eval" / "eval-broken-0", "not json")
    return exp


def test_darts_space_table_and_eval_join(darts_tree, tmp_path):
    proc = report(darts_tree)
    assert proc.returncode == 0, proc.stderr
    out = darts_tree / "report"
    rows = {r["method"]: r for r in read_csv(out / "s5-cifar10.csv")}
    assert set(rows) == {"DARTS", "DARTS+PT"}
    pt, darts = rows["DARTS+PT"], rows["DARTS"]
    errors = [2.60, 2.80, 2.50]
    assert pt["runs"] == "2" and pt["eval_runs"] == "3" and pt["genotypes"] == "c10_pt_1 ; c10_pt_2"
    assert float(pt["test_error_mean"]) == pytest.approx(np.mean(errors))
    assert float(pt["test_error_std"]) == pytest.approx(np.std(errors))
    assert float(pt["best_test_error"]) == pytest.approx(2.50)
    assert float(pt["params_mb"]) == pytest.approx(np.mean([3.0, 3.01, 3.0]))
    assert float(pt["projection_time_s"]) == pytest.approx(75.0)
    assert float(pt["eval_time_s"]) == pytest.approx(np.mean([3600.0, 7200.0, 3600.0]))
    assert pt["not_counted"] == "1 running; eval: 1 running"
    assert pt["paper"] == "2.61 ± 0.08"
    assert darts["runs"] == "2" and darts["eval_runs"] == "1" and float(darts["test_error_mean"]) == 3.10
    assert darts["test_error_std"] == ""  # one run: no std
    assert darts["not_counted"] == "1 failed"
    assert darts["paper"] == "3.00 ± 0.14"

    md = (out / "s5-cifar10.md").read_text()
    pt_line = next(l for l in md.splitlines() if l.startswith("| DARTS+PT |"))
    assert "2.63 ± 0.12" in pt_line and "[c10_pt_1](s5-cifar10/cells/DARTS-PT-seed1.png)" in pt_line
    assert "| 3.10 |" in next(l for l in md.splitlines() if l.startswith("| DARTS |"))
    assert "DivergedError" in md.split("### Runs not counted")[1]

    evals = {r["arch"]: r for r in read_csv(out / "eval-cifar10.csv")}
    assert evals["DARTS_V2"]["selected_by"] == "catalog" and float(evals["DARTS_V2"]["test_error_mean"]) == 3.0
    assert evals["c10_pt_2"]["selected_by"] == "DARTS+PT (s5-cifar10)"
    assert evals["c10_pt_2"]["runs"] == "1" and evals["c10_pt_2"]["not_counted"] == "1 running"
    assert evals["darts_seed1_by_hand"]["selected_by"] == "DARTS (s5-cifar10)"
    assert evals["? (eval-broken-0)"]["not_counted"] == "1 unreadable"

    for name in ["s5-cifar10/supernet_acc.png", "s5-cifar10/alpha-DARTS.png", "s5-cifar10/alpha-DARTS-PT.png",
                 "s5-cifar10/cells/DARTS-seed1.png", "s5-cifar10/cells/DARTS-PT-seed2.png",
                 "eval-cifar10/eval_curves.png"]:
        assert_png(out / name)
    assert not (out / "s5-cifar10" / "trajectory.png").exists()  # no benchmark in the DARTS space


def test_fast_runs_apart_and_non_paper_evaluations_marked(darts_tree):
    """--fast smoke runs stay out of the tables (listed apart) unless --include_fast, which puts
    them in rows of their own without the paper's number; evaluations at other sizes than the
    paper's protocol say so."""
    c10 = darts_tree / "sota" / "cifar10"
    smoke = c10 / "search-darts-sota-s5-5"
    geno = _genotype(["dil_conv_5x5"])
    _write(smoke, {"status": "finished", "space": "s5", "method": "darts", "dataset": "cifar10", "seed": 5,
                   "fast": True, "epochs": 3, "genotype": geno, "benchmark": None, "search_time_s": 1.0})
    _write(smoke / "darts-proj-sota-seed5-acc-intv1-ep3",
           {"status": "finished", "space": "s5", "method": "darts-proj", "dataset": "cifar10", "seed": 5,
            "fast": True, "supernet_epoch": 3, "genotype": geno, "benchmark": None, "genotype_name": "smoke_5"})
    eval_result = {"status": "finished", "kind": "eval", "dataset": "cifar10", "seed": 0, "epochs": 600,
                   "init_channels": 36, "layers": 20, "batch_size": 96, "final_test_error": 9.0}
    _write(c10 / "eval" / "eval-smoke_5-0", {**eval_result, "arch": "smoke_5", "genotype": _genotype_dict(geno),
                                             "fast": True, "epochs": 1})
    pt_1 = _genotype_dict(_genotype(["sep_conv_3x3", "dil_conv_3x3"]))
    _write(c10 / "eval" / "eval-c10_pt_1-short", {**eval_result, "arch": "c10_pt_1", "seed": 7, "epochs": 100,
                                                  "genotype": pt_1, "final_test_error": 5.0})

    proc = report(darts_tree)
    assert proc.returncode == 0, proc.stderr
    assert "3 --fast smoke runs left out of the tables: pass --include_fast to put them in" in proc.stdout
    out = darts_tree / "report"
    rows = {r["method"]: r for r in read_csv(out / "s5-cifar10.csv")}
    assert set(rows) == {"DARTS", "DARTS+PT"} and rows["DARTS"]["runs"] == rows["DARTS+PT"]["runs"] == "2"
    pt = rows["DARTS+PT"]
    assert pt["eval_runs"] == "4" and pt["eval_setting"] == "non-paper sizes: C=36, 20 cells, 100 epochs, batch 96"
    assert "4 (non-paper sizes: C=36, 20 cells, 100 epochs, batch 96)" in (out / "s5-cifar10.md").read_text()
    evals = {r["arch"] for r in read_csv(out / "eval-cifar10.csv")}
    assert "c10_pt_1 (non-paper sizes: C=36, 20 cells, 100 epochs, batch 96)" in evals and "c10_pt_1" in evals
    assert not any(a.startswith("smoke_5") for a in evals)
    inventory = {r["run"]: r for r in read_csv(out / "runs.csv")}
    assert inventory["sota/cifar10/search-darts-sota-s5-5"]["fast"] == "True"
    assert inventory["sota/cifar10/search-darts-sota-s5-5"]["counted"] == "False"
    smoke_section = (out / "index.md").read_text().split("## Smoke runs (--fast)")[1]
    assert all(f"`{rel}`" in smoke_section for rel in ("sota/cifar10/search-darts-sota-s5-5",
                                                       "sota/cifar10/eval/eval-smoke_5-0"))

    proc = report(darts_tree, "--include_fast")
    assert proc.returncode == 0, proc.stderr
    rows = {(r["method"], r["setting"]): r for r in read_csv(out / "s5-cifar10.csv")}
    assert rows[("DARTS", "3 epochs")]["runs"] == "2" and rows[("DARTS", "3 epochs")]["paper"] == "3.00 ± 0.14"
    fast_pt = rows[("DARTS+PT", "supernet epoch 3, --fast")]
    assert fast_pt["runs"] == "1" and fast_pt["paper"] == "" and fast_pt["eval_runs"] == "1"
    assert fast_pt["eval_setting"] == "non-paper sizes: C=36, 20 cells, 1 epochs, batch 96, --fast"
    assert rows[("DARTS+PT", "supernet epoch 3")]["eval_runs"] == "4"  # the smoke evaluation is not among them
    assert rows[("DARTS", "3 epochs, --fast")]["paper"] == ""


# -- pieces ----------------------------------------------------------------------------------

def test_nb201_params_match_the_benchmark():
    from nasbench201.genotypes import nb201_params_mb

    best = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert nb201_params_mb(best, 10) == pytest.approx(1.531546)  # NAS-Bench-201's count for this arch
    empty = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert nb201_params_mb(empty, 10) < nb201_params_mb(empty, 100) < 0.1
    assert nb201_params_mb("garbage", 10) is None


def test_mean_std_formatting():
    from analysis.tables import fmt_mean_std, mean_std

    assert fmt_mean_std([1.0, 3.0], 0) == "2.00 ± 1.00"
    assert fmt_mean_std([1.0, 3.0], 1) == f"2.00 ± {np.std([1.0, 3.0], ddof=1):.2f}"
    assert fmt_mean_std([5.0], 0) == "5.00" and fmt_mean_std([], 0) == "—"
    assert mean_std([float("nan"), 2.0, None], 0) == (2.0, None)


def test_unreadable_files_never_crash(tmp_path):
    from analysis.runs import discover

    nb = tmp_path / "nasbench201"
    _write(nb / "search-darts-201-1", "[1, 2]")                        # JSON, but not an object
    _write(nb / "search-darts-201-2", {"status": "finished", "method": "darts", "space": "nasbench201",
                                       "dataset": "cifar10", "seed": 2})  # finished without a genotype
    _write(nb / "search-darts-201-3", {"status": "weird"})
    (nb / "search-darts-201-4").mkdir()
    (nb / "search-darts-201-4" / "log.txt").write_text("started")      # no result.json yet
    (nb / "search-darts-201-4" / "history.jsonl").write_bytes(b"\xff\xfe{")
    runs = {r.rel: r for r in discover(tmp_path)}
    assert {r.status for r in runs.values()} == {"unreadable"}
    assert runs["nasbench201/search-darts-201-4"].detail == "no result.json"
    assert runs["nasbench201/search-darts-201-4"].seed == 4 and runs["nasbench201/search-darts-201-4"].label == "DARTS"
    assert "genotype" in runs["nasbench201/search-darts-201-2"].detail
    proc = report(tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = read_csv(tmp_path / "report" / "nasbench201-cifar10.csv")[0]
    assert row["runs"] == "0" and row["not_counted"] == "4 unreadable"


def test_cli_without_side_effects(tmp_path):
    code = ("import sys, analysis.__main__ as r; assert 'matplotlib' not in sys.modules; "
            "p = r.build_parser(); a = p.parse_args([]); print(a.experiments, a.out)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(REPO / "experiments")
    proc = report(tmp_path / "missing")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_sdarts_adv_apart_and_studies_reported_on_their_own(tmp_path):
    """SDARTS-ADV runs (perturb_alpha pgd_linf) get rows of their own; a study under the
    experiments folder is left to its own report."""
    from analysis.runs import discover

    c10 = tmp_path / "sota" / "cifar10"
    for save, perturb in (("sdarts-rs-sota", "random"), ("sdarts-adv-sota", "pgd_linf")):
        search = c10 / f"search-{save}-s5-1"
        _write(search, {"status": "finished", "space": "s5", "method": "sdarts", "perturb_alpha": perturb,
                        "dataset": "cifar10", "seed": 1, "epochs": 3, "genotype": _genotype(["skip_connect"])})
        _write(search / f"{save.replace('-sota', '-proj-sota')}-seed1-acc-intv1-ep3",
               {"status": "finished", "space": "s5", "method": "sdarts-proj", "perturb_alpha": perturb,
                "dataset": "cifar10", "seed": 1, "genotype": _genotype(["sep_conv_3x3"])})
    _write(c10 / "search-sdarts-adv-sota-s5-2", {"status": "running", "dataset": "cifar10"})  # by its name
    study = tmp_path / "studies" / "grid"
    _write(study / "runs" / "sota" / "cifar10" / "search-darts-sota-s5-1",
           {"status": "finished", "space": "s5", "method": "darts", "dataset": "cifar10", "seed": 1,
            "genotype": _genotype(["skip_connect"])})
    (study / "study.json").write_text("{}")
    labels = sorted(r.label for r in discover(tmp_path))
    assert labels == ["SDARTS", "SDARTS+PT", "SDARTS-ADV", "SDARTS-ADV", "SDARTS-ADV+PT"]
    assert [r.label for r in discover(study)] == ["DARTS"]


def test_imagenet_transfer_rows(darts_tree):
    """ImageNet evaluations of a projected genotype: top-1/top-5 error, params, mult-adds and the
    paper's row, selected by the projection that registered the genotype; the CIFAR-10 rows keep
    their own evaluations only."""
    inet = darts_tree / "sota" / "imagenet" / "eval"
    for seed, (top1, top5) in enumerate([(25.0, 7.5), (26.0, 8.5)]):
        _write(inet / f"eval-c10_pt_1-{seed}",
               {"status": "finished", "kind": "eval", "arch": "c10_pt_1", "dataset": "imagenet", "seed": seed,
                "epochs": 250, "epochs_done": 250, "init_channels": 48, "layers": 14, "params_mb": 4.5,
                "mult_adds_m": 520.0, "best_test_acc": 100 - top1, "final_test_acc": 100 - top1,
                "final_test_error": top1, "final_test_acc_top5": 100 - top5, "final_test_error_top5": top5,
                "train_time_s": 3600.0})
    proc = report(darts_tree)
    assert proc.returncode == 0, proc.stderr
    out = darts_tree / "report"
    row = read_csv(out / "eval-imagenet.csv")[0]
    assert row["arch"] == "c10_pt_1" and row["selected_by"] == "DARTS+PT (s5-cifar10)" and row["runs"] == "2"
    assert float(row["test_error_mean"]) == 25.5 and float(row["top5_error_mean"]) == 8.0
    assert float(row["params_mb"]) == 4.5 and float(row["mult_adds_m"]) == 520.0
    assert row["paper"] == "25.5 / 8.0 (4.6M)"
    md = (out / "eval-imagenet.md").read_text()
    assert "| top-5 error (%) |" in md and "| 8.00 ± 0.50 |" in md and "| 520 | 25.5 / 8.0 (4.6M) |" in md
    assert next(r for r in read_csv(out / "s5-cifar10.csv") if r["method"] == "DARTS+PT")["eval_runs"] == "3"
