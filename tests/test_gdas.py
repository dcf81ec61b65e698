"""GDAS (common/methods/gdas.py) against the authors' code, and through the project's machinery.

tests/reference/steps/steps_nb201_gdas_C4.pt and steps_darts_gdas_C4_N2.pt hold three float64 steps of
AutoDL-Projects' GDAS (weight step, then arch step, each on its own Gumbel sample) with the Gumbel
noise each forward drew. The project's Trainer, fed the same noise, must agree to 1e-12: the
NAS-Bench-201 file on the project's own supernet (the same network), the DARTS-space file on
tests/fixtures/autodl_nasnet.py, a test-only network with AutoDL's `NASNetworkGDAS` layout that
speaks the space contract (the project's DARTS-space supernet is DARTS-PT's, a different network).
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from common.arch import Architecture
from common.config import ConfigError
from common.methods.gdas import GDAS
from common.space import Space
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from tests.fixtures.autodl_nasnet import OPS, AutoDLNASNet
from tests.fixtures.configs import search_cfg
from tests.fixtures.equivalence import assert_same_supernet
from tests.fixtures.processes import assert_two_processes_step_as_one
from tests.fixtures.reference import project_reference_file

TOL = 1e-12


def load(name: str) -> dict:
    return torch.load(project_reference_file(f"steps/{name}"), map_location="cpu", weights_only=False)


class Replayed:
    """The recorded Gumbel noise, in the order the forwards drew it, instead of the generator."""

    def __init__(self, steps: list[dict]) -> None:
        self.gumbels = [g for s in steps for g in s["gumbels_weight_step"] + s["gumbels_alpha_step"]]

    def __call__(self, alpha: torch.Tensor) -> torch.Tensor:
        return self.gumbels.pop(0).to(alpha.dtype)


def reference_trainer(ref: dict, model: torch.nn.Module, memory_format: str = "contiguous") -> Trainer:
    """A GDAS Trainer with the file's hyper-parameters, initial state and noise."""
    state = dict(ref["init_state_dict"])
    for name in ref["alpha_names"]:
        state.pop(name)
    model.load_state_dict(state)
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(arch.parameters(), ref["init_alphas"], strict=True):
            a.copy_(b)
    h = ref["hyper"]
    flags = {k: h[k] for k in ("learning_rate", "momentum", "weight_decay", "arch_learning_rate",
                               "arch_weight_decay", "grad_clip", "tau_max", "tau_min")}
    cfg = search_cfg("--method", "gdas", *(f"--{k}={v}" for k, v in flags.items()), "--nesterov",
                     "--memory_format", memory_format)
    space = Space(label="ref", model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    trainer = Trainer(space, None, cfg, torch.device("cpu"))
    assert isinstance(trainer.method, GDAS)
    assert tuple(trainer.a_opt.defaults["betas"]) == tuple(ref["adam_betas"])
    trainer.method.noise = Replayed(ref["steps"])
    return trainer


def replay(ref: dict, trainer: Trainer, state_keys: Callable[[str], str] = lambda k: k) -> None:
    """The file's steps, each checked: sampled ops, losses, clipped norm, alphas, state sums; then
    the final state_dict (`state_keys`: the file's key of a model key)."""
    method, model = trainer.method, trainer.model
    assert isinstance(method, GDAS)
    h = ref["hyper"]
    sampled: list[list[int]] = []
    norms: list[float] = []
    sample, clip = method.sample, torch.nn.utils.clip_grad_norm_

    def kept_sample(t: Trainer):
        weights, active = sample(t)
        sampled.append([ops[0] for kind in t.arch.kinds for ops in active[kind]])
        return weights, active

    def kept_clip(params, max_norm):
        norms.append(float(clip(params, max_norm)))
        return norms[-1]

    method.sample = kept_sample  # type: ignore[method-assign]
    torch.nn.utils.clip_grad_norm_ = kept_clip
    try:
        model.train()
        for i, step in enumerate(ref["steps"]):
            epoch = step["epoch"]
            assert method.start_epoch(epoch, h["total_epochs"], tuning=False) == f" tau {step['tau']:g}"
            assert method.tau == step["tau"]
            trainer.w_opt.param_groups[0]["lr"] = step["lr"]
            _, loss = trainer.weight_step(step["x"].double(), step["y"])
            trainer.alpha_step(step["x_alpha"].double(), step["y_alpha"])
            assert sampled[-2] == torch.cat(step["index_weight_step"]).tolist(), f"step {i} weight sample"
            assert sampled[-1] == torch.cat(step["index_alpha_step"]).tolist(), f"step {i} alpha sample"
            assert loss.item() == pytest.approx(step["loss"], rel=0, abs=TOL), f"step {i} loss"
            assert norms[-1] == pytest.approx(step["grad_norm"], rel=0, abs=TOL), f"step {i} clipped norm"
            for a, b in zip(trainer.arch.parameters(), step["alphas"], strict=True):
                torch.testing.assert_close(a.detach(), b, rtol=0, atol=TOL, msg=lambda m: f"step {i} alpha: {m}")
            ours = {state_keys(k): v for k, v in model.state_dict().items()}
            names = [k for k in ref["final_state_dict"] if k not in ref["alpha_names"]]
            sums = dict(zip(ref["final_state_dict"], step["state_sums"].tolist()))
            for k in names:
                assert ours[k].double().sum().item() == pytest.approx(sums[k], rel=1e-12, abs=TOL), f"step {i} {k}"
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
    ours = {state_keys(k): v for k, v in model.state_dict().items()}
    final = {k: v for k, v in ref["final_state_dict"].items() if k not in ref["alpha_names"]}
    assert ours.keys() == final.keys()
    for k, v in final.items():
        torch.testing.assert_close(ours[k].to(v.dtype), v, rtol=TOL, atol=TOL, msg=lambda m: f"final {k}: {m}")


# -- the authors' trajectories -------------------------------------------------------------------

@pytest.mark.parametrize("memory_format", ["contiguous", pytest.param("channels_last", marks=pytest.mark.slow)])
def test_nb201_steps_match_autodl(memory_format: str) -> None:
    ref = load("steps_nb201_gdas_C4.pt")
    model = NB201Supernet(ref["C"], ref["N"], ref["num_classes"]).double()
    replay(ref, reference_trainer(ref, model, memory_format))


@pytest.mark.parametrize("memory_format", ["contiguous", pytest.param("channels_last", marks=pytest.mark.slow)])
def test_darts_space_steps_match_autodl(memory_format: str) -> None:
    """The project's GDAS step on AutoDL's DARTS-space network (tests/fixtures/autodl_nasnet.py)."""
    ref = load("steps_darts_gdas_C4_N2.pt")
    assert tuple(ref["op_names"]) == OPS
    model = AutoDLNASNet(ref["C"], ref["N"], ref["num_classes"]).double()
    replay(ref, reference_trainer(ref, model, memory_format))


@pytest.mark.parametrize("space", ["s1", "s2", "s3", "s4", "s5"])
def test_gdas_composes_with_every_darts_space(space: str) -> None:
    """On the project's DARTS-space supernet, every space: steps compute one op per edge and move alpha."""
    from sota.model_search import DartsSupernet

    torch.manual_seed(0)
    model = DartsSupernet(2, 10, 3, space)
    arch = Architecture(model.arch_shapes())
    sp = Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)
    trainer = Trainer(sp, None, search_cfg("--method", "gdas", space="sota"), torch.device("cpu"))
    actives: list = []
    forward = trainer.forward_loss
    trainer.forward_loss = lambda x, y, w, active, n=None: (actives.append(active), forward(x, y, w, active, n))[1]
    before = [a.detach().clone() for a in arch.parameters()]
    take_steps(trainer, step_batches(2))
    assert all(len(ops) == 1 for active in actives for kind in arch.kinds for ops in active[kind])
    assert all(not torch.equal(a, b) for a, b in zip(arch.parameters(), before, strict=True))


