"""PC-DARTS (`--method pcdarts`, common/methods/pcdarts.py) against float64 trajectories of the authors' code.

tests/reference/README.md "PC-DARTS and GDAS": `steps_s3_pcdarts_C8_L5.pt` and
`steps_darts_pcdarts_C8_L5.pt` are yuhuixu1993/PC-DARTS' `Network` (partial channels K=4, edge
normalisation betas) on DARTS-PT's s3 ops and on DARTS' own 8 ops (s5 with `none` in front: built here
as a space of those 8 ops, so that the authors' op k is this supernet's op k); one step of epoch 14
(weights only) and three of epoch 15 (arch step, then weight step). `steps_nb201_darts_k4_C8.pt` is
DARTS with partial channels as DrNAS' 201-space runs it (no betas, alpha clipped with the weights).
The project's Trainer, with the PC-DARTS method, runs the same steps from the recorded state: after
every step the alphas and betas, the weight step's loss and the sum of every state_dict entry agree
to 1e-12, and after the last the whole state_dict.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from common.arch import Architecture
from common.batchnorm import SyncBatchNorm2d
from common.cellops import NodeSum, StateInputs
from common.checkpoint import save_checkpoint
from common.config import ConfigError
from common.data import shard_slice
from common.distributed import Group
from common.method import EVAL, GENOTYPE, TRAIN
from common.methods import build_method
from common.methods.pcdarts import PCDARTS
from common.search import load_search_checkpoint
from common.space import Space, edge_weights_key
from common.trainer import Trainer
from nasbench201.model_search import NB201Supernet
from sota import spaces
from sota.model_search import DartsSupernet
from tests.conftest import TEST_GPU, read_json, run_script
from tests.fixtures.configs import search_cfg
from tests.fixtures.equivalence import assert_same_supernet
from tests.fixtures.processes import assert_projection_in_two_processes_decides_as_one, assert_two_processes_step_as_one
from tests.fixtures.reference import project_reference_file

TOL = 1e-12
RTOL = 1e-10  # as tests/test_drnas.py: features of untrained tiny supernets reach 1e8
NODE_INPUTS = (2, 3, 4, 5)
DARTS8 = "darts8"  # DARTS' PRIMITIVES: s5's ops with `none` in front


def load(name: str) -> dict:
    return torch.load(project_reference_file(f"steps/{name}"), map_location="cpu", weights_only=False)


def hyper_flags(ref: dict) -> list[str]:
    h = ref["hyper"]
    return ["--method", "pcdarts", "--learning_rate", str(h["learning_rate"]), "--momentum", str(h["momentum"]),
            "--weight_decay", str(h["weight_decay"]), "--arch_learning_rate", str(h["arch_learning_rate"]),
            "--grad_clip", str(h["grad_clip"]), "--k", str(ref["k"]), "--init_channels", str(ref["C"]),
            "--epochs", str(h["epochs"]), "--memory_format", "contiguous",
            *(["--arch_weight_decay", str(h["arch_weight_decay"])] if "arch_weight_decay" in h else [])]


def setup(ref: dict) -> Trainer:
    """A Trainer with PC-DARTS on the project's supernet, in the recorded initial state."""
    if ref["space"] == "nb201":
        cfg = search_cfg(*hyper_flags(ref), "--arch_start_epoch", "0")
        model = NB201Supernet(ref["C"], ref["N"], 10, k=ref["k"]).double()
    else:
        cfg = search_cfg(*hyper_flags(ref), "--layers", str(ref["layers"]), space="sota")
        space_name = "s3" if ref["space"] == "s3" else DARTS8
        model = DartsSupernet(ref["C"], 10, ref["layers"], space_name, k=ref["k"]).double()
        assert model.edge_ops("normal")[0] == ref["op_names"]
    state = {k: v for k, v in ref["init_state_dict"].items() if k != "_arch_parameters"}
    model.load_state_dict(state)
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    space = Space(label=ref["space"], model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None,
                  alpha_in_model=ref["space"] == "nb201",
                  node_inputs=None if ref["space"] == "nb201" else NODE_INPUTS)
    method = build_method(cfg)
    assert isinstance(method, PCDARTS)
    trainer = Trainer(space, None, cfg, torch.device("cpu"), method=method)
    params = arch_tensors(trainer)
    assert len(params) == len(ref["init_alphas"])
    with torch.no_grad():
        for a, b in zip(params, ref["init_alphas"], strict=True):
            a.copy_(b)
    return trainer


