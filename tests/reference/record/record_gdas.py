"""Record GDAS search steps (NAS-Bench-201 and DARTS space) in float64, from the authors' code.

Source: D-X-Y/AutoDL-Projects at bb2f405961d73b5bf3a757178793aa1fc7038ca2 (2020-01-15, the
NAS-Bench-201 paper's code, before the `lib/` -> `xautodl/` move): the search loop is
`search_func` of `exps/algos/GDAS.py`, imported and called as is (with a stub for `nas_201_api`,
which it only uses to query the benchmark); the epoch set-up repeats its `main()` lines 141-144
(learning rate and tau of the epoch). Models: `TinyNetworkGDAS` (`search_model_gdas.py`, NAS-Bench-201)
and `NASNetworkGDAS` (`search_model_gdas_nasnet.py`, the DARTS space of
`scripts-search/GDAS-search-NASNet-space.sh`: both cells searched, no fixed reduction cell), built by
`get_cell_based_tiny_net` from the configs those scripts pass, the optimiser by `get_optim_scheduler`.
Usage: python tests/reference/record/record_gdas.py CHECKOUT [--variant nb201|darts] [--check]

3 steps of epoch 1 of a 5-epoch run (tau and learning rate both follow their schedules), each
`search_func` iteration: weight step (nesterov SGD) on the weight batch, then the arch step (Adam) on
the alpha batch. Every forward draws one Gumbel tensor per alpha (`exponential_()`, then `-log`): the
draws are recorded per forward and replayed from the file.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import recording
import torch
import torch.nn as nn

COMMIT = "bb2f405961d73b5bf3a757178793aa1fc7038ca2"
BLOBS = {
    "exps/algos/GDAS.py": "ad7054301f7006512f8694cf0230ff1794190284",
    "lib/models/cell_searchs/search_model_gdas.py": "040092295a881e9a17701d2d4766902a178442d4",
    "lib/models/cell_searchs/search_model_gdas_nasnet.py": "24edffd19331bed1a3c0430eb3c12a334621a13b",
    "lib/models/cell_searchs/search_cells.py": "60a7ceeec017345350b5507d6890a7783d1764bd",
    "lib/models/cell_operations.py": "021bdef36ccddf1108aa460678ec3d72d6de79d9",
    "lib/procedures/optimizers.py": "a3cb84ac496be059a87af83cecf94d2468f85c9c",
    "configs/nas-benchmark/algos/GDAS.config": "8fca4d70a06ccef2cc280baf5b63b5701cbaacfa",
    "configs/search-opts/GDAS-NASNet-CIFAR.config": "85130a8bdc178eb8d494d17744be5b9a6111f5d0",
    "configs/search-archs/GDAS-NASNet-CIFAR.config": "2465dd6906adf328d59895bbd003533fe508d0a2",
}
FILES = {"nb201": "steps_nb201_gdas_C4.pt", "darts": "steps_darts_gdas_C4_N2.pt"}
SPACE = {"nb201": "nas-bench-201", "darts": "darts"}
OPT_CONFIG = {"nb201": "configs/nas-benchmark/algos/GDAS.config",
              "darts": "configs/search-opts/GDAS-NASNet-CIFAR.config"}
ARCH_CONFIG = "configs/search-archs/GDAS-NASNet-CIFAR.config"
C, N, CLASSES, STEPS = 4, {"nb201": 5, "darts": 2}, 10, 3
EPOCH, TOTAL_EPOCHS = 1, 5
# scripts-search/algos/GDAS.sh and GDAS-search-NASNet-space.sh (`BN`=1 as the docs run them)
HYPER = {"tau_max": 10.0, "tau_min": 0.1, "arch_learning_rate": 3e-4, "arch_weight_decay": 1e-3,
         "track_running_stats": True, "affine": False, "grad_clip": 5.0}
OUTPUTS = ["lr", "tau", "index_weight_step", "loss", "grad_norm", "index_alpha_step", "alpha_loss", "alphas",
           "state_sums"]


class Logger:
    def log(self, *args: object) -> None:
        pass


class Tape:
    """Per forward of the supernet: the exponential draws its Gumbel noise comes from (recorded, or
    replayed from a file instead of the RNG) and the sampled op indices its cells were given."""

    def __init__(self, model: nn.Module, cell_class: type, replay: list[torch.Tensor] | None) -> None:
        self.forwards: list[dict] = []
        self.replay = None if replay is None else list(replay)
        model.register_forward_pre_hook(lambda module, args: self.forwards.append({"draws": [], "index": []}))
        self.cell_class = cell_class
        self.originals = draw, forward_gdas = torch.Tensor.exponential_, cell_class.forward_gdas

        def exponential_(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if self.replay is None:
                draw(tensor, *args, **kwargs)
            else:
                tensor.copy_(self.replay.pop(0))
            self.forwards[-1]["draws"].append(tensor.clone())
            return tensor

        def kept_index(cell: nn.Module, *args: torch.Tensor) -> torch.Tensor:
            index = args[-1]  # forward_gdas(..., hardwts, index): the same tensor for every cell of a kind
            if not any(index is seen for seen in self.forwards[-1]["index"]):
                self.forwards[-1]["index"].append(index)
            return forward_gdas(cell, *args)

        torch.Tensor.exponential_ = exponential_
        cell_class.forward_gdas = kept_index

    def restore(self) -> None:
        torch.Tensor.exponential_, self.cell_class.forward_gdas = self.originals


def build(checkout: Path, variant: str) -> dict:
    recording.check_checkout(checkout, BLOBS, f"D-X-Y/AutoDL-Projects@{COMMIT}")
    recording.pytorch1_semantics()
    recording.import_from(checkout / "lib")
    sys.modules.setdefault("nas_201_api", types.SimpleNamespace(NASBench201API=None))
    spec = importlib.util.spec_from_file_location("gdas_search", checkout / "exps/algos/GDAS.py")
    gdas = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gdas)
    # its top-k accuracy `.view`s a non-contiguous tensor, which current PyTorch rejects; it only feeds
    # the log's meters, never the trajectory
    gdas.obtain_accuracy = lambda output, target, topk: [torch.zeros(1) for _ in topk]
    from config_utils import dict2config, load_config
    from models import get_cell_based_tiny_net, get_search_spaces
    from models.cell_searchs.search_cells import NAS201SearchCell, NASNetSearchCell
    from procedures import get_optim_scheduler

    space = get_search_spaces("cell", SPACE[variant])
    net = {"num_classes": CLASSES, "space": space, "affine": HYPER["affine"],
           "track_running_stats": HYPER["track_running_stats"], "C": C, "N": N[variant]}
    if variant == "nb201":  # GDAS.py main() lines 92-95
        model_config = dict2config({"name": "GDAS", "max_nodes": 4, **net}, None)
    else:  # lines 97-98, with C and N made tiny
        model_config = load_config(checkout / ARCH_CONFIG, net, None)
    config = load_config(checkout / OPT_CONFIG[variant], {"class_num": CLASSES, "xshape": (1, 3, 32, 32),
                                                          "epochs": TOTAL_EPOCHS}, None)
    model = get_cell_based_tiny_net(model_config)
    w_optimizer, w_scheduler, criterion = get_optim_scheduler(model.get_weights(), config)
    a_optimizer = torch.optim.Adam(model.get_alphas(), lr=HYPER["arch_learning_rate"], betas=(0.5, 0.999),
                                   weight_decay=HYPER["arch_weight_decay"])
    return {"search_func": gdas.search_func, "model": model, "network": torch.nn.DataParallel(model).cuda(),
            "criterion": criterion, "w_optimizer": w_optimizer, "w_scheduler": w_scheduler,
            "a_optimizer": a_optimizer, "config": config, "op_names": list(space),
            "cell_class": NAS201SearchCell if variant == "nb201" else NASNetSearchCell}


def run(parts: dict, steps: list[dict], replay: bool) -> list[dict]:
    """One epoch of GDAS.py main() over the recorded batches; per step what search_func computed."""
    model, w_optimizer, a_optimizer = parts["model"], parts["w_optimizer"], parts["a_optimizer"]
    parts["w_scheduler"].update(EPOCH, 0.0)  # main() lines 141 and 144
    model.set_tau(HYPER["tau_max"] - (HYPER["tau_max"] - HYPER["tau_min"]) * EPOCH / (TOTAL_EPOCHS - 1))
    draws = None
    if replay:
        draws = [d for step in steps for d in step["exponentials_weight_step"] + step["exponentials_alpha_step"]]
    tape = Tape(model, parts["cell_class"], draws)
    losses, grad_norms, snapshots = [], [], []
    criterion, clip, a_step = parts["criterion"], torch.nn.utils.clip_grad_norm_, a_optimizer.step

    def kept_criterion(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        losses.append(criterion(logits, targets))
        return losses[-1]

    def kept_clip(parameters, max_norm: float) -> torch.Tensor:  # network.parameters(): the alphas too
        grad_norms.append(clip(parameters, max_norm))
        return grad_norms[-1]

    def step_and_snapshot() -> None:  # a_optimizer.step() ends a search_func iteration
        a_step()
        snapshots.append({"lr": w_optimizer.param_groups[0]["lr"], "tau": model.get_tau(),
                          "alphas": [a.detach().clone() for a in model.get_alphas()],
                          "state_sums": recording.state_sums(model.state_dict())})

    a_optimizer.step = step_and_snapshot
    torch.nn.utils.clip_grad_norm_ = kept_clip
    xloader = [(s["x"].double(), s["y"], s["x_alpha"].double(), s["y_alpha"]) for s in steps]
    try:
        parts["search_func"](xloader, parts["network"], kept_criterion, parts["w_scheduler"], w_optimizer,
                             a_optimizer, f"{EPOCH:03d}-{TOTAL_EPOCHS:03d}", 10**9, Logger())
    finally:
        torch.nn.utils.clip_grad_norm_ = clip
        tape.restore()
    n_alphas = len(model.get_alphas())
    assert all(len(f["draws"]) == n_alphas and len(f["index"]) == n_alphas for f in tape.forwards), \
        "a forward redrew its Gumbel noise (inf or nan) or skipped a cell kind"
    outputs = []
    for i, snapshot in enumerate(snapshots):
        weight_forward, alpha_forward = tape.forwards[2 * i], tape.forwards[2 * i + 1]
        outputs.append({
            "exponentials_weight_step": weight_forward["draws"], "exponentials_alpha_step": alpha_forward["draws"],
            "gumbels_weight_step": [-e.log() for e in weight_forward["draws"]],  # as forward() computes them
            "gumbels_alpha_step": [-e.log() for e in alpha_forward["draws"]],
            "lr": snapshot["lr"], "tau": snapshot["tau"],
            "index_weight_step": [i.flatten() for i in weight_forward["index"]],
            "loss": losses[2 * i].item(), "grad_norm": grad_norms[i].item(),
            "index_alpha_step": [i.flatten() for i in alpha_forward["index"]],
            "alpha_loss": losses[2 * i + 1].item(), "alphas": snapshot["alphas"], "state_sums": snapshot["state_sums"],
        })
    return outputs


def record(checkout: Path, variant: str) -> dict:
    torch.manual_seed(0)  # the authors' constructors draw the initial weights and alphas; forward() the noise
    parts = build(checkout, variant)
    model = parts["model"]
    recording.round_to_float32(model.state_dict().values())
    init_state = recording.float32_copy(model.state_dict())
    alpha_names = [k for k, v in model.named_parameters() if any(v is a for a in model.get_alphas())]
    gen = torch.Generator().manual_seed(1)
    steps = []
    for _ in range(STEPS):
        x, y = recording.random_batch(gen, CLASSES)
        x_alpha, y_alpha = recording.random_batch(gen, CLASSES)
        steps.append({"epoch": EPOCH, "x": x, "y": y, "x_alpha": x_alpha, "y_alpha": y_alpha})
    for step, out in zip(steps, run(parts, steps, replay=False)):
        step.update(out)
    config = parts["config"]
    return {
        "method": "gdas (hard Gumbel-softmax, straight-through; weight step then arch step)",
        "space": variant,
        "source": {"repo": "D-X-Y/AutoDL-Projects", "commit": COMMIT, "files": list(BLOBS)},
        "torch_version": torch.__version__,
        "C": C, "N": N[variant], "num_classes": CLASSES,
        "op_names": parts["op_names"],
        "hyper": {**HYPER, "learning_rate": config.LR, "eta_min": config.eta_min, "momentum": config.momentum,
                  "weight_decay": config.decay, "nesterov": config.nesterov, "scheduler": config.scheduler,
                  "epoch": EPOCH, "total_epochs": TOTAL_EPOCHS},
        "adam_betas": (0.5, 0.999),
        "batch_size": recording.BATCH,
        "alpha_names": alpha_names,
        "init_state_dict": init_state,
        "init_alphas": [init_state[name] for name in alpha_names],
        "steps": steps,
        "final_state_dict": recording.float64_copy(model.state_dict()),
    }


def replay(checkout: Path, ref: dict) -> dict:
    torch.manual_seed(12345)  # neither the initialisation nor the noise come from this RNG
    parts = build(checkout, ref["space"])
    assert parts["op_names"] == ref["op_names"]
    parts["model"].load_state_dict(ref["init_state_dict"])  # holds the alphas too
    steps = run(parts, ref["steps"], replay=True)
    return {"steps": steps, "final_state_dict": recording.float64_copy(parts["model"].state_dict())}


if __name__ == "__main__":
    recording.main(__doc__, FILES, record, replay, OUTPUTS)