# -- the method ------------------------------------------------------------------------------------

def gdas_trainer(*flags: str, seed: int = 0) -> Trainer:
    from tests.test_methods import tiny_trainer

    trainer = tiny_trainer(search_cfg("--method", "gdas", "--seed", str(seed), *flags))
    assert isinstance(trainer.method, GDAS)
    return trainer


def test_an_epoch_takes_the_weight_step_first_each_on_a_sample_of_one_op_per_edge():
    """GDAS.py's loop: weight step, then arch step, each forward on its own hard sample: one op
    computed per undecided edge (a decided edge: its projected op), one-hot weights whose gradient
    reaches alpha (the weight step's too: the clipping counts it)."""
    trainer = gdas_trainer()
    trainer.arch.project_op("cell", 2, 3)
    calls: list[str] = []
    forwards: list[tuple] = []
    for name in ("weight_step", "alpha_step"):
        step = getattr(trainer, name)
        setattr(trainer, name, lambda *a, step=step, name=name, **k: (calls.append(name), step(*a, **k))[1])
    forward = trainer.forward_loss
    trainer.forward_loss = lambda x, y, w, active, n=None: (forwards.append((w, active)),
                                                            forward(x, y, w, active, n))[1]
    before = trainer.arch.alphas["cell"].detach().clone()
    trainer.method.start_epoch(0, 3, tuning=False)
    trainer.train_epoch(0, train_alpha=True, cutout_prob=0.0)
    assert calls == ["weight_step", "alpha_step"] * 2  # 16 weight images, batches of 8
    assert len(forwards) == 4 and not torch.equal(trainer.arch.alphas["cell"], before)
    for weights, active in forwards:
        w = weights["cell"]
        assert w.requires_grad
        assert [len(ops) for ops in active["cell"]] == [1] * 6 and active["cell"][2] == [3]
        assert torch.equal(w.detach(), torch.nn.functional.one_hot(torch.tensor(active["cell"]).flatten(), 5).to(w))
    samples = {tuple(ops[0] for ops in active["cell"]) for _, active in forwards}
    assert len(samples) > 1  # a new sample per forward