def arch_tensors(trainer: Trainer) -> list[torch.Tensor]:
    """alpha and beta, in the authors' order (alphas_normal, alphas_reduce, betas_normal, betas_reduce)."""
    return trainer.alpha_parameters


def run_steps(name: str, trainer: Trainer | None = None) -> Trainer:
    ref = load(name)
    trainer = trainer or setup(ref)
    trainer.model.train()
    epochs = ref["hyper"]["epochs"]
    # state_sums follow final_state_dict's keys, where NAS-Bench-201's alpha comes first
    kept = torch.tensor([k != "_arch_parameters" for k in ref["final_state_dict"]])
    for i, step in enumerate(ref["steps"]):
        trainer.method.start_epoch(step["epoch"], epochs, tuning=False)
        assert trainer.method.trains_alpha == step.get("arch_step", True), f"step {i}"
        trainer.w_opt.param_groups[0]["lr"] = step["lr"]
        if trainer.method.trains_alpha:
            trainer.alpha_step(step["x_alpha"].double(), step["y_alpha"])
        for a, b in zip(arch_tensors(trainer), step["alphas"], strict=True):
            torch.testing.assert_close(a.detach(), b, rtol=RTOL, atol=TOL, msg=lambda m: f"step {i} alpha: {m}")
        _, loss = trainer.weight_step(step["x"].double(), step["y"])
        assert loss.item() == pytest.approx(step["loss"], rel=RTOL, abs=TOL), f"step {i}"
        sums = torch.stack([v.double().sum() for k, v in trainer.model.state_dict().items()])
        torch.testing.assert_close(sums, step["state_sums"][kept], rtol=RTOL, atol=1e-9, msg=lambda m: f"step {i}: {m}")
    state = trainer.model.state_dict()
    final = {k: v for k, v in ref["final_state_dict"].items() if k != "_arch_parameters"}
    assert state.keys() == final.keys()
    for key, value in final.items():
        torch.testing.assert_close(state[key].to(value.dtype), value, rtol=RTOL, atol=TOL, msg=lambda m: f"{key}: {m}")
    return trainer


@pytest.fixture
def darts8(monkeypatch: pytest.MonkeyPatch) -> None:
    """DARTS' own 8-op space (the authors' PRIMITIVES), which the project's spaces hold as s5 without `none`."""
    monkeypatch.setitem(spaces.SPACES, DARTS8, spaces._uniform(["none", *spaces.DARTS_OPS]))


@pytest.mark.parametrize("name", ["steps_s3_pcdarts_C8_L5.pt", "steps_darts_pcdarts_C8_L5.pt",
                                  "steps_nb201_darts_k4_C8.pt"])
def test_steps_match_the_authors(name: str, darts8: None) -> None:
    """Every step of the authors' code: see the module docstring."""
    run_steps(name)


# -- the method on its own ------------------------------------------------------------------------------

