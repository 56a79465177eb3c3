"""What every controller offers the search loop: sample a genotype, learn from a reward."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from search_spaces.genotypes import Genotype, Macro, choices_per_decision
from search_spaces.operations import OP_NAMES


@dataclass
class Sample:
    genotype: Genotype
    log_prob: torch.Tensor  # sum over the decisions; carries grad for a learning controller
    entropy: torch.Tensor  # sum of the per-decision policy entropies


class Controller(nn.Module):
    """Shared machinery: the reward baseline, advantage normalisation, checkpoint state.

    ``update`` takes a batch of samples (ENAS aggregates several per policy step). The
    baseline moves first, ``b <- d*b + (1-d)*mean(R)``, initialised to the first batch's
    mean so a PSNR of ~30 dB is not all advantage; ``rebase`` forgets it, so that the
    next batch re-initialises it (the search calls it when the shared weights have
    trained in between and every reward has drifted up). With ``normalize_advantage``
    the advantages ``R - b`` are divided by a running RMS of past advantages: rewards in
    dB are tens of times ENAS's accuracy-scale ones, and unit-scale advantages keep the
    policy-gradient term comparable to the entropy bonus whatever the reward's unit.
    A constant shift of every reward changes nothing; a scale change changes nothing
    once normalised.
    """

    learns = False  # whether its proposals depend on the rewards it was told
    MAX_TRIES = 10_000  # draws before a band no proposal falls in is called unreachable

    def __init__(self, num_nodes: int, baseline_decay: float = 0.95,
                 normalize_advantage: bool = True, ops: tuple[str, ...] = OP_NAMES,
                 macros: tuple[Macro, ...] = ()):
        super().__init__()
        self.num_nodes, self.ops = num_nodes, tuple(ops)
        # (channels, cells) choices: a proposal's last decision where the space has them
        self.macros = tuple(tuple(m) for m in macros)
        self.choices = choices_per_decision(num_nodes, self.ops, self.macros)
        # the search's cost band: a proposal outside it is redrawn before any score is paid
        self.accept: Callable[[Genotype], bool] | None = None
        self.baseline_decay = baseline_decay
        self.normalize_advantage = normalize_advantage
        self.register_buffer("baseline", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("adv_sq", torch.tensor(float("nan"), dtype=torch.float64))
        self.optimizer: torch.optim.Optimizer | None = None

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> Sample:
        raise NotImplementedError

    def propose(self, generator: torch.Generator | None = None) -> Sample:
        """A sample within the cost band (``accept``), drawn again until it is."""
        for _ in range(self.MAX_TRIES):
            s = self.sample(generator)
            if self.accept is None or self.accept(s.genotype):
                return s
        raise ValueError(f"no cell in {self.MAX_TRIES} draws is within the search's budget "
                         "band; raise the budget or lower its floor")

    def policy_step(self, samples: list[Sample], advantages: list[float]) -> None:
        """Move the policy; a controller that does not learn leaves this empty."""

    def rebase(self) -> None:
        self.baseline.fill_(float("nan"))

    def _advantages(self, rewards: list[float]) -> tuple[float, list[float], list[float]]:
        mean = sum(rewards) / len(rewards)
        if torch.isnan(self.baseline):
            self.baseline.fill_(mean)
        else:
            d = self.baseline_decay
            self.baseline.mul_(d).add_((1 - d) * mean)
        b = float(self.baseline)
        raw = [r - b for r in rewards]
        if not self.normalize_advantage:
            return b, raw, raw
        sq = sum(a * a for a in raw) / len(raw)
        if torch.isnan(self.adv_sq) or float(self.adv_sq) == 0.0:
            self.adv_sq.fill_(sq)
        else:
            d = self.baseline_decay
            self.adv_sq.mul_(d).add_((1 - d) * sq)
        scale = float(self.adv_sq) ** 0.5
        return b, raw, [a / scale if scale > 0 else 0.0 for a in raw]

    def update(self, samples: list[Sample], rewards: list[float]) -> list[dict[str, float]]:
        """One policy step on a batch of (sample, reward); one stats record per sample."""
        if len(samples) != len(rewards) or not samples:
            raise ValueError(f"{len(samples)} samples for {len(rewards)} rewards")
        baseline, raw, advantages = self._advantages(rewards)
        self.policy_step(samples, advantages)
        return [{"reward": r, "baseline": baseline, "advantage": a, "norm_advantage": n,
                 "entropy": float(s.entropy.detach()), "log_prob": float(s.log_prob.detach())}
                for s, r, a, n in zip(samples, rewards, raw, advantages, strict=True)]

    def checkpoint_state(self) -> dict[str, Any]:
        optim = self.optimizer.state_dict() if self.optimizer is not None else {}
        return {"model": self.state_dict(), "optimizer": optim}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        model = dict(state["model"])
        model.setdefault("adv_sq", self.adv_sq)  # a run from before advantage normalisation
        self.load_state_dict(model)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])


class MemoryController(Controller):
    """A controller that learns by remembering what it was told: (cell, reward) pairs, all
    of them or the last ``keep``; its checkpoint holds them, so a resume proposes exactly
    what the run would have."""

    learns = True

    def __init__(self, num_nodes: int, keep: int | None = None, baseline_decay: float = 0.95,
                 normalize_advantage: bool = True, ops: tuple[str, ...] = OP_NAMES,
                 macros: tuple[Macro, ...] = ()):
        super().__init__(num_nodes, baseline_decay, normalize_advantage, ops, macros)
        self.memory: deque[tuple[Genotype, float]] = deque(maxlen=keep)

    def remembered(self) -> None:
        """Called after the memory changed (a model fitted to it is now stale)."""

    def update(self, samples: list[Sample], rewards: list[float]) -> list[dict[str, float]]:
        stats = super().update(samples, rewards)  # the baseline, for the plots
        self.memory.extend((s.genotype, r) for s, r in zip(samples, rewards, strict=True))
        self.remembered()
        return stats

    def checkpoint_state(self) -> dict[str, Any]:
        return {**super().checkpoint_state(),
                "memory": [[g.to_dict(), r] for g, r in self.memory]}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        super().load_checkpoint_state(state)
        self.memory.clear()
        # a cell saved before macros were a decision is its nodes alone
        self.memory.extend((Genotype.from_dict(g if isinstance(g, dict) else {"nodes": g}), r)
                           for g, r in state["memory"])
        self.remembered()