def test_tau_falls_linearly_and_tuning_keeps_the_last():
    method = GDAS(10.0, 0.1)
    assert [float(method.start_epoch(e, 5, tuning=False).split()[1]) for e in range(5)] == [10, 7.525, 5.05, 2.575,
                                                                                             0.1]
    assert method.start_epoch(0, 25, tuning=True) == " tau 0.1"
    assert GDAS(2.0, 0.5).start_epoch(0, 1, tuning=False) == " tau 2"  # one epoch: tau_max


def test_scoring_passes_mix_softmax_of_alpha_at_tau_and_the_genotype_reads_alpha():
    """Evaluation and projection scoring are deterministic: softmax(alpha / tau), decided rows
    projected; the genotype is the argmax of alpha (softmax(alpha))."""
    from common.method import EVAL, GENOTYPE

    trainer = gdas_trainer()
    method, arch = trainer.method, trainer.arch
    with torch.no_grad():
        arch.alphas["cell"].normal_()
    method.start_epoch(4, 5, tuning=False)
    arch.project_op("cell", 1, 4)
    expected = torch.softmax(arch.alphas["cell"] / 0.1, -1)
    expected[1] = torch.eye(5)[4]
    torch.testing.assert_close(trainer.weights(EVAL)["cell"], expected)
    assert torch.equal(trainer.weights(EVAL)["cell"], trainer.weights(EVAL)["cell"])
    torch.testing.assert_close(trainer.weights(GENOTYPE)["cell"][0], torch.softmax(arch.alphas["cell"][0], -1))


def step_batches(count: int) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g),
             torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(count)]


def take_steps(trainer: Trainer, batches: list[tuple[torch.Tensor, ...]]) -> None:
    for x, y, xa, ya in batches:
        trainer.weight_step(x, y)
        trainer.alpha_step(xa, ya)


def test_resumed_from_a_checkpoint_continues_to_the_bit(tmp_path):
    """The sampler's state, tau and alpha's held gradient (which the next weight step's clipping
    counts; every step here clips) are in the checkpoint: three steps in one go equal one step, a
    checkpoint, a new Trainer loading it, and two more, to the bit."""
    from common.checkpoint import save_checkpoint
    from common.search import load_search_checkpoint

    batches = step_batches(3)
    clip = ("--grad_clip", "0.01")
    full, cut = gdas_trainer(*clip), gdas_trainer(*clip)
    for trainer in (full, cut):
        trainer.method.start_epoch(1, 4, tuning=False)
    take_steps(full, batches)
    take_steps(cut, batches[:1])
    path = tmp_path / "checkpoint_1.pth.tar"
    save_checkpoint({"epoch": 1, **cut.state(), **cut.group.rng_states(cut.device)}, path)
    assert torch.load(path, weights_only=True)["method_state"]["tau"] == pytest.approx(6.7)
    resumed = gdas_trainer(*clip)
    load_search_checkpoint(resumed, path, resume=True)
    assert resumed.method.tau == cut.method.tau
    take_steps(resumed, batches[1:])
    assert_same_supernet(full, resumed)


