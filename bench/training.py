"""8. Retraining speed on this CPU: one step of the shipped x2 cell as `nas-sr retrain`
runs it (batch 16 x 96px HR crops, channels_last, Adam), eager against `torch.compile`,
each in fp32 and under bf16 autocast (`train.amp`; native only on CPUs with AMX or
AVX512-BF16, emulated and slower elsewhere), and where a step's time goes: forward,
input-gradient and weight-gradient time of each conv kind the cell uses, on a 32-channel
48x48 LR batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.timing import Row, interleaved
from nas_sr.device import native_bf16
from search_spaces.genotypes import load_genotype
from search_spaces.network import CellSRNet

SHIPPED = (Path(__file__).resolve().parents[1] / "nas_sr" / "models" / "searched_x2"
           / "genotype.json")
BATCH, LQ_SIDE, SCALE, CHANNELS = 16, 48, 2, 32


def step_fn(compiled: bool, amp: bool = False) -> Callable[[], None]:
    """One training step of the shipped cell (random weights: speed does not depend on them)."""
    torch.manual_seed(0)
    last = torch.channels_last
    net = CellSRNet(SCALE, CHANNELS, 6, 5, load_genotype(SHIPPED)).to(memory_format=last)
    forward = torch.compile(net) if compiled else net
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    lq = torch.rand(BATCH, 3, LQ_SIDE, LQ_SIDE).contiguous(memory_format=last)
    gt = torch.rand(BATCH, 3, LQ_SIDE * SCALE, LQ_SIDE * SCALE)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            sr = forward(lq)
        loss = F.l1_loss(sr.float(), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def conv_parts(conv: nn.Conv2d, repeats: int) -> dict[str, float]:
    """Seconds of the forward, the input gradient and the weight (+bias) gradient alone."""
    last = torch.channels_last
    conv = conv.to(memory_format=last)
    x = torch.rand(BATCH, CHANNELS, LQ_SIDE, LQ_SIDE).contiguous(memory_format=last)
    grad = torch.rand_like(x)
    bias = None if conv.bias is None else [conv.out_channels]

    def backward(mask: list[bool]) -> Callable[[], object]:
        return lambda: torch.ops.aten.convolution_backward(
            grad, x, conv.weight, bias, conv.stride, conv.padding, conv.dilation, False,
            [0, 0], conv.groups, mask)
    with torch.no_grad():
        return interleaved({"forward": lambda: conv(x),
                            "input gradient": backward([True, False, False]),
                            "weight gradient": backward([False, True, bias is not None])},
                           repeats)


def run(quick: bool) -> list[Row]:
    repeats = 3 if quick else 10
    variants = {"eager": (False, False), "torch.compile": (True, False),  # (compiled, amp)
                "eager, bf16": (False, True), "torch.compile, bf16": (True, True)}
    steps = interleaved({name: step_fn(*v) for name, v in variants.items()}, repeats)
    shape = f"batch {BATCH} x {LQ_SIDE * SCALE}px HR, 1 step"
    rows = [Row("training", f"shipped x2 cell, {name}", t * 1e3, "ms", shape)
            for name, t in steps.items()]
    native = "native" if native_bf16(torch.device("cpu")) else "emulated"
    for name, how in (("torch.compile", "train.compile"), ("eager, bf16", f"train.amp, {native}"),
                      ("torch.compile, bf16", "train.compile + train.amp")):
        rows.append(Row("training", f"{name} speed-up", steps["eager"] / steps[name], "x",
                        f"{how} on CPU"))
    convs = {"conv_3x3": nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1),
             "dil_conv_3x3 (dilation 3)": nn.Conv2d(CHANNELS, CHANNELS, 3, padding=3, dilation=3),
             "sep_conv_3x3 depthwise": nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1,
                                                 groups=CHANNELS, bias=False),
             "sep_conv_3x3 pointwise": nn.Conv2d(CHANNELS, CHANNELS, 1)}
    for name, conv in convs.items():
        parts = conv_parts(conv, repeats * 2)
        rows += [Row("training", f"{name}: {part}", t * 1e3, "ms",
                     f"{BATCH}x{CHANNELS}x{LQ_SIDE}x{LQ_SIDE}, channels_last")
                 for part, t in parts.items()]
    return rows
