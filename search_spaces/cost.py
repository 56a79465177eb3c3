"""What a genotype costs as a standalone network, counted from the genotype alone.

The search needs the size of every cell it scores at the width it will be retrained
at, thousands of times: building a network (or tracing it) per cell would cost more
than scoring it. Each op's parameters and multiply-accumulates are a closed form in the
channel count C and the LR size (its ``cost`` in the op registry); ``tests/test_cost.py``
and ``tests/test_wide_ops.py`` check the sums against
``count_params`` and the traced ``nas_sr.archs.complexity.mult_adds`` of built networks.
Mult-Adds follow CARN/FALSR: one 1280x720 output, biases free.
"""

from __future__ import annotations

import math

from search_spaces.genotypes import NUM_CELL_INPUTS, Genotype, Node
from search_spaces.network import UPSAMPLERS
from search_spaces.operations import REGISTRY, OpCost

HR_SIZE = (720, 1280)  # (height, width) of the output Mult-Adds are quoted for


def op_cost(op: str, c: int, lq: tuple[int, int]) -> OpCost:
    """Parameters and MACs of one registered op on C channels and an ``lq`` (h, w) input."""
    return REGISTRY[op].size(c, *lq)


def lq_size(scale: int, hr_size: tuple[int, int] = HR_SIZE) -> tuple[int, int]:
    """LR input for ``hr_size``; rounded up where it does not divide (x3: 427x240 -> 1281x720)."""
    return math.ceil(hr_size[0] / scale), math.ceil(hr_size[1] / scale)


def genotype_cost(genotype: Genotype, channels: int, cells: int, scale: int, colors: int = 3,
                  upsampler: str = "conv3") -> dict[str, int]:
    """Params and Mult-Adds of ``CellSRNet(scale, channels, cells, genotype=genotype,
    colors=colors, upsampler=upsampler)``: a network on Y (``colors=1``) has a one-channel
    head and tail."""
    c, lq = channels, lq_size(scale)
    pixels = math.prod(lq)
    ops = [op_cost(op, c, lq) for op in genotype.ops()]
    combine = len(genotype.loose_ends()) * c * c
    cell = OpCost(sum(o.params for o in ops) + combine + c,
                  sum(o.mult_adds for o in ops) + combine * pixels)
    out = colors * scale**2
    head = OpCost(9 * colors * c + c, 9 * colors * c * pixels)
    k2 = UPSAMPLERS[upsampler] ** 2
    tail = OpCost(k2 * c * out + out, k2 * c * out * pixels)
    return {"params": head.params + cells * cell.params + tail.params,
            "mult_adds": head.mult_adds + cells * cell.mult_adds + tail.mult_adds}


def cheapest_cost(nodes: int, channels: int, cells: int, scale: int, colors: int = 3,
                  upsampler: str = "conv3") -> dict[str, int]:
    """The least params and Mult-Adds of any cell network of ``nodes`` nodes (of that
    form, as :func:`genotype_cost`), both at once: a chain of identities. Every op costs
    >= 0 (identity: 0) and a cell has at least one loose end (its last node), each costing
    a C x C slice of the combining 1x1 conv; the chain has just that one. What is left is
    the head, the tail and the upsampler."""
    chain = Genotype(tuple(Node(j + NUM_CELL_INPUTS - 1, "identity", j + NUM_CELL_INPUTS - 1,
                                "identity") for j in range(nodes)))
    return genotype_cost(chain, channels, cells, scale, colors, upsampler)


BUDGET_MODES = ("max", "target")


def budget_penalty(cost: dict[str, int], budget: dict[str, int | None], beta: float,
                   mode: str = "max") -> float:
    """dB taken off the reward of a cell for its cost T against each budget T0.

    ``max``: MnasNet/TuNAS scale the quality by ``min(1, (T/T0)^-beta)``. The quality here
    is PSNR = -10 log10(MSE), already a log, so the same soft constraint applied to the
    MSE becomes a subtraction: ``10 * beta * log10(T/T0)`` dB over budget, 0 within it.
    With beta = 1 a cell twice over budget must halve its error to break even. Monotone
    non-decreasing in every cost.

    ``target``: TuNAS's absolute reward, ``10 * beta * |log10(T/T0)|``: a cell under budget
    pays too, so the search spends the budget unless quality says otherwise (a one-sided
    penalty leaves the size to a reward that may not see what capacity buys).
    """
    if mode not in BUDGET_MODES:
        raise ValueError(f"budget mode {mode!r}: use one of {BUDGET_MODES}")
    penalty = 0.0
    for key, limit in budget.items():
        if limit:
            log_ratio = math.log10(cost[key] / limit)
            penalty += 10 * beta * (abs(log_ratio) if mode == "target" else max(0.0, log_ratio))
    return penalty


def within_budget(cost: dict[str, int], budget: dict[str, int | None]) -> bool:
    return all(not limit or cost[key] <= limit for key, limit in budget.items())


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other point beats: none has lower or equal
    cost with higher quality, or lower cost with equal quality. Sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
