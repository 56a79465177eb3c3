"""What every controller offers the search loop: sample a genotype, learn from a reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_spaces.genotypes import Genotype, choices_per_decision


@dataclass
class Sample:
    genotype: Genotype
    log_prob: torch.Tensor  # sum over the decisions; carries grad for a learning controller
    entropy: torch.Tensor  # sum of the per-decision policy entropies


class Controller(nn.Module):
    """Shared machinery: the EMA reward baseline, the update record, checkpoint state.

    ``update`` follows ENAS: the baseline moves first, ``b <- d*b + (1-d)*R``
    (initialised to the first reward so a PSNR of ~30 dB is not all advantage),
    then the policy steps on ``R - b``.
    """

    def __init__(self, num_nodes: int, baseline_decay: float = 0.95):
        super().__init__()
        self.num_nodes = num_nodes
        self.choices = choices_per_decision(num_nodes)
        self.baseline_decay = baseline_decay
        self.register_buffer("baseline", torch.tensor(float("nan"), dtype=torch.float64))
        self.optimizer: torch.optim.Optimizer | None = None

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> Sample:
        raise NotImplementedError

    def policy_step(self, sample: Sample, advantage: float) -> None:
        """Move the policy; a controller that does not learn leaves this empty."""

    def update_baseline(self, reward: float) -> float:
        if torch.isnan(self.baseline):
            self.baseline.fill_(reward)
        else:
            d = self.baseline_decay
            self.baseline.mul_(d).add_((1 - d) * reward)
        return float(self.baseline)

    def update(self, sample: Sample, reward: float) -> dict[str, float]:
        baseline = self.update_baseline(reward)
        advantage = reward - baseline
        self.policy_step(sample, advantage)
        return {
            "reward": reward,
            "baseline": baseline,
            "advantage": advantage,
            "entropy": float(sample.entropy.detach()),
            "log_prob": float(sample.log_prob.detach()),
        }

    def checkpoint_state(self) -> dict[str, Any]:
        optim = self.optimizer.state_dict() if self.optimizer is not None else {}
        return {"model": self.state_dict(), "optimizer": optim}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