def tiny(space: str, flags: tuple[str, ...] = (), dtype: torch.dtype = torch.float32,
         sync_bn: bool = False, group: Group | None = None) -> Trainer:
    """A Trainer with PC-DARTS (k=2, alpha from epoch 1) on a tiny supernet of `space` (nb201, s5),
    alpha and beta far from uniform."""
    cfg = search_cfg("--method", "pcdarts", "--init_channels", "4", "--k", "2", "--epochs", "3",
                     "--arch_start_epoch", "1", *flags,
                     *(("--num_cells", "1") if space == "nb201" else ("--layers", "3")),
                     space="nb201" if space == "nb201" else "sota")
    torch.manual_seed(0)
    model = (NB201Supernet(4, 1, 10, k=2) if space == "nb201" else DartsSupernet(4, 10, 3, "s5", k=2)).to(dtype)
    arch = Architecture(model.arch_shapes(), dtype=dtype)
    genotype = model.genotype if isinstance(model, DartsSupernet) else lambda w: None
    if sync_bn:
        model = SyncBatchNorm2d.convert(model)
    sp = Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=genotype,
               alpha_in_model=space == "nb201",
               node_inputs=None if space == "nb201" else NODE_INPUTS)
    t = Trainer(sp, None, cfg, torch.device("cpu"), group=group)
    with torch.no_grad():
        for a in t.alpha_parameters:
            a.normal_()
    return t