def test_a_checkpoint_searched_at_another_temperature_is_refused(tmp_path):
    from common.checkpoint import CheckpointError, save_checkpoint
    from common.search import load_search_checkpoint

    trainer = gdas_trainer("--tau_max", "5")
    path = tmp_path / "checkpoint_1.pth.tar"
    save_checkpoint({"epoch": 1, **trainer.state()}, path)
    with pytest.raises(CheckpointError, match=r"searched with --tau_max 5 --tau_min 0\.1; pass those"):
        load_search_checkpoint(gdas_trainer(), path)


@pytest.mark.parametrize("flags, message", [
    (["--method", "gdas", "--tau_max", "1", "--tau_min", "2"],
     r"^--tau_min 2\.0: the temperature falls from --tau_max 1 to --tau_min: pass a value at most --tau_max$"),
    (["--method", "gdas", "--tau_min", "0"], r"^--tau_min 0\.0: must be a finite number > 0"),
    (["--method", "gdas", "--tau_max", "nan"], r"^--tau_max nan: must be a finite number > 0"),
    (["--method", "gdas-proj", "--tau_max", "-1"], r"^--tau_max -1\.0: must be a finite number > 0"),
    (["--method", "darts", "--tau_max", "4"], r"^--tau_max 4\.0: only GDAS has a temperature: pass --method gdas"),
    (["--method", "gdas", "--unrolled"], r"^--unrolled True: GDAS' arch step is first order"),
    (["--method", "gdas-proj", "--compile"], r"^--compile True: GDAS computes another sampled op per edge"),
])
def test_bad_gdas_flags_are_refused_in_one_line(flags, message):
    with pytest.raises(ConfigError, match=message):
        search_cfg(*flags)


# -- two processes (torch.multiprocessing, gloo) ----------------------------------------------------

BATCH = 7  # shards of 4 and 3 images


def _tiny(space: str, sync_bn: bool) -> Space:
    from common.batchnorm import SyncBatchNorm2d
    from sota.model_search import DartsSupernet

    torch.manual_seed(0)
    model = (NB201Supernet(C=2, N=1) if space == "nb201" else DartsSupernet(2, 10, 3, "s5")).double()
    if sync_bn:
        model = SyncBatchNorm2d.convert(model)
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    with torch.no_grad():
        for a in arch.parameters():
            a.normal_()
    arch.project_op(arch.kinds[0], 1, 2)
    return Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None)


