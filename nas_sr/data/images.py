"""Reading images as 8-bit RGB, the tensors of them, and MATLAB-compatible bicubic
downscaling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from bicubic_pytorch import core as bicubic
from PIL import Image, ImageOps, UnidentifiedImageError

from nas_sr.metrics import quantize
from nas_sr.runs.folder import LOCK as RUN_FOLDER_MARKER

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# the formats Pillow may decode, whatever a file's name: raster ones only (it would hand an
# EPS to Ghostscript, which runs the PostScript in it)
PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM")  # JPEG covers MPO


def _pil_extensions() -> tuple[str, ...]:
    Image.init()  # registers every plugin's extensions
    return tuple(sorted(e for e, f in Image.registered_extensions().items() if f in PIL_FORMATS))


# every extension of those formats: what upscale takes from a folder, as the page takes them
PIL_EXTENSIONS = _pil_extensions()


class ImageError(ValueError):
    """An input image or folder that cannot be used; the message names it and the fix."""


class DamagedImage(ImageError):
    """A file Pillow cannot decode: truncated, corrupt, or not an image at all."""


def list_images(folder: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
                others: list[Path] | None = None) -> list[Path]:
    """The files under ``folder`` with one of ``extensions``, recursively, through
    symlinked sub-folders too, sorted; ``others`` (when given) gets the files left out,
    hidden ones aside.

    nas-sr run folders inside it are skipped (their plots are not training data).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder; point the path at a folder of images")
    files, seen, runs = [], set(), []
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        inner_run = RUN_FOLDER_MARKER in names and Path(root) != folder
        if real in seen or inner_run:  # a symlink loop, or a run folder inside the data
            if inner_run and real not in seen:
                runs.append(root)
            dirs.clear()
            continue
        seen.add(real)
        files += [Path(root) / n for n in names if Path(n).suffix.lower() in extensions]
        if others is not None:
            others += [Path(root) / n for n in names
                       if Path(n).suffix.lower() not in extensions and not n.startswith(".")]
    if runs:
        print(f"{folder}: skipped {len(runs)} nas-sr run folder(s) inside it ({runs[0]}, ...); "
              "their images are plots, not data")
    files.sort()
    if not files:
        raise ImageError(
            f"{folder}: no images found (looked for {', '.join(extensions)}); "
            "point the path at a folder of images"
        )
    return files


def load_image(path: str | Path) -> np.ndarray:
    """Any PNG/JPEG/BMP/TIFF/WebP as an (H, W, 3) uint8 array.

    Grayscale is repeated to 3 channels, alpha is dropped, palettes expanded,
    16- and 32-bit integer samples scaled to 8 bits by their bit depth and EXIF
    orientation applied (a phone photo comes out as it is shown), so every later stage
    sees one format. An animation or multi-page file is refused, not cut to one frame.
    """
    path = Path(path)
    try:
        with Image.open(path, formats=PIL_FORMATS) as img:
            img.load()
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                raise ImageError(f"{path}: holds {frames} frames (an animation or a multi-page "
                                 "file); nas-sr takes single images: extract the frames first")
            peak = _integer_peak(img)  # from the TIFF tags, which exif_transpose drops
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":
                img = img.convert("RGBA")
            if img.mode.startswith("I"):  # 16- or 32-bit integer grayscale
                arr = np.asarray(img, dtype=np.float64) * (255.0 / peak)
                img = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
            elif img.mode == "F":
                raise ImageError(f"{path}: floating-point images are not supported; save as PNG")
            arr = np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {e} Split it into parts first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DamagedImage(
            f"{path}: cannot be read as an image ({e}); remove or replace the file"
        ) from None
    return arr


def reductions(path: str | Path) -> list[str]:
    """What :func:`load_image` leaves out of ``path`` beyond decoding, as notes for the user:
    an opaque alpha channel, samples deeper than 8 bits. A transparent pixel is refused, as
    dropping the alpha would show whatever colour hides under it."""
    with Image.open(path, formats=PIL_FORMATS) as img:
        mode, tile = img.mode, img.tile
        transparent = img.has_transparency_data and \
            np.asarray(img.convert("RGBA").getchannel("A")).min() < 255
    if transparent:
        raise ImageError(f"{path}: has transparent pixels; the models upscale RGB only. "
                         "Flatten it onto a background (or save it as JPEG) first")
    notes = []
    if mode.startswith("I") or any(";16" in str(t.args) for t in tile):
        notes.append("16-bit samples reduced to 8 bits: the models work on 8-bit RGB")
    if mode in ("RGBA", "LA", "PA"):
        notes.append("opaque alpha channel dropped")
    return notes


def _integer_peak(img: Image.Image) -> int:
    """The largest sample value of an integer image: its bit depth from a TIFF's tags
    (BitsPerSample, SampleFormat), else 16-bit, as PNG's integer modes are."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return 2**16 - 1
    bits = int(np.ravel(tags.get(258, 16))[0])
    signed = int(np.ravel(tags.get(339, 1))[0]) == 2
    return 2 ** (bits - signed) - 1


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop so both sides divide by ``scale`` (the benchmark convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def resize(img: np.ndarray, factor: float) -> np.ndarray:
    """MATLAB ``imresize(img, factor, 'bicubic')`` (antialiased when shrinking), rounded
    to uint8; the output side is ``ceil(side * factor)``, as MATLAB's."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].double()
    y = bicubic.imresize(x, scale=factor)
    return y.round().clamp(0, 255).byte()[0].permute(1, 2, 0).contiguous().numpy()


def downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(img, 1/scale, 'bicubic')``: the benchmarks' LR image.

    Implemented by ``bicubic-pytorch``, which matches the MATLAB-made LR images of
    Set5/Set14 to 55.9 dB mean PSNR after 8-bit rounding (see tests).
    """
    return resize(img, 1 / scale)


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [0, 1] on ``device`` (moved as bytes)."""
    return torch.from_numpy(np.ascontiguousarray(img)).to(device).movedim(-1, -3).float() / 255


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) float in [0, 1] -> (..., H, W, 3) uint8, rounded like any 8-bit output."""
    return quantize(img).byte().movedim(-3, -1).cpu().numpy()