def batches(steps: int, dtype: torch.dtype = torch.float32, n: int = 8) -> list[tuple]:
    """(x, y, x_alpha, y_alpha) per step."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g),
             torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g))
            for _ in range(steps)]


SCHEDULE = [0, 1, 1, 2]  # the epoch of each step: weights only, then alpha and beta too


def run(trainer: Trainer, data: list[tuple], steps: range, n: int | None = None,
        part: slice = slice(None)) -> None:
    for i in steps:
        trainer.method.start_epoch(SCHEDULE[i], 3, tuning=False)
        x, y, xa, ya = data[i]
        if trainer.method.trains_alpha:
            trainer.alpha_step(xa[part], ya[part], n, train=(x[part], y[part], n or len(y)))
        trainer.weight_step(x[part], y[part], n)


def test_mixing_weights_of_each_phase():
    """Training and scoring passes: softmax(alpha), decided rows projected, with each edge's beta
    weight (softmax over each node's inputs) beside; the genotype's: the rows times beta."""
    t = tiny("s5")
    arch, method = t.arch, t.method
    assert isinstance(method, PCDARTS) and [p.shape for p in method.parameters()] == [(14,), (14,)]
    assert t.a_opt.param_groups[-1]["params"] == method.parameters()  # trained by alpha's Adam
    arch.project_op("normal", 3, 2)
    for phase in (TRAIN, EVAL):
        w = method.weights(arch, phase)
        assert set(w) == {"normal", "reduce", edge_weights_key("normal"), edge_weights_key("reduce")}
        for kind in arch.kinds:
            torch.testing.assert_close(w[kind], arch.weights()[kind])
            edges = w[edge_weights_key(kind)]
            beta = method.betas[kind].detach()
            for start, n in zip((0, 2, 5, 9), NODE_INPUTS):
                torch.testing.assert_close(edges[start:start + n], torch.softmax(beta[start:start + n], 0))
    g = method.weights(arch, GENOTYPE)
    edges = method.edge_weights()
    assert set(g) == {"normal", "reduce"}
    for kind in arch.kinds:
        torch.testing.assert_close(g[kind], arch.weights()[kind] * edges[kind][:, None])


def test_beta_ranks_the_edges_alpha_the_op():
    """The genotype keeps a node's inputs by softmax(alpha) x beta (as the authors' genotype), and
    picks on each edge its best op by alpha alone."""
    t = tiny("s5")
    arch, method = t.arch, t.method
    with torch.no_grad():
        for a in arch.parameters():
            a.zero_()
        arch.alphas["normal"][2:5, 3] = 1.0  # node 1's three inputs prefer sep_conv_3x3 alike ...
        arch.alphas["normal"][2, 4] = 1.5    # ... the first one sep_conv_5x5, and more strongly
        method.betas["normal"].zero_()
        method.betas["normal"][3:5] = 2.0    # beta prefers inputs 1 and 2 of node 1
    genotype = t.space.genotype(method.weights(arch, GENOTYPE))
    assert genotype.normal[2:4] == [("sep_conv_3x3", 1), ("sep_conv_3x3", 2)]
    assert t.space.genotype(arch.weights()).normal[2][0] == "sep_conv_5x5"  # without beta: input 0 wins


def test_a_masked_op_is_gone_and_the_passed_channels_remain():
    """In a partial-channel node weighted by beta, removing an op (weight 0, not computed, as a
    scoring pass does) removes exactly its share of the op channels; the passed channels stay,
    times beta. Removing the edge (topology) removes its passed channels too."""
    torch.manual_seed(0)
    model = DartsSupernet(4, 10, 3, "s5", k=2).double()
    ops = model.cells[0]._ops[0]._ops
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = torch.softmax(torch.randn(7, dtype=torch.float64), 0)
    beta = torch.tensor(0.3, dtype=torch.float64)
    part, rest = x[:, :2], x[:, 2:]

    def node(weights: torch.Tensor, active: list[int]) -> torch.Tensor:
        s = NodeSum(2)
        s.add(ops, StateInputs(x), (weights * beta).unbind(0), active, None, beta)
        out = s.result()
        assert out is not None
        return out

    without = w.clone()
    without[3] = 0.0
    full, masked = node(w, list(range(7))), node(without, [0, 1, 2, 4, 5, 6])
    op3 = w[3] * beta * ops[3](part)
    torch.testing.assert_close(full[:, 0::2] - masked[:, 0::2], op3)  # the op's share of the op channels
    assert torch.equal(masked[:, 1::2], rest * beta) and torch.equal(full[:, 1::2], rest * beta)
    dropped = NodeSum(2)
    dropped.add(ops, StateInputs(x), (w * 0).unbind(0), [], None, beta)
    assert dropped.result() is None


def test_arch_steps_start_at_the_warm_up_epoch():
    """Search epochs before --arch_start_epoch train the weights only (the log line says so); from it
    on, and in every tuning epoch, alpha and beta train."""
    method = build_method(search_cfg("--method", "pcdarts", "--epochs", "50", space="sota"))
    assert [method.start_epoch(e, 50, tuning=False) or method.trains_alpha for e in (0, 14, 15, 49)] == \
        [" alpha from epoch 15", " alpha from epoch 15", True, True]
    method.start_epoch(0, 50, tuning=True)
    assert method.trains_alpha


@pytest.mark.parametrize("flags,flag", [(("--epochs", "15"), "arch_start_epoch"),
                                        (("--epochs", "3", "--arch_start_epoch", "3"), "arch_start_epoch"),
                                        (("--arch_start_epoch", "-1"), "arch_start_epoch"),
                                        (("--k", "0"), "k"), (("--unrolled",), "unrolled")])
def test_bad_settings_are_refused(flags: tuple[str, ...], flag: str):
    with pytest.raises(ConfigError, match=f"--{flag}"):
        build_method(search_cfg("--method", "pcdarts", *flags, space="sota"))


@pytest.mark.parametrize("flags,flag", [(("--k", "2"), "k"), (("--arch_start_epoch", "3"), "arch_start_epoch")])
def test_other_methods_refuse_its_flags(flags: tuple[str, ...], flag: str):
    with pytest.raises(ConfigError, match=f"--{flag}"):
        search_cfg("--method", "darts", *flags, space="sota")


def test_k_defaults_to_each_methods_own():
    assert search_cfg("--method", "pcdarts", space="sota").method_options.k == 4
    assert search_cfg("--method", "drnas", space="sota").method_options.k == 1
    assert search_cfg("--method", "pcdarts", "--k", "2", space="sota").method_options.k == 2


@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_resumed_from_a_checkpoint_continues_to_the_bit(space, tmp_path):
    """A run cut before its first arch step and one cut after it continue, from their checkpoints
    (betas and their Adam state among them), to the same alphas, betas and weights as the
    uninterrupted run."""
    data = batches(4)
    full = tiny(space)
    run(full, data, range(4))
    for cut in (1, 3):
        part = tiny(space)
        run(part, data, range(cut))
        path = tmp_path / f"checkpoint_{cut}.pth.tar"
        save_checkpoint({"epoch": cut, **part.state(), **part.group.rng_states(part.device)}, path)
        resumed = tiny(space)
        with torch.no_grad():
            for p in resumed.alpha_parameters:
                p.zero_()  # what the checkpoint holds, not the same seed's draws, continues
        load_search_checkpoint(resumed, path, resume=True)
        run(resumed, data, range(cut, 4))
        assert_same_supernet(full, resumed, cut)


# -- two processes (torch.multiprocessing, gloo) --------------------------------------------------------

BATCH = 7  # two processes: shards of 4 and 3 images


def _steps(space: str, group: Group, sync_bn: bool) -> dict[str, list[torch.Tensor]]:
    """This process's four steps on its shards of float64 batches of BATCH images: alpha and beta, state."""
    t = tiny(space, dtype=torch.float64, sync_bn=sync_bn, group=group)
    run(t, batches(4, torch.float64, n=BATCH), range(4), BATCH, shard_slice(BATCH, group.rank, group.size))
    return {"alpha": [p.detach() for p in t.alpha_parameters], "state": list(t.model.state_dict().values())}


