"""Loss and accuracy of a pass, kept on the device, where a training epoch resumes, and the
divergence check every run makes."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


class Stats:
    """Running loss and top-k accuracy (k=1: the prediction is the label; k=5: the label is among
    the five highest logits) kept on the device, read back only when asked."""

    def __init__(self, device: torch.device, k: int = 1) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.n = 0
        self.k = k

    def add(self, logits: Tensor, y: Tensor, loss: Tensor) -> None:
        self.loss += loss.detach().double() * y.shape[0]
        if self.k == 1:
            self.correct += (logits.argmax(dim=1) == y).sum()
        else:
            self.correct += (logits.topk(min(self.k, logits.shape[1]), dim=1).indices == y[:, None]).any(1).sum()
        self.n += y.shape[0]

    def result(self) -> tuple[float, float]:
        """Accuracy (%) and mean loss."""
        return summary(self.loss.item(), self.correct.item(), self.n)

    def state(self) -> dict[str, Any]:
        """The running sums, on the CPU, for a mid-epoch checkpoint (`load` restores them)."""
        return {"loss": self.loss.cpu(), "correct": self.correct.cpu(), "n": self.n}

    def load(self, state: dict[str, Any]) -> None:
        self.loss.copy_(state["loss"])
        self.correct.copy_(state["correct"])
        self.n = int(state["n"])

    def totals(self) -> Tensor:
        """[loss sum, correct, count] as float64 on the device: what the processes of a
        multi-process run add up (`summary` of the sum is their result)."""
        return torch.stack([self.loss, self.correct.double(), self.loss.new_tensor(float(self.n))])


@dataclass
class Midway:
    """Where a training epoch starts: at `step`, after the steps whose running loss and accuracy
    `stats` holds (step 0: at its start), and what writes its mid-epoch checkpoints
    (`write(epoch, step, stats)`, a collective: every process gives its states)."""

    stats: Stats
    step: int = 0
    write: Callable[[int, int, Stats], None] = lambda epoch, step, stats: None


def summary(loss_sum: float, correct: float, n: float) -> tuple[float, float]:
    """Accuracy (%) and mean loss of n samples."""
    if n == 0:
        return 0.0, 0.0
    return 100.0 * correct / n, loss_sum / n


SEARCH_HINT = ("lower --learning_rate or --arch_learning_rate, or resume from an earlier checkpoint "
               "with --resume_epoch.")


def check_finite(value: float, what: str, hint: str = SEARCH_HINT) -> None:
    """Stop a diverged run; the caller writes checkpoints only after this check passes."""
    if not math.isfinite(value):
        raise DivergedError(f"{what} is {value}: training diverged. The last good checkpoint is kept; {hint}")
