"""Model size the way SR papers report it: parameters and Mult-Adds for a 720p output.

Mult-Adds (multiply-accumulates) are counted as CARN and FALSR do: for a 1280x720
HR output, every convolution (and linear layer) adds ``out_elements * in_channels /
groups * kernel_h * kernel_w``; biases, activations, PixelShuffle and bicubic
upsampling are free. The count comes from torch's ``FlopCounterMode`` at the
ATen level (it reports 2 FLOPs per multiply-accumulate), not from module hooks:
the cell's output 1x1 conv is a functional ``F.conv2d`` that a hook would miss.
The model runs with its weights swapped for meta tensors, so counting allocates
nothing and takes milliseconds whatever the model. Pre-upsampling models (SRCNN,
VDSR) are fed the same LR input and count their convs at HR size on their own.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from nas_sr.archs.lighten import sparsity
from nas_sr.archs.luma import LumaSR
from search_spaces.cost import HR_SIZE, lq_size
from search_spaces.network import count_params


def mult_adds(model: nn.Module, scale: int, hr_size: tuple[int, int] = HR_SIZE) -> int:
    """Multiply-accumulates of convs and linears for one ``hr_size`` output (meta device);
    a Y-only model's are its network's on Y (the colour conversion is as free as bicubic)."""
    meta = {name: torch.empty_like(t, device="meta")
            for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}
    channels = 1 if isinstance(model, LumaSR) else 3
    x = torch.empty(1, channels, *lq_size(scale, hr_size), device="meta")
    with FlopCounterMode(display=False) as counter:
        functional_call(model, meta, (x,))
    return counter.get_total_flops() // 2


def complexity(model: nn.Module, scale: int) -> dict[str, int]:
    """Parameters (zeros included), nonzero parameters (fewer once pruned) and Mult-Adds
    (dense: a pruned weight is still multiplied)."""
    return {"params": count_params(model),
            "nonzero_params": int(sparsity(model)["nonzero_params"]),
            "mult_adds": mult_adds(model, scale)}


def human(n: int | None) -> str:
    """1_369_859 -> '1.37M'; None (no figure, e.g. bicubic) -> '-'."""
    if n is None:
        return "-"
    for suffix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{suffix}"
    return str(n)
