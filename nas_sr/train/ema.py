"""An exponential moving average of a model's weights (``train.ema``), the model a run
validates, keeps as ``best.pt`` and ships.

SR trainers (BasicSR's ``ema_decay``) average the weights because an SR net's validation
PSNR is noisy from epoch to epoch at the end of a schedule: the average sits near the
middle of that plateau, not on one step's side of it. The decay ramps up as
``(1 + n) / (10 + n)`` over the first steps ``n`` (TensorFlow's ``num_updates``), so a run
from scratch does not drag its random initialisation along for thousands of steps.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """``model`` (an independent copy) holds the average; ``update`` folds in a step."""

    def __init__(self, source: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay={decay}: must lie between 0 and 1, both excluded")
        self.decay = decay
        self.model = copy.deepcopy(source).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, source: nn.Module, step: int) -> None:
        """Fold in ``source``'s weights after a run's ``step``-th optimizer step (1-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        mine, theirs = list(self.model.parameters()), list(source.parameters())
        torch._foreach_lerp_(mine, theirs, 1 - decay)
        for own, other in zip(self.model.buffers(), source.buffers(), strict=True):
            own.copy_(other)  # constants (the RGB mean, pruning masks): nothing to average

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)
