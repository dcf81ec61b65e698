"""Second-order DARTS (`--unrolled`, common/methods/darts2.py).

The step is quark0/darts' `cnn/architect.py` (unrolled=True): the unit tests run it against that
architect line by line (benchmarks/reference.py `UnrolledReferenceStep`) on tiny float64 supernets;
the recorded trajectories of the authors' code are in tests/test_reference_steps.py (slow). Then:
resumed from a checkpoint to the bit, two processes equal to one (slow), refused with fix-alpha,
and end to end through the exp_scripts (slow): search with --unrolled, a projection that takes the
method from the search run's result.json, evaluation of the genotype by name.
"""
from __future__ import annotations

import copy
import re

import pytest
import torch

from benchmarks.reference import UnrolledReferenceStep
from common.arch import Architecture
from common.batchnorm import SyncBatchNorm2d
from common.checkpoint import save_checkpoint
from common.config import ConfigError, with_flags
from common.data import shard_slice
from common.distributed import Group
from common.methods import build_method
from common.methods.blank import FixAlpha
from common.methods.darts import DARTS
from common.methods.darts2 import DARTS2
from common.methods.sdarts import SDARTS
from common.search import load_search_checkpoint
from common.space import Space
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from sota.model_search import DartsSupernet
from tests.conftest import TEST_GPU, read_json, run_script
from tests.fixtures.configs import search_cfg
from tests.fixtures.equivalence import assert_same_supernet
from tests.fixtures.processes import assert_two_processes_step_as_one

TOL64 = dict(rtol=1e-10, atol=1e-12)
BATCH = 7  # two processes: shards of 4 and 3 images


def supernet(space: str, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    model = NB201Supernet(C=2, N=1) if space == "nb201" else DartsSupernet(2, 10, 3, "s5")  # a normal cell too
    return model.to(dtype)


def tiny(space: str, dtype: torch.dtype = torch.float64, sync_bn: bool = False) -> Space:
    """A tiny supernet (the same for every call), alpha far from uniform."""
    torch.manual_seed(0)
    model = supernet(space, dtype)
    if sync_bn:
        model = SyncBatchNorm2d.convert(model)
    arch = Architecture(model.arch_shapes(), dtype=dtype)
    with torch.no_grad():
        for a in arch.parameters():
            a.normal_()
    return Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)


def batches(space: str, steps: int, dtype: torch.dtype = torch.float64, n: int = 8) -> list[tuple]:
    """(x, y, x_alpha, y_alpha) per step."""
    g = torch.Generator().manual_seed(1)
    size = 8
    return [(torch.randn(n, 3, size, size, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g),
             torch.randn(n, 3, size, size, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g))
            for _ in range(steps)]


def step(trainer: Trainer, x, y, xa, ya) -> None:
    trainer.alpha_step(xa, ya, train=(x, y, len(y)))
    trainer.weight_step(x, y)


# -- the step ------------------------------------------------------------------------------------

def test_unrolled_selects_the_second_order_step():
    assert isinstance(build_method(search_cfg("--unrolled")), DARTS2)
    assert type(build_method(search_cfg())) is DARTS
    sdarts = build_method(search_cfg("--method", "sdarts", "--perturb_alpha", "random", "--unrolled", space="sota"))
    assert isinstance(sdarts, SDARTS) and sdarts.second_order
    assert not build_method(search_cfg("--method", "sdarts", "--perturb_alpha", "random", space="sota")).second_order


@pytest.mark.parametrize("space,projected", [("nb201", False), ("s5", False), ("nb201", True)])
def test_step_is_quark0_architect(space, projected):
    """Three steps (the second and third use SGD's momentum buffers in the virtual step): the alpha
    gradient handed to Adam, alpha, and after the weight step every parameter and batch-norm
    statistic (the forward passes at w, w+ and w- update them, the one at w' does not) agree with
    quark0's architect in float64. With an edge decided (NAS-Bench-201, whose original computes
    dead ops times 0) the alphas still agree; only the dead ops' weights differ (not computed here)."""
    sp = tiny(space)
    if projected:
        sp.arch.project_op("cell", 1, 2)
    ref_model, ref_arch = copy.deepcopy(sp.model), copy.deepcopy(sp.arch)
    cfg = search_cfg("--unrolled")
    trainer = Trainer(sp, None, cfg, torch.device("cpu"))
    ref = UnrolledReferenceStep(ref_model, ref_arch, cfg, new_model=lambda: supernet(space))
    for i, (x, y, xa, ya) in enumerate(batches(space, 3)):
        trainer.alpha_step(xa, ya, train=(x, y, len(y)))
        ref.alpha_step(xa, ya, x, y)
        for a, b in zip(sp.arch.parameters(), ref_arch.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, **TOL64, msg=lambda m: f"step {i} alpha gradient: {m}")
            torch.testing.assert_close(a, b, **TOL64, msg=lambda m: f"step {i} alpha: {m}")
        trainer.weight_step(x, y)
        ref.weight_step(x, y)
        if projected:
            continue
        mine, theirs = sp.model.state_dict(), ref_model.state_dict()
        assert mine.keys() == theirs.keys()
        for k, v in theirs.items():
            torch.testing.assert_close(mine[k].to(v.dtype), v, **TOL64, msg=lambda m: f"step {i} {k}: {m}")
    if not projected:
        assert int(sp.model.stem[1].num_batches_tracked) == 4 * 3  # w, w+, w- and the weight step


