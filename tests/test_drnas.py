"""DrNAS (`--method drnas`, common/methods/drnas.py) against float64 trajectories of the authors' code.

The recordings (tests/reference/README.md "DrNAS"; ../shared/reference/steps/steps_nb201_drnas_C8.pt)
hold every Dirichlet sample the authors' code drew and every channel its widening copied: the tests
feed them back (`torch._sample_dirichlet`, the widening's `draw`) and run the project's Trainer, with
the DrNAS method, from the recorded state. After every step the alphas, the weight step's loss, every
parameter and BatchNorm buffer agree to 1e-12; at a transition, the pruned alphas, the masks, the
widened state_dict and the carried-over momentum buffers too.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from common.arch import Architecture
from common.batchnorm import SyncBatchNorm2d
from common.checkpoint import save_checkpoint
from common.data import shard_slice
from common.distributed import Group
from common.method import EVAL, GENOTYPE, TRAIN
from common.methods import build_method, supernet_request
from common.methods.drnas import DrNAS
from common.search import load_search_checkpoint
from common.space import Space
from common.trainer import Trainer
from nasbench201.genotypes import parse_arch
from nasbench201.model_search import EDGE_KEYS, NB201Supernet
from nasbench201.operations import NB201_OPS
from sota.genotypes import get_genotype, registry
from sota.model_search import DartsSupernet
from tests.conftest import TEST_GPU, read_json, run_script
from tests.fixtures.configs import search_cfg
from tests.fixtures.equivalence import assert_same_supernet
from tests.fixtures.processes import assert_projection_in_two_processes_decides_as_one, assert_two_processes_step_as_one
from tests.fixtures.reference import project_reference_file, reference_file

TOL = 1e-12
# Relative 1e-10 besides: the untrained tiny supernets' features reach 1e8 (no normalisation between a
# node's inputs), so float64 rounding in another summation order alone reaches 5e-12 of a statistic.
RTOL = 1e-10
RTOL_CHANNELS_LAST = 1e-8  # channels-last convolutions sum in yet another order
ALPHA_KEYS = ("_arch_parameters",)


def load(name: str) -> dict:
    path = reference_file(f"steps/{name}") if name == "steps_nb201_drnas_C8.pt" else \
        project_reference_file(f"steps/{name}")
    return torch.load(path, map_location="cpu", weights_only=False)


@contextlib.contextmanager
def recorded_samples(rows: list[torch.Tensor]) -> Iterator[None]:
    """`torch._sample_dirichlet` hands out the recorded samples, one row per edge, in draw order."""
    queue = list(rows)
    real = torch._sample_dirichlet

    def sample(concentration: torch.Tensor, generator=None) -> torch.Tensor:
        n = concentration.shape[0] if concentration.dim() == 2 else 1  # a kind's rows, or one row
        assert len(queue) >= n, "more Dirichlet samples drawn than recorded"
        out = torch.stack([queue.pop(0) for _ in range(n)]).reshape(concentration.shape)
        return out.to(concentration.dtype)

    torch._sample_dirichlet = sample
    try:
        yield
    finally:
        torch._sample_dirichlet = real
    assert not queue, f"{len(queue)} recorded samples were not drawn"


def project_state(space: str, state: dict) -> dict:
    """The authors' state_dict in the project's layout: NAS-Bench-201 without alpha; the DARTS space's
    pools' BatchNorm at `_ops.i.1` (DrNAS: `_ops.i.op.1`)."""
    out = {}
    for key, value in state.items():
        if key in ALPHA_KEYS:
            continue
        out[key.replace(".op.1.", ".1.") if space == "darts" and _is_pool_bn(key) else key] = value
    return out


def _is_pool_bn(key: str) -> bool:
    parts = key.split(".")  # cells.C._ops.E._ops.O.op.1.running_mean
    return len(parts) == 9 and parts[2] == "_ops" and parts[4] == "_ops" and parts[5] in ("0", "1") and parts[6] == "op"


