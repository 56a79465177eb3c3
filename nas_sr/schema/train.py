"""A standalone training's options (retrain, compress's fine-tuning, rank's retrains)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas_sr.schema.common import colors_opt
from nas_sr.schema.fields import opt, section
from search_spaces.network import UPSAMPLERS, form_of


def retrain_width(cfg: DictConfig) -> tuple[int, int]:
    """(channels, cells) of the network a retrain of ``cfg`` builds: train.cell's, else
    archs.cell's. The width a search prices its budget at and its proxy trains."""
    budget = OmegaConf.select(cfg, "search.budget", default=None)
    cell = cfg.archs.cell
    if budget is not None and "channels" in budget:  # a search saved with its own width
        return budget.channels or cell.channels, budget.cells or cell.cells
    own = OmegaConf.select(cfg, "train.cell", default=None) or {}
    return own.get("channels") or cell.channels, own.get("cells") or cell.cells


def retrain_form(cfg: DictConfig) -> dict[str, Any]:
    """How the retrained cell network meets the image: ``colors`` (1: on Y) and its
    ``upsampler``, as ``CellSRNet`` and the cost functions take them."""
    own = OmegaConf.select(cfg, "train.cell", default=None) or {}
    return form_of(own)


@dataclass
class TrainCell:
    """The retrained cell network's size; null = archs.cell's (the search's supernet size)."""

    channels: int | None = opt(None, "C of the retrained network; null = archs.cell's", low=1)
    cells: int | None = opt(None, "N of the retrained network; null = archs.cell's", low=1)
    recursions: int | None = opt(None, "passes of each cell with the same weights (1 = none): "
                                 "depth at no cost in weights; with init_from= the later "
                                 "passes start gated off", low=1)
    colors: int | None = colors_opt("fewer convs, and a video's luma plane goes in as "
                                    "decoded")
    upsampler: str | None = opt(None, "the sub-pixel conv before PixelShuffle: conv3 (ESPCN's "
                                "3x3) or conv1 (1x1, a ninth of its cost); null = conv3",
                                choices=tuple(UPSAMPLERS))


@dataclass
class Train:
    epochs: int = opt(10, "epochs of iters_per_epoch steps", low=0, whole=True)
    iters_per_epoch: int = opt(100, "steps per epoch (a validation after each)", low=1,
                               whole=True)
    batch_size: int = opt(16, "global batch: split evenly over torchrun processes", low=1,
                          whole=True)
    patch_size: Any = opt("${data.patch_size}", "HR crop side (LR side = patch_size // "
                          "scale)")
    lr: float = opt(1.0e-3, "Adam's learning rate", above=0)
    loss: str = opt("l1", "l1 (EDSR's) | mse (PSNR's own; a last low-lr stage on it gains "
                    "what L1 leaves); changeable on resume=")
    luma: float = opt(0.0, "share of the loss taken on the Y channel the benchmarks score; "
                      "1 leaves chroma untrained")
    schedule: str = opt("cosine", "cosine (down to lr_min) | step (x gamma every "
                        "step_epochs)")
    lr_min: float = opt(1.0e-5, "the cosine's end", low=0)
    warmup_steps: int = opt(0, "the learning rate climbs linearly from 0 over the first "
                            "steps (a fine-tune's fresh Adam)", low=0, whole=True)
    step_epochs: int = opt(20, "schedule=step: epochs between decays", low=1, whole=True)
    gamma: float = opt(0.5, "schedule=step: the decay factor", above=0)
    grad_clip: float | None = opt(None, "max gradient norm; null = no clipping", above=0)
    adjustable_clip: bool = opt(False, "VDSR's: clip each gradient component to grad_clip / "
                                "current lr")
    amp: Any = opt(False, "bf16 autocast of the forward pass (weights, loss and validation "
                   "stay fp32): true | false | auto (where the device has bf16 in hardware)")
    ema: float = opt(0, "decay of a moving average of the weights (0.999: about the last "
                     "1,000 steps), validated and shipped instead; 0 = off")
    compile: bool = opt(False, "torch.compile the model (1.12-1.16x a CPU step; minutes to "
                        "compile)")
    minutes: float | None = opt(None, "a budget of training time instead of epochs (equal-"
                                "time comparisons); null = train.epochs", above=0)
    clock: str = opt("wall", "what minutes count: wall, or cpu (this process's CPU time)")
    reward_images: bool = opt(False, "also train on the search's reward images (the model is "
                              "scored on the hold-out half and the benchmarks alone)")
    teacher: str | None = opt(None, "a model whose x8 self-ensemble output takes a share "
                              "teacher_weight of the target (distillation)")
    teacher_weight: float = opt(0.5, "the target: (1 - w) * ground truth + w * teacher "
                                "output")
    val_crops: int | None = opt(64, "fixed crops of the validation images; null = the whole "
                                "images", low=1)
    cell: TrainCell = section(TrainCell, "the retrained cell network's size")