def test_second_order_is_not_first_order():
    """The same step with and without --unrolled moves alpha differently (the implicit term counts)."""
    x, y, xa, ya = batches("nb201", 1)[0]
    alphas = []
    for flags in ((), ("--unrolled",)):
        sp = tiny("nb201")
        step(Trainer(sp, None, search_cfg(*flags), torch.device("cpu")), x, y, xa, ya)
        alphas.append(sp.arch.parameters()[0].detach())
    assert not torch.allclose(alphas[0], alphas[1], rtol=0, atol=1e-9)


def test_sdarts_takes_the_second_order_step_and_skipped_ops_still_move():
    """SDARTS --unrolled: the alpha step is second-order DARTS' (the perturbation comes after it);
    an op the perturbation zeroes is skipped by the weight step, yet its weights have zero-filled
    gradients and move by weight decay, as with PyTorch 1.x (the first step made their tensors)."""
    x, y, xa, ya = batches("s5", 1)[0]

    def drop_sep_conv(model, weights, x_, y_, eps, project):  # op 3 of every edge at exactly 0
        return {k: w.index_fill(1, torch.tensor([3]), 0.0) for k, w in weights.items()}

    sdarts, darts2 = tiny("s5"), tiny("s5")
    smooth = Trainer(sdarts, None, search_cfg("--unrolled"), torch.device("cpu"),
                     method=SDARTS(drop_sep_conv, 0.3, second_order=True))
    plain = Trainer(darts2, None, search_cfg("--unrolled"), torch.device("cpu"))
    for t in (smooth, plain):
        t.alpha_step(xa, ya, train=(x, y, len(y)))
    assert all(torch.equal(a, b) for a, b in zip(sdarts.arch.parameters(), darts2.arch.parameters(), strict=True))
    op3 = re.compile(r"_ops\.\d+\._ops\.3\.")  # cells.C._ops.EDGE._ops.3.
    skipped = {n: p.detach().clone() for n, p in sdarts.model.named_parameters() if op3.search(n)}
    assert skipped
    smooth.weight_step(x, y)
    params = dict(sdarts.model.named_parameters())
    for name, before in skipped.items():
        assert params[name].grad is not None and not params[name].grad.any(), name
        assert not torch.equal(params[name], before), name


def test_resumed_from_a_checkpoint_continues_to_the_bit(tmp_path):
    """Three steps in one go, and one step, a checkpoint, a new Trainer loading it (momentum
    buffers, gradient tensors, Adam) and two more: the same alphas and weights, to the bit."""
    data = batches("nb201", 3, torch.float32)

    def trainer() -> Trainer:
        return Trainer(tiny("nb201", torch.float32), None, search_cfg("--unrolled"), torch.device("cpu"))

    full = trainer()
    for b in data:
        step(full, *b)
    cut = trainer()
    step(cut, *data[0])
    path = tmp_path / "checkpoint_1.pth.tar"
    save_checkpoint({"epoch": 1, **cut.state(), **cut.group.rng_states(cut.device)}, path)
    resumed = trainer()
    load_search_checkpoint(resumed, path, resume=True)
    for b in data[1:]:
        step(resumed, *b)
    assert_same_supernet(full, resumed)


def test_unrolled_fix_alpha_is_refused():
    """Fix-alpha never trains alpha: --unrolled with it is refused in one line; a fix-alpha
    projection of a second-order supernet (unrolled taken from the search run) is fine."""
    with pytest.raises(ConfigError, match=r"^--unrolled True: fix-alpha \(--method blank\) never trains alpha"):
        search_cfg("--method", "blank", "--unrolled")
    with pytest.raises(ConfigError, match=r"^--unrolled True: fix-alpha"):
        search_cfg("--method", "blank-proj", "--unrolled", space="sota")
    taken = with_flags(search_cfg("--method", "blank-proj"), {"unrolled": True})
    assert taken.alpha.unrolled and isinstance(build_method(taken), FixAlpha)