def setup(ref: dict, memory_format: str = "contiguous") -> tuple[Trainer, dict]:
    """A Trainer with the DrNAS method on the project's supernet, in the recorded initial state."""
    space_name = "darts" if ref["space"].startswith("darts") else "nb201"
    h = ref["hyper"]
    stages = ref.get("stages") or [{"k": h.get("k", 1), "num_keep": len(ref["op_names"]), "steps": 3}]
    flags = ["--method", "drnas", "--learning_rate", str(h["learning_rate"]), "--momentum", str(h["momentum"]),
             "--weight_decay", str(h["weight_decay"]), "--arch_learning_rate", str(h["arch_learning_rate"]),
             "--grad_clip", str(h["grad_clip"]), "--reg_type", h["reg_type"], "--reg_scale", str(h["reg_scale"]),
             "--memory_format", memory_format, "--init_channels", str(ref["C"]),
             "--epochs", str(len(stages)),
             "--stages", ",".join(f"{s['k']}:{s['num_keep']}:1" for s in stages)]
    if space_name == "nb201":
        cfg = search_cfg(*flags)
        model = NB201Supernet(ref["C"], ref["N"], 10, k=stages[0]["k"]).double()
    else:
        cfg = search_cfg(*flags, "--layers", str(ref["N"]), space="sota")
        model = DartsSupernet(ref["C"], 10, ref["N"], "s5", k=stages[0]["k"]).double()
    state = project_state(space_name, ref["init_state_dict"])
    model.load_state_dict(state)
    arch = Architecture(model.arch_shapes(), dtype=torch.float64)
    init_alphas = ref.get("init_alphas") or [ref["init_state_dict"]["_arch_parameters"]]
    with torch.no_grad():
        for a, b in zip(arch.parameters(), init_alphas, strict=True):
            a.copy_(b)
    space = Space(label=space_name, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None,
                  alpha_in_model=space_name == "nb201", widen=model.widen)
    method = build_method(cfg)
    assert isinstance(method, DrNAS)
    trainer = Trainer(space, None, cfg, torch.device("cpu"), method=method)
    return trainer, {"space": space_name}


def check_state(trainer: Trainer, space: str, expected: dict, what: str, rtol: float = RTOL) -> None:
    state = trainer.model.state_dict()
    theirs = project_state(space, expected)
    assert state.keys() == theirs.keys(), what
    for key, value in theirs.items():
        torch.testing.assert_close(state[key].to(value.dtype), value, rtol=rtol, atol=TOL,
                                   msg=lambda m: f"{what} {key}: {m}")


def replayed_draws(transition: dict):
    """common.net2wider.random_draw's stand-in: the channels the authors' widening drew, in order."""
    drawn = [c["index"] for c in transition["widen_calls"] if c["drawn"]]

    def draw(old: int, new: int) -> torch.Tensor:
        assert drawn, "more widening draws than recorded"
        index = drawn.pop(0)
        assert index.numel() == new - old
        return index

    return (lambda generator: draw), drawn


