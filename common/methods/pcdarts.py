"""PC-DARTS (Xu, Xie, Zhang, Chen, Qi, Tian, Xiong: "PC-DARTS: Partial Channel Connections for
Memory-Efficient Architecture Search", ICLR 2020), as yuhuixu1993/PC-DARTS runs it (`train_search.py`,
`model_search.py`, `architect.py` at b74702f; tests/reference/README.md "PC-DARTS" cites them line by
line).

- Partial channel connections (`--k`, default 4): each mixed op computes on the first C/k channels
  of its input, the others pass the edge by (through a 2x2 max pool on stride-2 edges), then concat
  and channel shuffle: the supernet the space builds (`SupernetRequest`, common/cellops.py `NodeSum`).
- Edge normalisation: per cell kind a parameter `betas` with one entry per edge (1e-3 * randn, drawn
  right after the alphas, as model_search.py:168-181), softmax over the edges into each node
  (`Space.node_inputs`: the DARTS space's [0:2], [2:5], [5:9], [9:14]); node i is
  sum_j beta_ij * mixed_op_ij. The supernet takes beta as the mixing weights' per-edge entry
  (`common.space.edge_weights_key`). The betas are trained with alpha (the same Adam, first order)
  and the checkpoints hold them (`state`). A space without `node_inputs` (NAS-Bench-201) gets none:
  partial-channel DARTS, as DrNAS' 201-space runs PC-DARTS (`--method darts --k 4`).
- Genotype: softmax(alpha) with each edge's row times its beta (model_search.py:186-231): beta
  ranks a node's inputs; an edge's best op is alpha's.
- Warm-up: alpha and beta train from search epoch `--arch_start_epoch` on (train_search.py:156: 15).
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..arch import Architecture
from ..config import SearchConfig, check
from ..experiment import LOGGER
from ..method import GENOTYPE, MethodDef, Phase, Weights, alpha_if_in_model
from ..space import SupernetRequest, edge_weights_key
from . import partial
from .darts import DARTS

if TYPE_CHECKING:
    from ..trainer import Trainer

log = logging.getLogger(LOGGER)

K = 4               # model_search.py:31
ARCH_START = 15     # train_search.py:156: `if epoch >= 15`
BETA_SCALE = 1e-3   # model_search.py:178-179: 1e-3 * torch.randn(k)


@dataclass(frozen=True)
class Options:
    """PC-DARTS' flags."""

    k: int = K
    arch_start_epoch: int = ARCH_START

    def __post_init__(self) -> None:
        check(self.k >= 1, "k", self.k, "partial channels 1/k: k must be at least 1")
        check(self.arch_start_epoch >= 0, "arch_start_epoch", self.arch_start_epoch,
              "must be >= 0 (the search epoch of the first alpha step)")


def edge_normalised(betas: Tensor, node_inputs: tuple[int, ...]) -> Tensor:
    """Softmax of `betas` over the edges into each node, in edge order (model_search.py:146-154)."""
    return torch.cat([torch.softmax(group, dim=-1) for group in betas.split(list(node_inputs))])


