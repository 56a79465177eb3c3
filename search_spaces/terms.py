"""What ops add to a node, as maps of a cell's states: the algebra of its fused form
(``search_spaces/fused.py``).

Each op of the registry gives its ``Terms`` (``search_spaces/operations.py``); a node's
value is the sum of its two ops' terms, and the cell's output maps them through its 1x1
combine, so the whole cell folds into a few convs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def padded(kernel: Tensor, size: int) -> Tensor:
    """A (..., k, k) kernel centred in a (..., size, size) one: the same 'same' conv."""
    pad = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (pad, pad, pad, pad)) if pad else kernel


def _summed(a: Tensor, b: Tensor) -> Tensor:
    size = max(a.shape[-1], b.shape[-1])
    return padded(a, size) + padded(b, size)


@dataclass
class Terms:
    """What ops add to a node (or a cell's output), as maps of the cell's states.

    ``convs[(state, dilation)]``: an (out, C, k, k) kernel (k odd) on relu(state);
    ``seps[state]``: (depthwise (C, k, k), pointwise (out, C)) pairs on relu(state);
    ``raw[state]``: an (out, C) matrix on the state itself (the identity op);
    ``opaque[state]``: (module, (out, C) matrix) pairs: a nonlinear op (attention) on the
    state itself, run as it is, its output mapped by the matrix.
    """

    bias: Tensor
    convs: dict[tuple[int, int], Tensor] = field(default_factory=dict)
    seps: dict[int, list[tuple[Tensor, Tensor]]] = field(default_factory=dict)
    raw: dict[int, Tensor] = field(default_factory=dict)
    opaque: dict[int, list[tuple[nn.Module, Tensor]]] = field(default_factory=dict)

    def __add__(self, other: Terms) -> Terms:
        convs, raw = dict(self.convs), dict(self.raw)
        for key, k in other.convs.items():
            convs[key] = _summed(convs[key], k) if key in convs else k
        for state, m in other.raw.items():
            raw[state] = raw[state] + m if state in raw else m
        seps = {s: list(pairs) for s, pairs in self.seps.items()}
        for state, pairs in other.seps.items():
            seps.setdefault(state, []).extend(pairs)
        opaque = {s: list(pairs) for s, pairs in self.opaque.items()}
        for state, pairs in other.opaque.items():
            opaque.setdefault(state, []).extend(pairs)
        return Terms(self.bias + other.bias, convs, seps, raw, opaque)

    def mapped(self, w: Tensor) -> Terms:
        """``w @ self`` for an (out', out) matrix ``w``: a 1x1 conv applied after."""
        return Terms(
            w @ self.bias,
            {key: torch.einsum("po,oikl->pikl", w, k) for key, k in self.convs.items()},
            {s: [(d, w @ p) for d, p in pairs] for s, pairs in self.seps.items()},
            {s: w @ m for s, m in self.raw.items()},
            {s: [(op, w @ m) for op, m in pairs] for s, pairs in self.opaque.items()},
        )

    def folded(self) -> Terms:
        """Separable convs on a state that also has an undilated full conv, merged into it."""
        convs, seps = dict(self.convs), {}
        for state, pairs in self.seps.items():
            if (state, 1) in convs:
                for d, p in pairs:
                    convs[(state, 1)] = _summed(convs[(state, 1)], p[:, :, None, None] * d[None])
            else:
                seps[state] = pairs
        return Terms(self.bias, convs, seps, self.raw, self.opaque)
