"""3. Controller step: sample a child, score it on the fixed reward batch (inference
mode), update the policy; and the controller phase's share of a default search epoch."""

from __future__ import annotations

import torch

from bench.supernet import train_step
from bench.timing import Row, median_time
from controllers import build_controller
from nas_sr.search.supernet import score
from search_spaces.network import CellSRNet

BATCHES, STEPS, VAL_CROPS = 40, 40, 32  # the default preset's epoch


def run(quick: bool) -> list[Row]:
    torch.manual_seed(0)
    ctrl = build_controller("enas", 5)
    rng = torch.Generator().manual_seed(0)
    last = torch.channels_last  # the search's default layout
    net = CellSRNet(2, 32, 4).eval().to(memory_format=last)
    val_lq = torch.rand(VAL_CROPS, 3, 32, 32).contiguous(memory_format=last)
    val_gt = torch.rand(VAL_CROPS, 3, 64, 64)
    repeats = 10 if quick else 40
    sample = median_time(lambda: ctrl.sample(rng), repeats)
    s = ctrl.sample(rng)
    reward = median_time(lambda: score(net, s.genotype, (val_lq, val_gt), 2), repeats)
    update = median_time(lambda: ctrl.update([ctrl.sample(rng)], [30.0]), repeats) - sample

    genotype = s.genotype
    train_net = CellSRNet(2, 32, 4).to(memory_format=last)
    opt = torch.optim.Adam(train_net.parameters(), 1e-4)
    lq = torch.rand(16, 3, 32, 32).contiguous(memory_format=last)
    gt = torch.rand(16, 3, 64, 64)
    step = median_time(lambda: train_step(train_net, opt, lq, gt, genotype), 5 if quick else 10)
    controller_phase = STEPS * (sample + reward + update)
    share = controller_phase / (controller_phase + BATCHES * (sample + step))
    return [
        Row("controller", "sample a genotype (LSTM, 20 decisions)", sample * 1e3, "ms"),
        Row("controller", "score a child (reward)", reward * 1e3, "ms",
            f"{VAL_CROPS} crops of 64px HR, inference_mode"),
        Row("controller", "REINFORCE update", update * 1e3, "ms"),
        Row("controller", "controller share of a search epoch", 100 * share, "%",
            f"{BATCHES} train batches + {STEPS} controller steps"),
    ]