@pytest.mark.slow
def test_two_processes_take_one_process_steps(tmp_path):
    """With --sync_bn, two processes' alphas, betas and state_dicts equal one process's to float64
    rounding, before and after the arch steps start, and each other's exactly."""
    assert_two_processes_step_as_one(_steps, tmp_path)


@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_every_criterion_scores_the_partial_channel_supernet(space):
    """A scoring pass (acc, loss) and every zero-cost proxy score the supernet with one op removed
    under the method's weights (beta beside them): finite, the same again (--proj_batches 1: the
    same images), and a proxy another value without the removal; removing an edge keeps beta's entry."""
    from common.config import PROXY_CRITERIA
    from common.data import Batches, ImageSet
    from common.projection import Scorer
    from common.trainer import SearchData

    t = tiny(space, ("--method", "pcdarts-proj", "--proj_batches", "1"))
    images = ImageSet(torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8), torch.arange(16) % 10, 10,
                      (0.5,) * 3, (0.5,) * 3, 1)
    t.data = SearchData(Batches(images, torch.arange(8), 8, augment=True, seed=0),
                        Batches(images, torch.arange(8, 16), 8, augment=True, seed=0), None)
    kind = t.arch.kinds[-1]
    for crit in ("acc", "loss", *PROXY_CRITERIA):
        scorer = Scorer(t, 0)
        score = (lambda o, c=crit: scorer(kind, 0, o)[c == "loss"]) if crit in ("acc", "loss") else \
            (lambda o, c=crit: scorer.proxy(c, kind, 0, o))
        masked, again = score(2), score(2)
        assert math.isfinite(masked) and masked == again, crit
        if crit not in ("acc", "loss"):
            assert masked != score(None), crit
    without = t.arch.masked(kind, 3, None, t.method.weights(t.arch, EVAL))
    assert without[kind][3].abs().sum() == 0 and (edge_weights_key(kind) in without) == (space == "s5")


# -- end to end, through the exp_scripts ---------------------------------------------------------------

NB = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100",
      "--gpu", TEST_GPU, "--no_tensorboard"]
SOTA = ["--batch_size", "16", "--init_channels", "4", "--layers", "3", "--report_freq", "100",
        "--gpu", TEST_GPU, "--no_tensorboard"]


@pytest.fixture(scope="module")
def nb201_search(tmp_path_factory, cifar10_dir, bench) -> tuple[list[str], Path]:
    """pcdarts-201.sh (partial channels 1/4, no betas), two epochs: its flags and folder."""
    exp = tmp_path_factory.mktemp("exp")
    common = ["--data", str(cifar10_dir), "--exp_root", str(exp), "--api_path", str(bench[0]), *NB]
    run_script("pcdarts-201.sh", *common, "--epochs", "2", "--ckpt_interval", "1")
    return common, exp / "nasbench201" / "search-pcdarts-201-1"


