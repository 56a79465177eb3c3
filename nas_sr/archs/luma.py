"""Y-only networks: the network sees the Y of YCbCr, chroma is upscaled bicubic.

FSRCNN, ESPCN and VDSR were built so, since the eye (and the benchmarks' PSNR) weighs
luma. A Y-only model file (model.pt2, model.onnx) holds the network on Y alone, one
channel in and out, so a video's decoded luma plane goes in with no conversion to RGB
and back; :class:`LumaSR` gives it the RGB interface of every other model for photos,
benchmarks and training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas_sr.metrics import CBCR_WEIGHTS, Y_WEIGHTS

Model = Callable[[torch.Tensor], torch.Tensor]  # an LR batch to its SR batch

# ITU-R BT.601 on [0, 1] (MATLAB's rgb2ycbcr, as the metrics): ycc = OFFSET + M @ rgb
_M = torch.tensor((Y_WEIGHTS, *CBCR_WEIGHTS), dtype=torch.float64) / 255
_OFFSET = torch.tensor((16.0, 128.0, 128.0), dtype=torch.float64) / 255
_M_INV = torch.linalg.inv(_M)


def colors(arch: dict[str, Any] | None) -> int:
    """The channels a model file of ``arch`` takes and gives: 1 (Y) or 3 (RGB)."""
    return int((arch or {}).get("colors", 3))


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nchw,kc->nkhw", x, matrix.to(x))


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> YCbCr in [0, 1] (Y on 16/255..235/255)."""
    return _mix(x, _M) + _OFFSET.to(x).view(1, 3, 1, 1)


def rgb_to_luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W), the Y of :func:`rgb_to_ycbcr` alone."""
    return _mix(x, _M[:1]) + _OFFSET[0].item()


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return _mix(x - _OFFSET.to(x).view(1, 3, 1, 1), _M_INV)


class LumaSR(nn.Module):
    """RGB (N, 3, h, w) -> RGB (N, 3, h*s, w*s) through ``net``, a network on Y: the
    input's Y goes through ``net``, its Cb and Cr are upscaled bicubic. A one-channel
    input is taken for Y and goes through ``net`` alone.

    ``net`` is a module (trained, saved with the model under ``net.``) or any callable on
    Y, such as an ONNX Runtime session of the exported network.
    """

    def __init__(self, net: nn.Module | Model):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        if x.shape[1] == 1:
            return self.net(x, *args)
        ycc = rgb_to_ycbcr(x)
        y = self.net(ycc[:, :1].contiguous(), *args)
        cbcr = F.interpolate(ycc[:, 1:], size=y.shape[-2:], mode="bicubic",
                             align_corners=False)
        return ycbcr_to_rgb(torch.cat([y, cbcr.to(y.dtype)], 1))


def as_rgb(fn: Model, arch: dict[str, Any] | None) -> Model:
    """``fn`` (a model file's session or program) with the RGB interface: wrapped in
    :class:`LumaSR` where ``arch`` is Y-only, else itself."""
    return LumaSR(fn) if colors(arch) == 1 else fn