# -- studies and reports --------------------------------------------------------------------------------

def test_a_study_runs_darts2_through_the_darts_scripts(tmp_path):
    """--method darts2: the DARTS scripts with --unrolled, folders of their own (--save darts2-*); the
    projection takes --unrolled from its search run; --unrolled itself is the study's to set."""
    from study.flags import FlagError, RunFlags
    from study.plan import Context, Run, command, run_folder

    ctx = Context(tmp_path, RunFlags())
    for space, script, folder in (("nb201", "darts-201.sh", "nasbench201/search-darts2-201-1"),
                                  ("s5", "darts-sota.sh", "sota/cifar10/search-darts2-sota-s5-1")):
        search, proj = (Run(space, "cifar10", "darts2", 1, stage) for stage in ("search", "proj"))
        line = " ".join(command(search, ctx))
        assert f"exp_scripts/{script} " in line and "--unrolled --save darts2-" in line
        assert run_folder(search, ctx) == tmp_path / "runs" / folder
        line = " ".join(command(proj, ctx))
        assert script.replace("-", "-proj-", 1) in line and "--unrolled" not in line
        assert f"--resume_expid {folder.rsplit('/', 1)[1]}" in line
    with pytest.raises(FlagError, match="--unrolled is set by the study"):
        RunFlags.parse(["--unrolled"])


def test_reports_give_second_order_rows_of_their_own(tmp_path):
    """Runs with unrolled in result.json (or a darts2 folder name) are "DARTS (2nd order)" and
    "DARTS (2nd order)+PT", next to the DARTS paper's 2.76 ± 0.09 on the DARTS space."""
    import csv
    import json
    import subprocess
    import sys

    from analysis.runs import discover
    from sota.genotypes import DARTS_V2
    from tests.conftest import REPO

    c10 = tmp_path / "sota" / "cifar10"
    for save, unrolled in (("darts-sota", False), ("darts2-sota", True)):
        search = c10 / f"search-{save}-s5-1"
        result = {"status": "finished", "space": "s5", "method": "darts", "unrolled": unrolled, "dataset": "cifar10",
                  "seed": 1, "epochs": 50, "genotype": str(DARTS_V2)}
        (search / "proj").mkdir(parents=True)
        (search / "result.json").write_text(json.dumps(result))
        (search / "proj" / "result.json").write_text(json.dumps({**result, "method": "darts-proj"}))
    (c10 / "search-darts2-sota-s5-2").mkdir()
    (c10 / "search-darts2-sota-s5-2" / "log.txt").write_text("")  # no result.json: its name says second order
    assert sorted(r.label for r in discover(tmp_path)) == ["DARTS", "DARTS (2nd order)", "DARTS (2nd order)",
                                                           "DARTS (2nd order)+PT", "DARTS+PT"]
    proc = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "report" / "s5-cifar10.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["DARTS", "DARTS+PT", "DARTS (2nd order)", "DARTS (2nd order)+PT"]
    assert rows["DARTS (2nd order)"]["paper"] == "2.76 ± 0.09" and rows["DARTS"]["paper"] == "3.00 ± 0.14"


@pytest.mark.slow
def test_benchmark_times_second_order_against_quark0_and_first_order(capsys):
    from benchmarks import bench_search

    assert bench_search.main(["--device", "cpu", "--spaces", "nb201", "--variants", "fast,darts2,reference2",
                              "--batch_size", "2", "--steps", "1", "--warmup", "0", "--proj_batches", "1",
                              "--no_eval"]) == 0
    out = capsys.readouterr().out
    assert "nb201 cpu darts2 search_step_s=" in out and "nb201 cpu reference2 search_step_s=" in out
    assert "nb201 cpu speedup darts2_vs_reference2 search_step=" in out
    assert "nb201 cpu cost darts2_vs_fast search_step=" in out and " peak_mem=" in out


# -- two processes (torch.multiprocessing, gloo) --------------------------------------------------------

