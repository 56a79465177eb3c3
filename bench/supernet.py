"""1. Weight-sharing overhead: a training step through the supernet with a fixed sampled
genotype vs the standalone network of that genotype (same batch, same init), and the
supernet's step under bf16 autocast (`search.amp`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.timing import Row, interleaved
from controllers import build_controller
from nas_sr.device import native_bf16
from search_spaces.genotypes import Genotype
from search_spaces.network import CellSRNet


def train_step(net: CellSRNet, opt: torch.optim.Optimizer, lq: torch.Tensor,
               gt: torch.Tensor, genotype: Genotype | None = None, amp: bool = False) -> None:
    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        sr = net(lq, genotype)
    loss = F.l1_loss(sr.float(), gt)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run(quick: bool) -> list[Row]:
    channels, cells, batch, lq_side, scale = 32, 4, 16, 32, 2
    torch.manual_seed(0)
    genotype = build_controller("random", 5).sample(torch.Generator().manual_seed(0)).genotype
    last = torch.channels_last  # the default layout of search and retrain
    nets = {"supernet": CellSRNet(scale, channels, cells).to(memory_format=last),
            "standalone": CellSRNet(scale, channels, cells, genotype=genotype
                                    ).to(memory_format=last),
            "supernet NCHW": CellSRNet(scale, channels, cells)}
    lq = torch.rand(batch, 3, lq_side, lq_side)
    lq_last = lq.contiguous(memory_format=last)
    gt = torch.rand(batch, 3, lq_side * scale, lq_side * scale)
    opts = {n: torch.optim.Adam(m.parameters(), 1e-4) for n, m in nets.items()}
    times = interleaved({
        "supernet": lambda: train_step(nets["supernet"], opts["supernet"], lq_last, gt, genotype),
        "standalone": lambda: train_step(nets["standalone"], opts["standalone"], lq_last, gt),
        "supernet NCHW": lambda: train_step(nets["supernet NCHW"], opts["supernet NCHW"], lq, gt,
                                            genotype),
        "supernet bf16": lambda: train_step(nets["supernet"], opts["supernet"], lq_last, gt,
                                            genotype, amp=True),
    }, repeats=5 if quick else 20)
    shape = f"C={channels} N={cells}, batch {batch} x {lq_side * scale}px HR"
    native = "native" if native_bf16(torch.device("cpu")) else "emulated"
    return [
        Row("supernet", "train step, supernet (fixed genotype)", times["supernet"] * 1e3, "ms",
            f"{shape}, channels_last"),
        Row("supernet", "train step, standalone", times["standalone"] * 1e3, "ms",
            f"{shape}, channels_last"),
        Row("supernet", "weight-sharing overhead", times["supernet"] / times["standalone"], "x",
            "goal <= 1.2"),
        Row("supernet", "train step, supernet, NCHW (before)", times["supernet NCHW"] * 1e3, "ms",
            shape),
        Row("supernet", "train step, supernet, bf16 autocast", times["supernet bf16"] * 1e3, "ms",
            f"{shape}, search.amp, bf16 {native}"),
        Row("supernet", "bf16 speed-up", times["supernet"] / times["supernet bf16"], "x",
            "search.amp on CPU"),
    ]