def _gdas_steps(space: str, group, sync_bn: bool) -> dict[str, list[torch.Tensor]]:
    """Three GDAS steps of this process on its shards; each process seeds its own noise (process 0's
    must count); every step clips, so alpha's gradient in the clipping must be averaged too."""
    from common.data import shard_slice

    sp = _tiny(space, sync_bn)
    trainer = Trainer(sp, None, search_cfg("--method", "gdas", "--grad_clip", "0.01"), torch.device("cpu"),
                      group=group, method=GDAS(seed=group.rank))  # every step clips
    trainer.method.start_epoch(1, 3, tuning=False)
    part = shard_slice(BATCH, group.rank, group.size)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, xa = (torch.randn(BATCH, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
        y, ya = (torch.randint(0, 10, (BATCH,), generator=g) for _ in range(2))
        trainer.weight_step(x[part], y[part], BATCH)
        trainer.alpha_step(xa[part], ya[part], BATCH)
    return {"alpha": [a.detach() for a in sp.arch.parameters()], "state": list(sp.model.state_dict().values())}


@pytest.mark.slow
def test_two_processes_take_one_process_steps(tmp_path):
    """With --sync_bn, two processes' GDAS steps (process 0's samples; alpha's gradient in the
    clipping averaged) give one process's alphas and state_dict to float64 rounding, and both
    processes hold the same supernet."""
    assert_two_processes_step_as_one(_gdas_steps, tmp_path)


# -- end to end, through the scripts ---------------------------------------------------------------

NB = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100",
      "--no_tensorboard"]
SOTA = ["--batch_size", "16", "--init_channels", "4", "--layers", "3", "--report_freq", "100",
        "--no_tensorboard"]


def batches_tracked(checkpoint) -> int:
    return int(torch.load(checkpoint, weights_only=True)["state_dict"]["stem.1.num_batches_tracked"])


@pytest.mark.slow
def test_nb201_search_and_projection_through_the_scripts(tmp_path, cifar10_dir, bench):
    """gdas-201.sh searches (tau 10 -> 0.1, two forwards a step); gdas-proj-201.sh tunes with GDAS'
    step at the last tau and scores with softmax(alpha / tau); the reports name both."""
    from tests.conftest import TEST_GPU, read_json, run_script

    common = ["--data", str(cifar10_dir), "--exp_root", str(tmp_path), "--api_path", str(bench[0]), *NB,
              "--gpu", TEST_GPU]
    out = run_script("gdas-201.sh", *common, "--epochs", "2").stdout
    folder = tmp_path / "nasbench201" / "search-gdas-201-1"
    result = read_json(folder / "result.json")
    assert (result["status"], result["method"], result["tau_max"], result["tau_min"]) == ("finished", "gdas", 10, 0.1)
    log = (folder / "log.txt").read_text()
    assert " tau 10" in log and " tau 0.1" in log, out
    assert batches_tracked(folder / "checkpoint_2.pth.tar") == 2 * 2 * 3  # 2 epochs of 3 steps, 2 forwards each
    state = torch.load(folder / "checkpoint_2.pth.tar", weights_only=True)["method_state"]
    assert state["tau"] == pytest.approx(0.1)

    run_script("gdas-proj-201.sh", *common, "--resume_epoch", "2", "--proj_intv", "1")
    proj = folder / "gdas-proj-201-seed1-acc-intv1-ep2"
    result = read_json(proj / "result.json")
    assert (result["status"], result["method"], result["tau_max"]) == ("finished", "gdas-proj", 10)
    assert result["benchmark"] == bench[1][result["genotype"]]
    assert "tuning epoch 0 of 6 tau 0.1\n" in (proj / "log.txt").read_text()
    tuned = [batches_tracked(proj / f"checkpoint_{e}.pth.tar") for e in (0, 1)]
    assert tuned[1] - tuned[0] == 5 * 3 + 2 * 3  # 5 scoring passes over 3 batches, 3 GDAS steps of two forwards


@pytest.mark.slow
def test_darts_space_search_projection_and_evaluation_through_the_scripts(tmp_path, small_cifar10):
    from tests.conftest import TEST_GPU, read_json, run_script

    common = ["--data", str(small_cifar10), "--exp_root", str(tmp_path), "--space", "s5", *SOTA, "--gpu", TEST_GPU]
    run_script("gdas-sota.sh", *common, "--epochs", "1")
    folder = tmp_path / "sota" / "cifar10" / "search-gdas-sota-s5-2"
    assert read_json(folder / "result.json")["method"] == "gdas"
    assert batches_tracked(folder / "checkpoint_1.pth.tar") == 2  # one step of 16, two forwards

    run_script("gdas-proj-sota.sh", *common, "--resume_epoch", "1", "--proj_intv", "1", "--fast",
               "--genotype_name", "gdas_pt")
    result = read_json(folder / "gdas-proj-sota-seed2-acc-intv1-ep1" / "result.json")
    assert (result["status"], result["method"], result["genotype_name"]) == ("finished", "gdas-proj", "gdas_pt")

    run_script("eval.sh", "--arch", "gdas_pt", "--data", str(small_cifar10), "--exp_root", str(tmp_path),
               "--init_channels", "4", "--layers", "3", "--batch_size", "16", "--epochs", "1", "--gpu", TEST_GPU,
               "--no_tensorboard", "--report_freq", "100")
    evaluated = read_json(tmp_path / "sota" / "cifar10" / "eval" / "eval-gdas_pt-2" / "result.json")
    assert evaluated["status"] == "finished" and evaluated["arch"] == "gdas_pt"


# -- studies, reports, benchmark ------------------------------------------------------------------

@pytest.mark.parametrize("dataset, paper", [("cifar10", "93.61 ± 0.09"), ("cifar100", "70.70 ± 0.30"),
                                            ("imagenet16-120", "41.71 ± 0.98")])
def test_reports_give_gdas_rows_next_to_the_published_numbers(tmp_path, dataset, paper):
    """GDAS and GDAS+PT rows, the NAS-Bench-201 paper's GDAS accuracy of the searched dataset beside GDAS."""
    import csv
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    genotype = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    suffix = "" if dataset == "cifar10" else f"-{dataset}"
    search = tmp_path / "nasbench201" / f"search-gdas-201-1{suffix}"
    result = {"status": "finished", "space": "nasbench201", "method": "gdas", "tau_max": 10.0, "tau_min": 0.1,
              "dataset": dataset, "seed": 1, "epochs": 250, "genotype": genotype,
              "benchmark": {"cifar10_test": 94.37, "cifar100_test": 73.51, "imagenet16_test": 47.31}}
    (search / "proj").mkdir(parents=True)
    (search / "result.json").write_text(json.dumps(result))
    (search / "proj" / "result.json").write_text(json.dumps({**result, "method": "gdas-proj"}))
    proc = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "report" / f"nasbench201-{dataset}.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["GDAS", "GDAS+PT"]
    assert rows["GDAS"]["paper"] == paper and rows["GDAS+PT"]["paper"] == ""


@pytest.mark.slow
def test_benchmark_times_gdas_against_autodl_and_darts(capsys):
    from benchmarks import bench_search

    assert bench_search.main(["--device", "cpu", "--variants", "fast,gdas,reference_gdas", "--batch_size", "2",
                              "--steps", "1", "--warmup", "0", "--proj_batches", "1", "--no_eval"]) == 0
    out = capsys.readouterr().out
    for space in ("nb201", "darts"):
        assert f"{space} cpu gdas search_step_s=" in out and f"{space} cpu reference_gdas search_step_s=" in out
        assert f"{space} cpu speedup gdas_vs_reference_gdas search_step=" in out
        assert f"{space} cpu cost gdas_vs_fast search_step=" in out


@pytest.mark.parametrize("criterion", ["acc", "loss", "nwot", "synflow", "grad_norm", "jacob_cov"])
def test_projection_scores_are_deterministic_under_every_criterion(criterion):
    """A scoring pass mixes softmax(alpha / tau): scoring the same op twice on the same batches
    (--proj_batches) gives the same value, and leaves the sampler untouched (tuning continues the
    checkpoint's noise)."""
    from common.projection import Scorer, _value

    trainer = gdas_trainer("--proj_batches", "1")
    trainer.method.start_epoch(2, 3, tuning=False)
    noise = trainer.method.noise.generator.get_state()
    scorer = Scorer(trainer, epoch=0)
    values = [_value(scorer, criterion, "cell", 2, 3) for _ in range(2)]
    assert values[0] == values[1] or (values[0] != values[0] and values[1] != values[1])  # nan: both
    assert torch.equal(trainer.method.noise.generator.get_state(), noise)


@pytest.mark.parametrize("flags, given", [([], []), (["--tau_max", "5"], ["--tau_max=5"]),
                                          (["--tau_min", "0.5"], ["--tau_min=0.5"])])
def test_the_printed_projection_command_carries_the_search_s_temperatures(flags, given):
    """A projection refuses another schedule than its search's: the command a search prints to
    project it must pass the temperatures that differ from the defaults."""
    from pathlib import Path

    from common.run import projection_command

    cfg = search_cfg("--method", "gdas", "--epochs", "3", *flags)
    command = projection_command(cfg, "201", Path("/runs/search-gdas-201-1"))
    at = command.index("--resume_expid")
    assert command[at:at + 4] == ["--resume_expid", "search-gdas-201-1", "--resume_epoch", "3"]
    assert [a for a in command if a.startswith("--tau")] == given
    assert any(a.endswith("gdas-proj-201.sh") for a in command)