@pytest.mark.slow
def test_nb201_search_and_projection_through_the_scripts(nb201_search, bench):
    """The search records k and its warm-up, has no betas; the projection (its --resume_epoch left out:
    the search's last epoch) takes them from result.json and ends with a genotype queried in the
    benchmark; a zero-cost criterion projects it too."""
    common, folder = nb201_search
    result = read_json(folder / "result.json")
    assert (result["status"], result["method"], result["k"], result["arch_start_epoch"]) == \
        ("finished", "pcdarts", 4, 0)
    assert result["benchmark"] == bench[1][result["genotype"]]
    assert "method_state" not in torch.load(folder / "checkpoint_2.pth.tar", weights_only=True)
    assert "no edge normalisation" in (folder / "log.txt").read_text()

    out = run_script("pcdarts-proj-201.sh", *common, "--proj_intv", "1").stdout
    assert "--k 4" in out.split("taken from the search run's result.json:")[1].splitlines()[0]
    result = read_json(folder / "pcdarts-proj-201-seed1-acc-intv1-ep2" / "result.json")
    assert (result["status"], result["method"]) == ("finished", "pcdarts-proj")
    assert result["benchmark"] == bench[1][result["genotype"]]
    run_script("pcdarts-proj-201.sh", *common, "--proj_crit", "nwot")
    assert read_json(folder / "pcdarts-proj-201-seed1-nwot-intv5-ep2" / "result.json")["status"] == "finished"


@pytest.mark.slow
def test_projection_in_two_processes_decides_as_one(nb201_search):
    """Two processes (--sync_bn) project as one process does."""
    common, folder = nb201_search
    args = [*common, "--proj_intv", "1", "--fast"]
    assert_projection_in_two_processes_decides_as_one("pcdarts-proj-201.sh", args, folder,
                                                      "pcdarts-proj-201-seed1-acc-intv1-ep2")


@pytest.mark.slow
def test_darts_space_search_projection_interruption_and_evaluation_through_the_scripts(tmp_path, small_cifar10):
    """pcdarts-sota.sh (weights only in epoch 0, alpha and beta from epoch 1; checkpoints hold the
    betas), pcdarts-proj-sota.sh registering the genotype by name (cut after tuning epoch 2, it
    continues to the uninterrupted run's history, betas and supernet), and eval.sh training it."""
    common = ["--data", str(small_cifar10), "--exp_root", str(tmp_path), "--space", "s5", *SOTA]
    run_script("pcdarts-sota.sh", *common, "--epochs", "2", "--arch_start_epoch", "1", "--k", "2")
    folder = tmp_path / "sota" / "cifar10" / "search-pcdarts-sota-s5-2"
    result = read_json(folder / "result.json")
    assert (result["status"], result["method"], result["k"], result["arch_start_epoch"]) == \
        ("finished", "pcdarts", 2, 1)
    assert " alpha from epoch 1" in (folder / "log.txt").read_text()
    betas = torch.load(folder / "checkpoint_2.pth.tar", weights_only=True)["method_state"]["betas"]
    assert [b.shape for b in betas.values()] == [(14,), (14,)]

    args = [*common, "--proj_intv", "1", "--fast", "--genotype_name", "pcdarts_tiny"]
    run_script("pcdarts-proj-sota.sh", *args)
    proj = folder / "pcdarts-proj-sota-seed2-acc-intv1-ep2"
    result = read_json(proj / "result.json")
    assert (result["status"], result["method"], result["genotype_name"]) == ("finished", "pcdarts-proj", "pcdarts_tiny")
    full = tmp_path / "full"
    shutil.copytree(proj, full)
    (proj / "result.json").write_text(json.dumps({**result, "status": "running"}))
    last = max(int(p.name.split("_")[1].split(".")[0]) for p in proj.glob("checkpoint_*.pth.tar"))
    for later in proj.glob("checkpoint_*.pth.tar"):
        if int(later.name.split("_")[1].split(".")[0]) > 2:
            later.unlink()
    assert "resumed projection at tuning epoch 2" in run_script("pcdarts-proj-sota.sh", *args).stdout
    assert read_json(proj / "result.json")["genotype"] == result["genotype"]
    assert (proj / "history.jsonl").read_text() == (full / "history.jsonl").read_text()
    a, b = (torch.load(f / f"checkpoint_{last}.pth.tar", weights_only=True) for f in (proj, full))
    assert all(torch.equal(v, b["method_state"]["betas"][k]) for k, v in a["method_state"]["betas"].items())
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())

    run_script("eval.sh", "--arch", "pcdarts_tiny", "--data", str(small_cifar10), "--exp_root", str(tmp_path),
               "--init_channels", "4", "--layers", "3", "--batch_size", "16", "--epochs", "1", "--gpu", TEST_GPU,
               "--no_tensorboard", "--report_freq", "100")
    evaluated = read_json(tmp_path / "sota" / "cifar10" / "eval" / "eval-pcdarts_tiny-2" / "result.json")
    assert evaluated["status"] == "finished" and evaluated["arch"] == "pcdarts_tiny"


