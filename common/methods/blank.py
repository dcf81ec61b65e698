"""Fix-alpha (`--method blank`, DARTS-PT's "blank"): the supernet trains with alpha never updated, at
its near-uniform random initialisation; perturbation-based projection then selects the ops."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..method import Batch, Method

if TYPE_CHECKING:
    from ..trainer import Trainer


class FixAlpha(Method):
    """No alpha steps: the epochs draw the alpha batches all the same (their random draws stay
    those of a DARTS run), and nothing trains on them."""

    trains_alpha = False

    def alpha_step(self, trainer: Trainer, alpha: Batch, train: Batch | None) -> None:
        """Fix-alpha trains no architecture parameters: a step changes nothing."""
