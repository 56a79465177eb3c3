"""The ENAS controller: a 2-layer LSTM that emits a cell's decisions, trained by REINFORCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from controllers.base import Controller, Sample
from search_spaces.genotypes import Genotype
from search_spaces.operations import OP_NAMES


class LSTMController(Controller):
    """Emits 4 decisions per node (input, op, input, op), each conditioned on all before.

    Every decision feeds the LSTM the embedding of the previous one. Input
    decisions score ``num_nodes + 1`` slots through one head and mask those not
    yet valid (node j may read only ``j + 2`` states), so invalid choices get
    probability exactly 0. Logits go through ENAS's ``/ temperature`` and
    ``cap * tanh``, where the cap is ``tanh_constant`` for inputs and
    ``tanh_constant / op_tanh_reduce`` for ops (ENAS: 1.10 / 2.5 = 0.44): with four ops a
    cap of 2.5 lets one op reach p = 0.98 and freeze the search on it; the default 1.0
    keeps every op between p = 0.04 and 0.71 (when one is at 0.71 the others are at 0.10).
    """

    learns = True

    def __init__(
        self,
        num_nodes: int,
        hidden: int = 64,
        layers: int = 2,
        temperature: float = 5.0,
        tanh_constant: float = 2.5,
        op_tanh_reduce: float = 2.5,
        entropy_weight: float = 5e-3,
        lr: float = 3.5e-3,
        baseline_decay: float = 0.95,
        normalize_advantage: bool = True,
        ops: tuple[str, ...] = OP_NAMES,
    ):
        super().__init__(num_nodes, baseline_decay, normalize_advantage, ops)
        self.temperature, self.tanh_constant = temperature, tanh_constant
        self.op_tanh_reduce = op_tanh_reduce
        self.entropy_weight = entropy_weight
        self.max_inputs = num_nodes + 1
        # stacked LSTM cells: one call per layer per decision is far cheaper than nn.LSTM
        self.lstm = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(layers))
        self.start = nn.Parameter(torch.empty(1, hidden))
        self.input_emb = nn.Embedding(self.max_inputs, hidden)
        self.op_emb = nn.Embedding(len(self.ops), hidden)
        self.input_head = nn.Linear(hidden, self.max_inputs)
        self.op_head = nn.Linear(hidden, len(self.ops))
        for p in self.parameters():  # ENAS initialises the controller uniformly in +-0.1
            nn.init.uniform_(p, -0.1, 0.1)
        invalid = torch.arange(self.max_inputs)[None] >= torch.tensor(self.choices)[:, None]
        self.register_buffer("invalid", invalid, persistent=False)  # (decision, input slot)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr, betas=(0.0, 0.999), eps=1e-3)

    def logits(self, decisions: list[int]) -> list[torch.Tensor]:
        """Masked logits of every decision given the previous ones (teacher forcing)."""
        return self._run(decisions=decisions)[1]

    def _run(
        self,
        decisions: list[int] | None = None,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> tuple[list[int], list[torch.Tensor]]:
        chosen: list[int] = []
        all_logits: list[torch.Tensor] = []
        x, states = self.start, [None] * len(self.lstm)
        for t in range(len(self.choices)):
            for layer, cell in enumerate(self.lstm):
                states[layer] = cell(x, states[layer])
                x = states[layer][0]
            is_op = t % 2 == 1
            logits = (self.op_head if is_op else self.input_head)(x[0])
            if self.temperature:
                logits = logits / self.temperature
            if self.tanh_constant:
                cap = self.tanh_constant / (self.op_tanh_reduce if is_op else 1.0)
                logits = cap * torch.tanh(logits)
            if not is_op:
                logits = logits.masked_fill(self.invalid[t], -torch.inf)
            if decisions is not None:
                a = int(decisions[t])
            elif greedy:
                a = int(logits.argmax())
            else:
                a = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
            chosen.append(a)
            all_logits.append(logits)
            x = (self.op_emb if is_op else self.input_emb).weight[a:a + 1]
        return chosen, all_logits

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> Sample:
        decisions, all_logits = self._run(generator=generator, greedy=greedy)
        log_prob = torch.zeros(())
        entropy = torch.zeros(())
        for a, logits in zip(decisions, all_logits, strict=True):
            logp = F.log_softmax(logits, -1)
            log_prob = log_prob + logp[a]
            p = logp.exp()
            entropy = entropy - (p * logp.masked_fill(p == 0, 0.0)).sum()
        return Sample(Genotype.from_decisions(decisions, self.ops), log_prob, entropy)

    def policy_step(self, samples: list[Sample], advantages: list[float]) -> None:
        loss = sum(-a * s.log_prob - self.entropy_weight * s.entropy
                   for s, a in zip(samples, advantages, strict=True)) / len(samples)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
