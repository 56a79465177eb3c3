"""Scoring a model on benchmark images as the field does: 8-bit outputs, shaved borders, Y."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from nas_sr.data.images import ImageError, to_tensor
from nas_sr.data.pairs import ImageSource, load_pair
from nas_sr.deploy.predictor import Predictor, super_resolve
from nas_sr.metrics import check_ssim_size, psnr_y, quantize, ssim_y
from nas_sr.progress import progress_bar


def restore(predictor: Predictor, source: ImageSource, device: torch.device | str = "cpu",
            **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """An image's 8-bit SR output and its HR image, (3, H, W) on 0..255 on the CPU, as every
    score takes them; ``options`` go to :func:`super_resolve` (tile, ensemble, amp)."""
    gt, lq = load_pair(source, predictor.scale)  # names the LR file if the sizes disagree
    sr = super_resolve(predictor, to_tensor(lq, device)[None], **options)
    return quantize(sr[0]).cpu(), torch.from_numpy(gt).permute(2, 0, 1)


def evaluate_image(predictor: Predictor, source: ImageSource, cfg: DictConfig,
                   device: torch.device, amp: bool = False) -> dict[str, Any]:
    sr, gt_t = restore(predictor, source, device, tile=cfg.tile, overlap=cfg.overlap,
                       ensemble=cfg.self_ensemble, amp=amp)
    shave = predictor.scale
    return {"image": source.gt.stem, "psnr": float(psnr_y(sr, gt_t, shave)),
            "ssim": ssim_y(sr, gt_t, shave)}


def check_images(sources: list[ImageSource], scale: int, progress: bool = True) -> None:
    """Read every pair once before any is scored: a damaged, mismatched or too-small image
    in the last set fails the job in seconds, not after the first sets' inference."""
    for source in progress_bar(sources, desc="checking images", unit="img", leave=False,
                               disable=not progress):
        gt, _ = load_pair(source, scale)
        try:
            check_ssim_size(*gt.shape[:2], shave=scale)
        except ValueError as e:
            raise ImageError(f"{source.gt}: {e}") from None
