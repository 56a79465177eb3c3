"""1. Weight-sharing overhead: a training step through the supernet with a fixed sampled
genotype vs the standalone network of that genotype (same batch, same init)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.timing import Row, interleaved
from controllers import build_controller
from search_spaces.network import CellSRNet


def train_step(net: CellSRNet, opt: torch.optim.Optimizer, lr: torch.Tensor,
               hr: torch.Tensor, genotype=None) -> None:
    loss = F.l1_loss(net(lr, genotype), hr)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run(quick: bool) -> list[Row]:
    channels, cells, batch, lr_side, scale = 32, 4, 16, 32, 2
    torch.manual_seed(0)
    genotype = build_controller("random", 5).sample(torch.Generator().manual_seed(0)).genotype
    supernet = CellSRNet(scale, channels, cells)
    standalone = CellSRNet(scale, channels, cells, genotype=genotype)
    lr = torch.rand(batch, 3, lr_side, lr_side)
    hr = torch.rand(batch, 3, lr_side * scale, lr_side * scale)
    opts = {n: torch.optim.Adam(m.parameters(), 1e-4)
            for n, m in (("supernet", supernet), ("standalone", standalone))}
    times = interleaved({
        "supernet": lambda: train_step(supernet, opts["supernet"], lr, hr, genotype),
        "standalone": lambda: train_step(standalone, opts["standalone"], lr, hr),
    }, repeats=5 if quick else 20)
    shape = f"C={channels} N={cells}, batch {batch} x {lr_side * scale}px HR"
    return [
        Row("supernet", "train step, supernet (fixed genotype)", times["supernet"] * 1e3, "ms",
            shape),
        Row("supernet", "train step, standalone", times["standalone"] * 1e3, "ms", shape),
        Row("supernet", "weight-sharing overhead", times["supernet"] / times["standalone"], "x",
            "goal <= 1.2"),
    ]
