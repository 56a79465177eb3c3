"""Linear maps of a cell's states, the algebra of its fused form (``search_spaces/fused.py``).

Each op of the registry gives its ``Terms`` (``search_spaces/operations.py``); a node's
value is the sum of its two ops' terms, and the cell's output maps them through its 1x1
combine, so the whole cell folds into a few convs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Terms:
    """A sum of linear maps of a cell's states: the value of a node, or the cell's output.

    ``convs[(state, dilation)]``: a (out, C, 3, 3) kernel on relu(state);
    ``seps[state]``: (depthwise (C, 3, 3), pointwise (out, C)) pairs on relu(state);
    ``raw[state]``: an (out, C) matrix on the state itself (the identity op).
    """

    bias: Tensor
    convs: dict[tuple[int, int], Tensor] = field(default_factory=dict)
    seps: dict[int, list[tuple[Tensor, Tensor]]] = field(default_factory=dict)
    raw: dict[int, Tensor] = field(default_factory=dict)

    def __add__(self, other: Terms) -> Terms:
        convs, raw = dict(self.convs), dict(self.raw)
        for key, k in other.convs.items():
            convs[key] = convs[key] + k if key in convs else k
        for state, m in other.raw.items():
            raw[state] = raw[state] + m if state in raw else m
        seps = {s: list(pairs) for s, pairs in self.seps.items()}
        for state, pairs in other.seps.items():
            seps.setdefault(state, []).extend(pairs)
        return Terms(self.bias + other.bias, convs, seps, raw)

    def mapped(self, w: Tensor) -> Terms:
        """``w @ self`` for an (out', out) matrix ``w``: a 1x1 conv applied after."""
        return Terms(
            w @ self.bias,
            {key: torch.einsum("po,oikl->pikl", w, k) for key, k in self.convs.items()},
            {s: [(d, w @ p) for d, p in pairs] for s, pairs in self.seps.items()},
            {s: w @ m for s, m in self.raw.items()},
        )

    def folded(self) -> Terms:
        """Separable convs on a state that also has a full 3x3 conv, merged into it."""
        convs, seps = dict(self.convs), {}
        for state, pairs in self.seps.items():
            if (state, 1) in convs:
                convs[(state, 1)] = convs[(state, 1)] + sum(
                    p[:, :, None, None] * d[None] for d, p in pairs)
            else:
                seps[state] = pairs
        return Terms(self.bias, convs, seps, self.raw)