def _two_steps(space: str, group: Group, sync_bn: bool) -> dict[str, list[torch.Tensor]]:
    """Two steps of this process on its shards of float64 batches of BATCH images, an edge decided
    (its dead ops' zero-filled gradients are averaged like the others)."""
    sp = tiny(space, sync_bn=sync_bn)
    sp.arch.project_op(sp.arch.kinds[0], 1, 2)
    trainer = Trainer(sp, None, search_cfg("--unrolled"), torch.device("cpu"), group=group)
    part = shard_slice(BATCH, group.rank, group.size)
    for x, y, xa, ya in batches(space, 2, n=BATCH):
        trainer.alpha_step(xa[part], ya[part], BATCH, train=(x[part], y[part], BATCH))
        trainer.weight_step(x[part], y[part], BATCH)
    return {"alpha": [a.detach() for a in sp.arch.parameters()], "state": list(sp.model.state_dict().values())}


@pytest.mark.slow
def test_two_processes_take_one_process_steps(tmp_path):
    """With --sync_bn, two processes' second-order steps give one process's alphas and state_dict
    (running statistics included) to float64 rounding, and both processes hold the same supernet."""
    assert_two_processes_step_as_one(_two_steps, tmp_path)


# -- end to end -------------------------------------------------------------------------------------------

NB = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100",
      "--gpu", TEST_GPU, "--no_tensorboard"]
SOTA = ["--batch_size", "16", "--init_channels", "4", "--layers", "3", "--report_freq", "100",
        "--gpu", TEST_GPU, "--no_tensorboard"]


def batches_tracked(checkpoint) -> int:
    return int(torch.load(checkpoint, weights_only=True)["state_dict"]["stem.1.num_batches_tracked"])


@pytest.mark.slow
def test_nb201_search_and_projection_through_the_scripts(tmp_path, cifar10_dir, bench):
    """darts-201.sh --unrolled searches second order (4 batch-norm updates a step); darts-proj-201.sh
    takes --unrolled from the search run's result.json and tunes second order too."""
    common = ["--data", str(cifar10_dir), "--exp_root", str(tmp_path), "--api_path", str(bench[0]), *NB]
    run_script("darts-201.sh", *common, "--unrolled", "--epochs", "1")
    folder = tmp_path / "nasbench201" / "search-darts-201-1"
    result = read_json(folder / "result.json")
    assert (result["status"], result["method"], result["unrolled"]) == ("finished", "darts", True)
    assert batches_tracked(folder / "checkpoint_1.pth.tar") == 4 * 3  # 48 weight images: 3 steps of 16

    out = run_script("darts-proj-201.sh", *common, "--resume_epoch", "1", "--proj_intv", "1").stdout
    assert re.search(r"taken from the search run's result\.json: .*--unrolled True", out), out[-3000:]
    proj = folder / "darts-proj-201-seed1-acc-intv1-ep1"
    result = read_json(proj / "result.json")
    assert (result["status"], result["method"], result["unrolled"]) == ("finished", "darts-proj", True)
    assert result["benchmark"] == bench[1][result["genotype"]]
    tuned = [batches_tracked(proj / f"checkpoint_{e}.pth.tar") for e in (0, 1)]
    assert tuned[1] - tuned[0] == 5 * 3 + 4 * 3  # round 0 scores 5 ops on 3 batches (train mode), then 3 steps


@pytest.mark.slow
def test_darts_space_search_projection_and_evaluation_through_the_scripts(tmp_path, small_cifar10):
    """darts-sota.sh --unrolled (S2: two ops per edge, the fewest scoring passes), its projection and
    the evaluation of the genotype it registered, by name."""
    common = ["--data", str(small_cifar10), "--exp_root", str(tmp_path), "--space", "s2", *SOTA]
    run_script("darts-sota.sh", *common, "--unrolled", "--epochs", "1")
    folder = tmp_path / "sota" / "cifar10" / "search-darts-sota-s2-2"
    assert read_json(folder / "result.json")["unrolled"] is True
    assert batches_tracked(folder / "checkpoint_1.pth.tar") == 4  # one step of 16

    run_script("darts-proj-sota.sh", *common, "--resume_epoch", "1", "--proj_intv", "1", "--fast",
               "--genotype_name", "second_order")
    result = read_json(folder / "darts-proj-sota-seed2-acc-intv1-ep1" / "result.json")
    assert (result["status"], result["unrolled"], result["genotype_name"]) == ("finished", True, "second_order")

    run_script("eval.sh", "--arch", "second_order", "--data", str(small_cifar10), "--exp_root", str(tmp_path),
               "--init_channels", "4", "--layers", "3", "--batch_size", "16", "--epochs", "1", "--gpu", TEST_GPU,
               "--no_tensorboard", "--report_freq", "100")
    evaluated = read_json(tmp_path / "sota" / "cifar10" / "eval" / "eval-second_order-2" / "result.json")
    assert evaluated["status"] == "finished" and evaluated["arch"] == "second_order"