class PCDARTS(DARTS):
    """First-order DARTS on partial channels, each edge weighted by its normalised beta."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.betas: dict[str, nn.Parameter] = {}
        self.node_inputs: tuple[int, ...] = ()

    def attach(self, trainer: Trainer) -> None:
        """Draw the betas of a space with edge normalisation (right after the supernet and alpha,
        as the authors; loading a checkpoint replaces them) and train them in alpha's Adam."""
        if trainer.space.node_inputs is None:
            log.info("PC-DARTS: no edge normalisation on %s (partial channels only, as DrNAS' 201-space runs "
                     "PC-DARTS)", trainer.space.label)
            return
        self.node_inputs = trainer.space.node_inputs
        arch = trainer.arch
        self.betas = {kind: nn.Parameter(BETA_SCALE * torch.randn(a.shape[0]).to(a.device, a.dtype))
                      for kind, a in arch.alphas.items()}
        trainer.a_opt.add_param_group({"params": self.parameters()})

    def parameters(self) -> list[nn.Parameter]:
        return list(self.betas.values())

    def edge_weights(self) -> dict[str, Tensor]:
        """Per cell kind, each edge's weight: softmax of beta over its node's inputs."""
        return {kind: edge_normalised(b, self.node_inputs) for kind, b in self.betas.items()}

    def weights(self, arch: Architecture, phase: Phase) -> Weights:
        """softmax(alpha), decided rows projected, with each edge's beta weight beside (a decided edge
        stays weighted by it); GENOTYPE: the rows times beta, which the genotype ranks edges by."""
        weights = arch.weights()
        edges = self.edge_weights()
        if phase == GENOTYPE:
            return {k: w * edges[k][:, None] if k in edges else w for k, w in weights.items()}
        return {**weights, **{edge_weights_key(k): e for k, e in edges.items()}}

    def start_epoch(self, epoch: int, epochs: int, tuning: bool) -> str:
        """Alpha (and beta) train from search epoch --arch_start_epoch on, and in every tuning epoch."""
        self.trains_alpha = tuning or epoch >= self.options.arch_start_epoch
        return "" if self.trains_alpha else f" alpha from epoch {self.options.arch_start_epoch}"

    def clipped_parameters(self, trainer: Trainer) -> list[nn.Parameter]:
        """NAS-Bench-201, as DrNAS runs PC-DARTS: alpha's gradient is clipped with the weights'."""
        return alpha_if_in_model(trainer)

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"betas": {k: b.detach().to("cpu", copy=True) for k, b in self.betas.items()}} if self.betas else {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """The checkpoint's betas; a checkpoint of a run without them (none written, another space)
        is refused when it should have them."""
        if not self.betas:
            return
        betas = state.get("betas")
        if betas is None:
            raise ValueError("the checkpoint holds no PC-DARTS betas (edge normalisation)")
        with torch.no_grad():
            for kind, b in self.betas.items():
                if tuple(betas[kind].shape) != tuple(b.shape):
                    raise ValueError(f"betas '{kind}' have shape {tuple(betas[kind].shape)} in the checkpoint, "
                                     f"expected {tuple(b.shape)}")
                b.copy_(betas[kind])


# -- command line -----------------------------------------------------------------------------------

def add_flags(g: argparse._ArgumentGroup) -> None:
    partial.add_flag(g)
    g.add_argument("--arch_start_epoch", type=int, default=ARCH_START,
                   help="PC-DARTS (--method pcdarts): alpha and beta train from this search epoch on (its "
                        "train_search.py:156); the epochs before train the weights only")


def options(args: argparse.Namespace, chosen: bool) -> Options | None:
    """PC-DARTS' options if it is the run's method; its warm-up given to another method is refused."""
    if not chosen:
        check(args.arch_start_epoch == ARCH_START, "arch_start_epoch", args.arch_start_epoch,
              "only PC-DARTS (--method pcdarts) has a warm-up without alpha steps; leave it out")
        return None
    check(not args.unrolled, "unrolled", True,
          "PC-DARTS searches first order here (its authors' default); leave --unrolled out")
    return Options(k=partial.value(args, K), arch_start_epoch=args.arch_start_epoch)


def build(cfg: SearchConfig) -> PCDARTS:
    """The method; refuses a warm-up as long as the search, which would never train alpha."""
    o = cfg.method_options
    check(cfg.project or o.arch_start_epoch < cfg.epochs, "arch_start_epoch", o.arch_start_epoch,
          f"alpha would never train in a search of --epochs {cfg.epochs}; pass a smaller one (epochs before it "
          "train the weights only)")
    return PCDARTS(o)


def supernet(cfg: SearchConfig) -> SupernetRequest:
    """Partial channels 1/k, which the space checks against its cells."""
    k = cfg.method_options.k
    return SupernetRequest((k,), flag="k", given=str(k))


PCDARTS_DEF = MethodDef("pcdarts", build=build, label=lambda identity: "PC-DARTS", add_flags=add_flags,
                        options=options, saves={"pcdarts": {}}, supernet=supernet,
                        search_run_flags=("k", "arch_start_epoch"))
