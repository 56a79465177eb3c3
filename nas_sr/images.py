"""Reading images as 8-bit RGB, and MATLAB-compatible bicubic downscaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from bicubic_pytorch import core as bicubic
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageError(ValueError):
    """An input image or folder that cannot be used; the message names it and the fix."""


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder; point the data path at a folder of HR images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ImageError(
            f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); "
            "point the data path at a folder of HR images"
        )
    return files


def load_image(path: str | Path) -> np.ndarray:
    """Any PNG/JPEG/BMP/TIFF as an (H, W, 3) uint8 array.

    Grayscale is repeated to 3 channels, alpha is dropped, palettes expanded,
    16-bit samples scaled to 8 bits and EXIF orientation applied (a phone photo comes
    out as it is shown), so every later stage sees one format.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":
                img = img.convert("RGBA")
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grayscale
                arr = np.asarray(img, dtype=np.float64) / 257.0
                img = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
            elif img.mode == "F":
                raise ImageError(f"{path}: floating-point images are not supported; save as PNG")
            arr = np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {e} Split it into parts first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(
            f"{path}: cannot be read as an image ({e}); remove or replace the file"
        ) from None
    return arr


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop so both sides divide by ``scale`` (the benchmark convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` (antialiased), rounded to uint8.

    Implemented by ``bicubic-pytorch``, which matches the MATLAB-made LR images of
    Set5/Set14 to 55.9 dB mean PSNR after 8-bit rounding (see tests).
    """
    x = torch.from_numpy(np.array(hr)).permute(2, 0, 1)[None].double()
    y = bicubic.imresize(x, scale=1 / scale)
    return y.round().clamp(0, 255).byte()[0].permute(1, 2, 0).contiguous().numpy()
