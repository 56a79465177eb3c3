"""The field's SR metrics: PSNR and SSIM on the Y channel of YCbCr (ITU-R BT.601).

Both take images on the 0..255 scale, shave ``shave`` pixels from every border,
and expect outputs already rounded to 8 bits (``quantize``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

# BT.601 as MATLAB's rgb2ycbcr, on 0..255 (nas_sr.archs.luma converts with them too)
Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW = 11  # the Gaussian window's side at sigma 1.5 (scikit-image truncates at 3.5)
CBCR_WEIGHTS = ((-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))


def quantize(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> 0..255 float, rounded as an 8-bit image would be (in place after
    clamp's copy: every video frame passes here)."""
    return img.clamp(0, 1).mul_(255).round_()


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB on 0..255 -> (..., H, W) Y on 16..235."""
    w = img.new_tensor(Y_WEIGHTS).view(3, 1, 1)
    return 16.0 + (img * w).sum(-3) / 255.0


def rgb_to_cbcr(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB on 0..255 -> (..., 2, H, W) Cb, Cr on 16..240."""
    w = img.new_tensor(CBCR_WEIGHTS)
    return 128.0 + torch.einsum("...chw,kc->...khw", img, w) / 255.0


def _shave(y: torch.Tensor, shave: int) -> torch.Tensor:
    return y[..., shave:-shave, shave:-shave] if shave else y


def _check_shapes(sr: torch.Tensor, gt: torch.Tensor) -> None:
    # broadcasting would silently compare one image with a batch, or fail deep in torch
    if sr.shape != gt.shape:
        raise ValueError(f"SR and HR shapes differ: {tuple(sr.shape)} vs {tuple(gt.shape)}; "
                         "metrics compare images of one size")


def psnr_y(sr: torch.Tensor, gt: torch.Tensor, shave: int) -> torch.Tensor:
    """Per-image PSNR (dB) on Y for (N, 3, H, W) or (3, H, W) tensors on 0..255."""
    _check_shapes(sr, gt)
    sr_y, gt_y = (_shave(rgb_to_y(t.double()), shave) for t in (sr, gt))
    return _psnr(sr_y, gt_y, dims=(-2, -1))


def psnr_cbcr(sr: torch.Tensor, gt: torch.Tensor, shave: int) -> torch.Tensor:
    """Per-image PSNR (dB) on the two chroma planes together: what a Y score does not see."""
    _check_shapes(sr, gt)
    sr_c, gt_c = (_shave(rgb_to_cbcr(t.double()), shave) for t in (sr, gt))
    return _psnr(sr_c, gt_c, dims=(-3, -2, -1))


def _psnr(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    mse = (a - b).pow(2).mean(dim=dims)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def check_ssim_size(h: int, w: int, shave: int) -> None:
    """ValueError unless an ``h`` x ``w`` image holds SSIM's window once shaved."""
    if min(h, w) - 2 * shave < SSIM_WINDOW:
        raise ValueError(f"{w}x{h} is too small to score: SSIM needs {SSIM_WINDOW}x"
                         f"{SSIM_WINDOW} pixels once the {shave}-pixel border is shaved")


def ssim_y(sr: torch.Tensor, gt: torch.Tensor, shave: int) -> float:
    """SSIM on Y as MATLAB's ``ssim`` computes it: 11x11 Gaussian window, sigma 1.5."""
    _check_shapes(sr, gt)
    check_ssim_size(*gt.shape[-2:], shave)
    from skimage.metrics import structural_similarity  # noqa: PLC0415  (SciPy: 0.2 s a start)

    sr_y, gt_y = (_shave(rgb_to_y(t.double()), shave).cpu().numpy() for t in (sr, gt))
    return float(structural_similarity(
        sr_y, gt_y, data_range=255.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    ))


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


# LQ inputs and their GT targets: (N, 3, h, w) and (N, 3, h * scale, w * scale) in [0, 1]
Pairs = tuple[torch.Tensor, torch.Tensor]


@torch.inference_mode()
def crop_psnrs(model: Callable[[torch.Tensor], torch.Tensor], pairs: Pairs, scale: int,
               batch_size: int) -> torch.Tensor:
    """Y-PSNR of ``model`` on each pair, as the field measures it: outputs rounded to 8 bits,
    ``scale`` pixels shaved from every border. ``batch_size`` pairs go through at once."""
    lq, gt = pairs
    return torch.cat([psnr_y(quantize(model(lq[i:i + batch_size])),
                             quantize(gt[i:i + batch_size]), shave=scale)
                      for i in range(0, len(lq), batch_size)])