# -- studies and reports --------------------------------------------------------------------------------

def test_reports_give_pcdarts_rows_next_to_the_published_numbers(tmp_path):
    """PC-DARTS and PC-DARTS+PT rows (also for a run folder named pcdarts-* without result.json), after
    DrNAS', with the published numbers: the DARTS space 2.57 ± 0.07, NAS-Bench-201 DrNAS' README's."""
    from analysis.runs import discover
    from analysis.tables import METHOD_ORDER, PAPER
    from sota.genotypes import DARTS_V2

    assert PAPER[("s5", "cifar10")]["PC-DARTS"] == "2.57 ± 0.07"
    assert [PAPER[("nasbench201", d)]["PC-DARTS"] for d in ("cifar10", "cifar100", "imagenet16-120")] == \
        ["93.41 ± 0.30", "67.48 ± 0.89", "41.31 ± 0.22"]
    assert METHOD_ORDER[-2:] == ["PC-DARTS", "PC-DARTS+PT"]
    c10 = tmp_path / "sota" / "cifar10"
    search = c10 / "search-pcdarts-sota-s5-1"
    result = {"status": "finished", "space": "s5", "method": "pcdarts", "dataset": "cifar10", "seed": 1, "epochs": 50,
              "k": 4, "genotype": str(DARTS_V2)}
    (search / "proj").mkdir(parents=True)
    (search / "result.json").write_text(json.dumps(result))
    (search / "proj" / "result.json").write_text(json.dumps({**result, "method": "pcdarts-proj"}))
    (c10 / "search-pcdarts-sota-s5-2").mkdir()
    (c10 / "search-pcdarts-sota-s5-2" / "log.txt").write_text("")  # no result.json: its name says PC-DARTS
    assert sorted(r.label for r in discover(tmp_path)) == ["PC-DARTS", "PC-DARTS", "PC-DARTS+PT"]


@pytest.mark.slow
def test_benchmark_times_pcdarts_against_the_authors_steps_and_full_channels(capsys):
    from benchmarks import bench_search

    assert bench_search.main(["--device", "cpu", "--variants", "fast,pcdarts,reference_pcdarts", "--batch_size", "2",
                              "--steps", "1", "--warmup", "0", "--proj_batches", "1", "--no_eval"]) == 0
    out = capsys.readouterr().out
    for space in ("nb201", "darts"):
        assert f"{space} cpu pcdarts search_step_s=" in out and f"{space} cpu reference_pcdarts search_step_s=" in out
        assert f"{space} cpu speedup pcdarts_vs_reference_pcdarts search_step=" in out
        assert f"{space} cpu cost pcdarts_vs_fast search_step=" in out