def check_transition(trainer: Trainer, space: str, transition: dict, left: list, rtol: float) -> None:
    """After the transition: pruned alphas and masks, the widened state_dict, the momentum buffers
    carried over, Adam untouched."""
    assert not left, f"{len(left)} recorded widening draws were not made"
    for a, b in zip(trainer.arch.parameters(), transition["alphas_pruned"], strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=rtol, atol=TOL)
    kept = trainer.arch.kept
    assert kept is not None
    for kind, mask in zip(trainer.arch.kinds, transition["masks"], strict=True):
        assert torch.equal(kept[kind].cpu(), mask)
    check_state(trainer, space, transition["state_dict"], "transition", rtol)
    params = dict(trainer.model.named_parameters())
    buffers = {n: trainer.w_opt.state[p]["momentum_buffer"] for n, p in params.items()
               if "momentum_buffer" in trainer.w_opt.state.get(p, {})}
    assert buffers.keys() == transition["momentum_buffers"].keys()
    for name, value in transition["momentum_buffers"].items():
        torch.testing.assert_close(buffers[name], value, rtol=rtol, atol=TOL, msg=lambda m: f"{name}: {m}")
    assert list(trainer.w_opt.param_groups[0]["params"]) == list(params.values())
    for a, state in zip(trainer.arch.parameters(), transition["adam_state"], strict=True):
        mine = trainer.a_opt.state[a]
        assert float(mine["step"]) == float(state["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(mine[key], state[key], rtol=rtol, atol=TOL)


def run_steps(name: str, monkeypatch: pytest.MonkeyPatch, memory_format: str = "contiguous") -> None:
    ref = load(name)
    rtol = RTOL if memory_format == "contiguous" else RTOL_CHANNELS_LAST
    trainer, info = setup(ref, memory_format)
    method = trainer.method
    method.start_epoch(0, 1, tuning=False)
    transitions = iter(ref.get("transitions", []))
    stage = 0
    trainer.model.train()
    for i, step in enumerate(ref["steps"]):
        if step.get("stage", 0) != stage:
            stage = step["stage"]
            transition = next(transitions)
            draw, left = replayed_draws(transition)
            monkeypatch.setattr("common.methods.drnas.random_draw", draw)
            method.start_epoch(stage, len(ref["stages"]), tuning=False)
            check_transition(trainer, info["space"], transition, left, rtol)
        with recorded_samples(step["samples_alpha_step"]):
            trainer.alpha_step(step["x_alpha"].double(), step["y_alpha"], train=(step["x"].double(), step["y"], 16))
        for a, b in zip(trainer.arch.parameters(), step["alphas"], strict=True):
            torch.testing.assert_close(a.detach(), b, rtol=rtol, atol=TOL, msg=lambda m: f"step {i} alpha: {m}")
        with recorded_samples(step["samples_weight_step"]):
            _, loss = trainer.weight_step(step["x"].double(), step["y"])
        assert loss.item() == pytest.approx(step["loss"], rel=rtol, abs=TOL), f"step {i}"
        check_state(trainer, info["space"], step["state_dict"], f"step {i}", rtol)


FILES = ["steps_nb201_drnas_C8.pt", "steps_nb201_drnas_kl_C2.pt", "steps_nb201_drnas_progressive_C4.pt",
         "steps_darts_drnas_kl_C6_L5.pt", "steps_darts_drnas_progressive_C12_L5.pt"]


SLOW = {"steps_darts_drnas_progressive_C12_L5.pt"}  # 25 s on a busy CPU


@pytest.mark.parametrize("memory_format", ["contiguous", pytest.param("channels_last", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in FILES])
def test_steps_match_the_authors(name: str, memory_format: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step, and every transition, of the authors' code: see the module docstring."""
    run_steps(name, monkeypatch, memory_format)


# -- the method on its own ------------------------------------------------------------------------------

def tiny(space: str, flags: tuple[str, ...] = (), dtype: torch.dtype = torch.float32,
         sync_bn: bool = False, group: Group | None = None) -> Trainer:
    """A Trainer with DrNAS on a tiny supernet of `space` (nb201, s5), alpha far from uniform."""
    cfg = search_cfg("--method", "drnas", "--init_channels", "4", *flags,
                     *(("--num_cells", "1") if space == "nb201" else ("--layers", "3")),
                     space="nb201" if space == "nb201" else "sota")
    request = supernet_request(cfg)
    torch.manual_seed(0)
    k = request.partial_channels[0]
    model = (NB201Supernet(4, 1, 10, k=k) if space == "nb201" else DartsSupernet(4, 10, 3, "s5", k=k)).to(dtype)
    if sync_bn:
        model = SyncBatchNorm2d.convert(model)
    arch = Architecture(model.arch_shapes(), dtype=dtype)
    with torch.no_grad():
        for a in arch.parameters():
            a.normal_()
    sp = Space(label=space, model=model, arch=arch, op_names={}, edge_names=[], genotype=lambda w: None,
               alpha_in_model=space == "nb201", widen=model.widen)
    return Trainer(sp, None, cfg, torch.device("cpu"), group=group)


def batches(steps: int, dtype: torch.dtype = torch.float32, n: int = 8) -> list[tuple]:
    """(x, y, x_alpha, y_alpha) per step."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g),
             torch.randn(n, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g))
            for _ in range(steps)]


def step(trainer: Trainer, x, y, xa, ya, n: int | None = None) -> None:
    if trainer.method.trains_alpha:
        trainer.alpha_step(xa, ya, n, train=(x, y, n or len(y)))
    trainer.weight_step(x, y, n)


PROGRESSIVE = ("--stages", "4:7:1,2:3:2", "--epochs", "3")  # every op, then 3 per edge


def test_mixing_weights_of_each_phase():
    """Training: a fresh Dirichlet sample per call, rows summing to 1; evaluation: the Dirichlet mean
    ELU(alpha)+1 normalised, the same every call; genotype: softmax(alpha). After pruning the pruned
    ops weigh exactly 0 in every phase, the others renormalised; decided edges are their projected rows."""
    t = tiny("nb201", PROGRESSIVE)
    arch, method = t.arch, t.method
    one, two = method.weights(arch, TRAIN)["cell"], method.weights(arch, TRAIN)["cell"]
    assert not torch.equal(one, two) and torch.allclose(one.sum(-1), torch.ones(6))
    c = torch.nn.functional.elu(arch.alphas["cell"]) + 1
    assert torch.equal(method.weights(arch, EVAL)["cell"], c / c.sum(-1, keepdim=True))
    assert torch.equal(method.weights(arch, GENOTYPE)["cell"], arch.softmax()["cell"])
    method.start_epoch(0, 3, tuning=False)
    method.start_epoch(1, 3, tuning=False)  # stage 2: pruned to 3 ops per edge
    kept = arch.kept["cell"]
    assert kept.sum(-1).tolist() == [3] * 6
    arch.project_op("cell", 2, int(kept[2].nonzero()[0]))
    for phase in (TRAIN, EVAL, GENOTYPE):
        w = method.weights(arch, phase)["cell"]
        assert not w[~kept].any() and torch.allclose(w.sum(-1), torch.ones(6)), phase
        assert torch.equal(w[2], arch.proj_weights["cell"][2])
    assert arch.active()["cell"][0] == kept[0].nonzero().flatten().tolist()


def test_scoring_weights_are_the_mean_or_samples_fixed_per_round():
    """Default: one set, the Dirichlet mean. --score_samples S: S samples, the same for every pass of
    the round at a tuning epoch (and on resuming), others at another epoch."""
    t = tiny("nb201")
    assert len(t.method.scoring_weights(t.arch, 0)) == 1
    assert torch.equal(t.method.scoring_weights(t.arch, 0)[0]["cell"], t.method.weights(t.arch, EVAL)["cell"])
    s = tiny("nb201", ("--method", "drnas-proj", "--score_samples", "3"))
    first, again, later = (s.method.scoring_weights(s.arch, e) for e in (5, 5, 6))
    assert len(first) == 3 and not torch.equal(first[0]["cell"], first[1]["cell"])
    assert all(torch.equal(a["cell"], b["cell"]) for a, b in zip(first, again))
    assert not torch.equal(first[0]["cell"], later[0]["cell"])


def test_the_regulariser_and_the_clipping():
    """l2: Adam's weight decay is --reg_scale; kl: no decay, the KL term's gradient joins alpha's
    (exactly reg_scale times that of the KL divergence). NAS-Bench-201 clips alpha's gradient with the
    weights', the DARTS space not."""
    assert tiny("nb201", ("--reg_scale", "0.01")).a_opt.param_groups[0]["weight_decay"] == 0.01
    kl = tiny("nb201", ("--reg_type", "kl"))
    assert kl.a_opt.param_groups[0]["weight_decay"] == 0.0
    assert kl.method.clipped_parameters(kl) == kl.arch.parameters()
    assert tiny("s5").method.clipped_parameters(tiny("s5")) == []
    x, y, xa, ya = batches(1)[0]
    grads = []
    for flags in (("--reg_type", "kl", "--reg_scale", "0.5"), ("--reg_type", "kl", "--reg_scale", "0")):
        t = tiny("nb201", flags)
        with recorded_samples(list(torch.full((6, 5), 0.2))):  # the same sample in both
            t.alpha_step(xa, ya, train=(x, y, len(y)))
        grads.append(t.arch.alphas["cell"].grad)
    alpha = tiny("nb201").arch.alphas["cell"]
    c = torch.nn.functional.elu(alpha) + 1
    kl = torch.distributions.kl_divergence(torch.distributions.Dirichlet(c), torch.distributions.Dirichlet(
        torch.ones_like(c))).sum()
    torch.testing.assert_close(grads[0] - grads[1], 0.5 * torch.autograd.grad(kl, alpha)[0])


@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_every_criterion_scores_a_pruned_partial_channel_supernet(space):
    """A scoring pass (acc, loss) and every zero-cost proxy score the stage-2 supernet (1/2 of the
    channels, pruned ops) under the Dirichlet mean with one kept op removed: finite, the same again
    (--proj_batches 1: the same images), and a proxy another value without the removal."""
    from common.config import PROXY_CRITERIA
    from common.data import Batches, ImageSet
    from common.projection import Scorer
    from common.trainer import SearchData

    t = tiny(space, (*PROGRESSIVE, "--method", "drnas-proj", "--proj_batches", "1"))
    t.method.start_epoch(0, 3, tuning=False)
    t.method.start_epoch(1, 3, tuning=False)
    images = ImageSet(torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8), torch.arange(16) % 10, 10,
                      (0.5,) * 3, (0.5,) * 3, 1)
    t.data = SearchData(Batches(images, torch.arange(8), 8, augment=True, seed=0),
                        Batches(images, torch.arange(8, 16), 8, augment=True, seed=0), None)
    kind = t.arch.kinds[-1]
    op = t.arch.live_ops(kind, 0)[0]
    for crit in ("acc", "loss", *PROXY_CRITERIA):
        scorer = Scorer(t, 0)
        score = (lambda o, c=crit: scorer(kind, 0, o)[c == "loss"]) if crit in ("acc", "loss") else \
            (lambda o, c=crit: scorer.proxy(c, kind, 0, o))
        masked, again = score(op), score(op)
        assert math.isfinite(masked) and masked == again, crit
        if crit not in ("acc", "loss"):
            assert masked != score(None), crit


@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_the_benchmarks_reference_is_the_same_computation(space):
    """benchmarks/reference.py's DrNASReferenceStep (the authors' cells and steps, which
    bench_search times) and the Trainer's DrNAS steps agree in float64 from the same state and
    samples, with partial channels and pruned ops."""
    from benchmarks.reference import DrNASReferenceStep

    t = tiny(space, PROGRESSIVE, dtype=torch.float64)
    t.method.start_epoch(0, 3, tuning=False)
    t.method.start_epoch(1, 3, tuning=False)  # stage 2: 1/2 of the channels, 3 ops per edge
    ref_model, ref_arch = copy.deepcopy(t.model), copy.deepcopy(t.arch)
    ref = DrNASReferenceStep(ref_model, ref_arch, t.cfg, clip_alpha=space == "nb201")
    rows = sum(a.shape[0] for a in t.arch.alphas.values())
    n_ops = t.arch.alphas[t.arch.kinds[0]].shape[1]
    torch.manual_seed(3)
    for x, y, xa, ya in batches(2, torch.float64):
        samples = list(torch.distributions.Dirichlet(torch.ones(2 * rows, n_ops, dtype=torch.float64)).sample())
        for trainer_step in (True, False):
            with recorded_samples(samples):
                if trainer_step:
                    step(t, x, y, xa, ya)
                else:
                    ref.alpha_step(xa, ya)
                    ref.weight_step(x, y)
        for a, b in zip(t.arch.parameters(), ref_arch.parameters(), strict=True):
            # Adam turns a gradient's rounding into a step of up to lr / eps (6e4) times it where
            # the gradient is tiny (the pruned alphas')
            torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-11)
        theirs = ref_model.state_dict()
        for key, value in t.model.state_dict().items():
            torch.testing.assert_close(value, theirs[key], rtol=RTOL, atol=TOL, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_a_transition_widens_prunes_and_restarts_the_learning_rate(space):
    """Entering stage 2: each edge keeps its 3 largest alphas (the others zeroed, masked, never
    computed: their new parameters get no gradient), the mixed ops are widened to C/2 channels with
    the old channels first, SGD points at the new parameters with widened momentum buffers, and its
    learning rate is --learning_rate again; Adam's state is left as it was."""
    t = tiny(space, PROGRESSIVE + ("--learning_rate", "0.1"))
    method = t.method
    method.start_epoch(0, 3, tuning=False)
    for b in batches(2):
        step(t, *b)
    t.w_opt.param_groups[0]["lr"] = 0.05  # as the cosine schedule left it
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    adam = {k: v.clone() for k, v in t.a_opt.state[t.arch.parameters()[0]].items()}
    order = [a.detach().clone() for a in t.arch.parameters()]
    method.start_epoch(1, 3, tuning=False)
    for a, old in zip(t.arch.parameters(), order):
        top = old.topk(3, dim=-1)
        assert torch.equal(a.detach().gather(1, top.indices), top.values)
        assert int((a != 0).sum()) == 3 * a.shape[0]
    params = dict(t.model.named_parameters())
    widened = [n for n in params if params[n].shape != before[n].shape]
    assert widened and all(torch.equal(params[n][:before[n].shape[0], :before[n].shape[1]], before[n]) for n in widened)
    assert t.w_opt.param_groups[0]["params"] == list(t.model.parameters())
    assert t.w_opt.param_groups[0]["lr"] == 0.1
    for n in widened:
        assert t.w_opt.state[params[n]]["momentum_buffer"].shape == params[n].shape
    assert all(torch.equal(v, adam[k]) for k, v in t.a_opt.state[t.arch.parameters()[0]].items())
    after = {n: p.detach().clone() for n, p in params.items()}
    for b in batches(2):
        step(t, *b)
    pruned = [n for n in widened if params[n].grad is None]
    assert pruned and all(torch.equal(params[n], after[n]) for n in pruned)  # frozen, as the authors'
    assert all(not torch.equal(params[n], after[n]) for n in widened if n not in pruned)


@pytest.mark.parametrize("space", ["nb201", "s5"])
def test_resumed_across_a_transition_continues_to_the_bit(space, tmp_path):
    """A run cut at the end of stage 1 (the transition still to come) and one cut in stage 2 (the
    supernet widened, ops pruned) continue, from their checkpoints, to the same alphas, weights and
    Dirichlet samples as the uninterrupted run."""
    data = batches(4)
    schedule = [0, 1, 1, 2]  # the epoch of each step

    def run(trainer: Trainer, steps: range) -> None:
        for i in steps:
            trainer.method.start_epoch(schedule[i], 3, tuning=False)
            step(trainer, *data[i])

    full = tiny(space, PROGRESSIVE)
    run(full, range(4))
    for cut in (1, 3):
        part = tiny(space, PROGRESSIVE)
        run(part, range(cut))
        path = tmp_path / f"checkpoint_{cut}.pth.tar"
        save_checkpoint({"epoch": cut, **part.state(), **part.group.rng_states(part.device)}, path)
        resumed = tiny(space, PROGRESSIVE)
        load_search_checkpoint(resumed, path, resume=True)
        run(resumed, range(cut, 4))
        assert_same_supernet(full, resumed, cut)


# -- two processes (torch.multiprocessing, gloo) --------------------------------------------------------

BATCH = 7  # two processes: shards of 4 and 3 images


def _progressive_steps(space: str, group: Group, sync_bn: bool) -> dict[str, list[torch.Tensor]]:
    """This process's steps on its shards of float64 batches of BATCH images: two of stage 1, the
    transition, two of stage 2 (each drawing its Dirichlet samples)."""
    t = tiny(space, PROGRESSIVE, dtype=torch.float64, sync_bn=sync_bn, group=group)
    part = shard_slice(BATCH, group.rank, group.size)
    for i, (x, y, xa, ya) in enumerate(batches(4, torch.float64, n=BATCH)):
        t.method.start_epoch(0 if i < 2 else 1, 3, tuning=False)
        step(t, x[part], y[part], xa[part], ya[part], BATCH)
    return {"alpha": [a.detach() for a in t.arch.parameters()], "state": list(t.model.state_dict().values())}


@pytest.mark.slow
def test_two_processes_take_one_process_steps(tmp_path):
    """With --sync_bn, two processes mix with the same Dirichlet samples (each draws them from the
    same seeded generator) and widen the same channels: their alphas and state_dicts equal one
    process's to float64 rounding, across a transition, and each other's exactly."""
    assert_two_processes_step_as_one(_progressive_steps, tmp_path)


# -- end to end, through the exp_scripts ---------------------------------------------------------------

NB = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100",
      "--gpu", TEST_GPU, "--no_tensorboard"]
SOTA = ["--batch_size", "16", "--init_channels", "4", "--layers", "3", "--report_freq", "100",
        "--gpu", TEST_GPU, "--no_tensorboard"]


@pytest.fixture(scope="module")
def nb201_search(tmp_path_factory, cifar10_dir, bench) -> tuple[list[str], Path]:
    """drnas-201.sh with two stages (partial channels 1/2 for an epoch, then pruned to 3 ops per edge
    and widened to all channels): its flags and folder."""
    exp = tmp_path_factory.mktemp("exp")
    common = ["--data", str(cifar10_dir), "--exp_root", str(exp), "--api_path", str(bench[0]), *NB]
    run_script("drnas-201.sh", *common, "--stages", "2:5:1,1:3:1", "--epochs", "2", "--ckpt_interval", "1")
    return common, exp / "nasbench201" / "search-drnas-201-1"


@pytest.mark.slow
def test_nb201_search_and_projection_through_the_scripts(nb201_search, bench):
    """The search records its stages; its checkpoints hold the stage, the masks and the generator;
    the projection takes --stages from result.json, scores only the ops pruning kept, ends with a
    genotype of them, queried in the benchmark; a zero-cost criterion projects it too."""
    common, folder = nb201_search
    result = read_json(folder / "result.json")
    assert (result["status"], result["method"], result["stages"]) == ("finished", "drnas", "2:5:1,1:3:1")
    assert result["benchmark"] == bench[1][result["genotype"]]
    first, last = (torch.load(folder / f"checkpoint_{e}.pth.tar", weights_only=True) for e in (1, 2))
    assert first["method_state"]["stage"] == 0 and first["method_state"]["kept"] is None
    kept = last["method_state"]["kept"]["cell"]
    assert last["method_state"]["stage"] == 1 and kept.sum(-1).tolist() == [3] * 6
    conv = "cells.0.edges.1<-0.2.op.1.weight"  # nor_conv_1x1 of the first cell: 4 channels
    assert (first["state_dict"][conv].shape[:2], last["state_dict"][conv].shape[:2]) == ((2, 2), (4, 4))
    log = (folder / "log.txt").read_text()
    assert "DrNAS stage 2 of 2: partial channels 1/1, at most 3 ops per edge, learning rate back to 0.025" in log

    out = run_script("drnas-proj-201.sh", *common, "--resume_epoch", "2", "--proj_intv", "1").stdout
    assert "--stages 2:5:1,1:3:1" in out.split("taken from the search run's result.json:")[1].splitlines()[0]
    proj = folder / "drnas-proj-201-seed1-acc-intv1-ep2"
    result = read_json(proj / "result.json")
    assert (result["status"], result["method"]) == ("finished", "drnas-proj")
    assert result["benchmark"] == bench[1][result["genotype"]]
    for i, node in enumerate(parse_arch(result["genotype"]), start=1):
        for op, j in node:
            assert kept[EDGE_KEYS.index(f"{i}<-{j}")][NB201_OPS.index(op)], (i, j, op)
    log = (proj / "log.txt").read_text().splitlines()
    decisions = [line.split("without each op: ")[1].rsplit(" (", 1)[0] for line in log if "without each op: " in line]
    assert [len(d.split(", ")) for d in decisions] == [3] * 6  # three live ops per edge scored

    run_script("drnas-proj-201.sh", *common, "--resume_epoch", "2", "--proj_crit", "nwot")
    assert read_json(folder / "drnas-proj-201-seed1-nwot-intv5-ep2" / "result.json")["status"] == "finished"


@pytest.mark.slow
def test_projection_in_two_processes_decides_as_one(nb201_search):
    """Two processes (--sync_bn) mix with the same samples and project as one process does."""
    common, folder = nb201_search
    args = [*common, "--resume_epoch", "2", "--proj_intv", "1", "--fast", "--score_samples", "2"]
    assert_projection_in_two_processes_decides_as_one("drnas-proj-201.sh", args, folder,
                                                      "drnas-proj-201-seed1-acc-intv1-ep2")


@pytest.mark.slow
def test_an_interrupted_projection_continues_as_if_never_stopped(nb201_search, tmp_path):
    """A projection cut after tuning epoch 2 (its later checkpoints and result never written)
    continues, from the checkpoint's samples generator, projection state and optimisers, to the
    uninterrupted run's history, genotype and final supernet, bit for bit."""
    common, folder = nb201_search
    args = [*common, "--resume_epoch", "2", "--proj_intv", "1", "--fast", "--log_tag", "cut"]
    run_script("drnas-proj-201.sh", *args)
    proj = folder / "drnas-proj-201-seed1-acc-intv1-ep2-cut"
    full = tmp_path / "full"
    shutil.copytree(proj, full)
    result = read_json(proj / "result.json")
    (proj / "result.json").write_text(json.dumps({**result, "status": "running"}))
    for later in proj.glob("checkpoint_*.pth.tar"):
        if int(later.name.split("_")[1].split(".")[0]) > 2:
            later.unlink()
    assert "resumed projection at tuning epoch 2" in run_script("drnas-proj-201.sh", *args).stdout
    assert read_json(proj / "result.json")["genotype"] == result["genotype"]
    assert (proj / "history.jsonl").read_text() == (full / "history.jsonl").read_text()
    a, b = (torch.load(f / "checkpoint_6.pth.tar", weights_only=True) for f in (proj, full))
    assert torch.equal(a["alpha"][0], b["alpha"][0]) and torch.equal(a["method_state"]["generator"],
                                                                      b["method_state"]["generator"])
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


@pytest.mark.slow
def test_darts_space_search_projection_and_evaluation_through_the_scripts(tmp_path, small_cifar10):
    """drnas-sota.sh with two stages, drnas-proj-sota.sh registering the genotype by name, and
    eval.sh training it by that name."""
    common = ["--data", str(small_cifar10), "--exp_root", str(tmp_path), "--space", "s5", *SOTA]
    run_script("drnas-sota.sh", *common, "--stages", "2:7:1,1:4:1", "--epochs", "2", "--begin", "0")
    folder = tmp_path / "sota" / "cifar10" / "search-drnas-sota-s5-2"
    result = read_json(folder / "result.json")
    assert (result["status"], result["method"], result["stages"]) == ("finished", "drnas", "2:7:1,1:4:1")
    kept = torch.load(folder / "checkpoint_2.pth.tar", weights_only=True)["method_state"]["kept"]
    assert all(m.sum(-1).tolist() == [4] * 14 for m in kept.values())

    run_script("drnas-proj-sota.sh", *common, "--resume_epoch", "2", "--proj_intv", "1", "--fast",
               "--genotype_name", "drnas_tiny")
    result = read_json(folder / "drnas-proj-sota-seed2-acc-intv1-ep2" / "result.json")
    assert (result["status"], result["method"], result["genotype_name"]) == ("finished", "drnas-proj", "drnas_tiny")
    genotype = get_genotype("drnas_tiny", registry(tmp_path))
    ops = DartsSupernet(4, 10, 3, "s5").edge_ops("normal")[0]
    for kind, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        assert len(cell) == 8
        for n, (op, j) in enumerate(cell):  # two inputs per node; edge of (node, input j)
            node = n // 2
            assert kept[kind][sum(2 + m for m in range(node)) + j][ops.index(op)], (kind, node, j, op)

    run_script("eval.sh", "--arch", "drnas_tiny", "--data", str(small_cifar10), "--exp_root", str(tmp_path),
               "--init_channels", "4", "--layers", "3", "--batch_size", "16", "--epochs", "1", "--gpu", TEST_GPU,
               "--no_tensorboard", "--report_freq", "100")
    evaluated = read_json(tmp_path / "sota" / "cifar10" / "eval" / "eval-drnas_tiny-2" / "result.json")
    assert evaluated["status"] == "finished" and evaluated["arch"] == "drnas_tiny"


# -- studies and reports --------------------------------------------------------------------------------

def test_reports_give_drnas_rows_next_to_the_published_numbers(tmp_path):
    """DrNAS and DrNAS+PT rows (also for a run folder named drnas-* without result.json), with the
    DrNAS paper's numbers: NAS-Bench-201 94.36 / 73.51 / 46.34 by search dataset, the DARTS space
    2.46 ± 0.03."""
    import csv
    import json
    import subprocess
    import sys

    from analysis.runs import discover
    from analysis.tables import PAPER
    from sota.genotypes import DARTS_V2
    from tests.conftest import REPO

    assert [PAPER[("nasbench201", d)]["DrNAS"] for d in ("cifar10", "cifar100", "imagenet16-120")] == \
        ["94.36", "73.51", "46.34"]
    c10 = tmp_path / "sota" / "cifar10"
    search = c10 / "search-drnas-sota-s5-1"
    result = {"status": "finished", "space": "s5", "method": "drnas", "dataset": "cifar10", "seed": 1, "epochs": 50,
              "stages": "6:7:25,4:4:25", "genotype": str(DARTS_V2)}
    (search / "proj").mkdir(parents=True)
    (search / "result.json").write_text(json.dumps(result))
    (search / "proj" / "result.json").write_text(json.dumps({**result, "method": "drnas-proj"}))
    (c10 / "search-drnas-sota-s5-2").mkdir()
    (c10 / "search-drnas-sota-s5-2" / "log.txt").write_text("")  # no result.json: its name says DrNAS
    assert sorted(r.label for r in discover(tmp_path)) == ["DrNAS", "DrNAS", "DrNAS+PT"]
    proc = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "report" / "s5-cifar10.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["DrNAS", "DrNAS+PT"]
    assert rows["DrNAS"]["paper"] == "2.46 ± 0.03"


@pytest.mark.slow
def test_benchmark_times_drnas_against_the_authors_steps(capsys):
    from benchmarks import bench_search

    assert bench_search.main(["--device", "cpu", "--variants", "drnas,reference_drnas", "--batch_size", "2",
                              "--steps", "1", "--warmup", "0", "--proj_batches", "1", "--no_eval"]) == 0
    out = capsys.readouterr().out
    for space in ("nb201", "darts"):
        assert f"{space} cpu drnas search_step_s=" in out and f"{space} cpu reference_drnas search_step_s=" in out
        assert f"{space} cpu speedup drnas_vs_reference_drnas search_step=" in out
