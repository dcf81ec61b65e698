"""Architecture parameters (alpha) and the projection state of a supernet.

The supernet modules take their mixing weights as an argument; this object owns the
alphas, turns them into mixing weights (softmax, with decided edges replaced by their
projected rows) and records which edges and nodes projection has decided. Keeping it
outside the model keeps the model's state_dict in the original layout.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

# Per cell kind, per edge: the indices of the ops whose mixing weight may be non-zero.
Active = dict[str, list[list[int]]]


def active_ops(weights: dict[str, Tensor]) -> Active:
    """Per kind and edge, the indices of ops whose weight is not exactly 0, with one
    device-to-host transfer for all kinds (a forward that derives this syncs once, not per op)."""
    flat = torch.cat([w.detach().reshape(-1) for w in weights.values()]).ne(0).cpu()
    out, start = {}, 0
    for kind, w in weights.items():
        rows = flat[start:start + w.numel()].reshape(w.shape)
        out[kind] = [row.nonzero().flatten().tolist() for row in rows]
        start += w.numel()
    return out


class Architecture:
    """alpha per cell kind ('cell' for NAS-Bench-201, 'normal'/'reduce' for DARTS)."""

    def __init__(self, shapes: dict[str, tuple[int, int]], device: torch.device | str = "cpu",
                 init_scale: float = 1e-3, dtype: torch.dtype = torch.float32) -> None:
        self.kinds = list(shapes)
        self.alphas = {k: nn.Parameter(init_scale * torch.randn(*shape).to(device, dtype))
                       for k, shape in shapes.items()}
        # Projection state: rows of decided edges are replaced by proj_weights rows
        # (one-hot after op projection, all zeros for edges dropped by topology projection).
        self.proj_weights = {k: torch.zeros(*shape, device=device, dtype=dtype) for k, shape in shapes.items()}
        self.decided = {k: [False] * shape[0] for k, shape in shapes.items()}
        self.decided_nodes: dict[str, list[int]] = {k: [] for k in shapes}
        # Pruning (DrNAS's progressive learning): per kind, the ops each edge keeps (None: all).
        self.kept: dict[str, Tensor] | None = None
        self._kept_rows: dict[str, list[list[int]]] = {}
        self._row_cache: dict[str, dict[int, list[int]]] = {}
        self._mask_cache: dict[str, Tensor] = {}

    # -- alpha -------------------------------------------------------------------------
    def parameters(self) -> list[nn.Parameter]:
        return [self.alphas[k] for k in self.kinds]

    def softmax(self) -> dict[str, Tensor]:
        return {k: torch.softmax(a, dim=-1) for k, a in self.alphas.items()}

    def weights(self) -> dict[str, Tensor]:
        """Mixing weights: softmax(alpha), decided rows replaced (no gradient through them)."""
        return self.apply_projection(self.softmax())

    def apply_projection(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """Replace the rows of decided edges by their projected rows."""
        out = {}
        for k, w in weights.items():
            if any(self.decided[k]):
                w = torch.where(self._mask(k)[:, None], self.proj_weights[k], w)
            out[k] = w
        return out

    def active(self) -> Active:
        """Ops that may carry a non-zero weight, known on the host without a device sync."""
        out = {}
        for k in self.kinds:
            n_edges = self.proj_weights[k].shape[0]
            rows = self._decided_rows(k)
            out[k] = [rows[e] if self.decided[k][e] else self.live_ops(k, e) for e in range(n_edges)]
        return out

    def live_ops(self, kind: str, edge: int) -> list[int]:
        """The ops of an edge that pruning kept (all of them without pruning)."""
        if self.kept is None:
            return list(range(self.proj_weights[kind].shape[1]))
        return list(self._kept_rows[kind][edge])

    def prune(self, kept: dict[str, Tensor] | None) -> None:
        """Keep only the ops `kept` marks (bool, per kind [edges, ops]; None: all): the others are
        never computed again, whatever their mixing weights (DrNAS's progressive pruning zeroes
        them), and projection does not choose them."""
        if kept is None:
            self.kept, self._kept_rows = None, {}
        else:
            self.kept = {k: kept[k].to(self.proj_weights[k].device, torch.bool) for k in self.kinds}
            self._kept_rows = {k: [row.nonzero().flatten().tolist() for row in m.cpu()] for k, m in self.kept.items()}

    def _mask(self, kind: str) -> Tensor:
        """Decided-edge mask on the device, cached so a step copies nothing to the device."""
        if kind not in self._mask_cache:
            self._mask_cache[kind] = torch.tensor(self.decided[kind], device=self.proj_weights[kind].device)
        return self._mask_cache[kind]

    def _decided_rows(self, kind: str) -> dict[int, list[int]]:
        if kind not in self._row_cache:
            pw = self.proj_weights[kind].detach().cpu()
            self._row_cache[kind] = {e: torch.nonzero(pw[e]).flatten().tolist()
                                     for e in range(pw.shape[0]) if self.decided[kind][e]}
        return self._row_cache[kind]

    def _invalidate(self) -> None:
        self._row_cache, self._mask_cache = {}, {}

    # -- projection ----------------------------------------------------------------------
    def undecided_edges(self, kind: str) -> list[int]:
        return [e for e, d in enumerate(self.decided[kind]) if not d]

    def project_op(self, kind: str, edge: int, op: int) -> None:
        """Fix an edge to one op: its mixing weights become one-hot."""
        self.proj_weights[kind][edge].zero_()
        self.proj_weights[kind][edge, op] = 1.0
        self.decided[kind][edge] = True
        self._invalidate()

    def drop_edges(self, kind: str, node: int, edges: Iterable[int]) -> None:
        """Topology projection: the given (already op-projected) edges get weight 0."""
        for e in edges:
            self.proj_weights[kind][e].zero_()
            self.decided[kind][e] = True
        self.decided_nodes[kind].append(int(node))
        self._invalidate()

    def masked(self, kind: str, edge: int, op: int | None = None,
               weights: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Projected weights (`weights`, a method's; default: softmax(alpha) projected) with one
        op (or, op=None, a whole edge) zeroed, nothing renormalised."""
        w = {k: v.detach().clone() for k, v in (self.weights() if weights is None else weights).items()}
        if op is None:
            w[kind][edge] = 0.0
        else:
            w[kind][edge, op] = 0.0
        return w

    def masked_active(self, kind: str, edge: int, op: int | None = None) -> Active:
        act = self.active()
        act[kind] = [list(ops) for ops in act[kind]]
        act[kind][edge] = [] if op is None else [o for o in act[kind][edge] if o != op]
        return act

    # -- persistence ---------------------------------------------------------------------
    def alpha_list(self) -> list[Tensor]:
        """alpha as the original code saved it in checkpoints: a list in kind order."""
        return [self.alphas[k].detach().clone() for k in self.kinds]

    def load_alpha_list(self, alphas: list[Tensor]) -> None:
        if len(alphas) != len(self.kinds):
            raise ValueError(f"checkpoint holds {len(alphas)} alpha tensors, expected {len(self.kinds)}")
        for k, a in zip(self.kinds, alphas):
            if tuple(a.shape) != tuple(self.alphas[k].shape):
                raise ValueError(f"alpha '{k}' has shape {tuple(a.shape)} in the checkpoint, "
                                 f"expected {tuple(self.alphas[k].shape)}")
            with torch.no_grad():
                self.alphas[k].copy_(a)

    def projection_state(self) -> dict:
        return {"proj_weights": {k: v.cpu() for k, v in self.proj_weights.items()},
                "decided": {k: list(v) for k, v in self.decided.items()},
                "decided_nodes": {k: list(v) for k, v in self.decided_nodes.items()}}

    def load_projection_state(self, state: dict) -> None:
        for k in self.kinds:
            self.proj_weights[k].copy_(state["proj_weights"][k])
            self.decided[k] = [bool(x) for x in state["decided"][k]]
            self.decided_nodes[k] = [int(x) for x in state["decided_nodes"][k]]
        self._invalidate()
