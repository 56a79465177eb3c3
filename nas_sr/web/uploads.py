"""What an uploaded file is, and whether the server takes it: each refusal says why.

The file's content decides (never its name): Pillow first, then PyAV for the video
containers the toolkit writes. Limits are checked from the headers before any decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from nas_sr.data.images import PIL_FORMATS, DamagedImage, ImageError, load_image, reductions
from nas_sr.data.video import NotAVideo, VideoError, probe

# canonical extensions of the stored input, by what the content turned out to be
IMAGE_SUFFIX = {"JPEG": ".jpg", "TIFF": ".tif", "MPO": ".jpg"}
VIDEO_SUFFIX = {"mov": ".mp4", "matroska": ".mkv", "avi": ".avi"}  # probe takes no other


class UploadError(ValueError):
    """An upload the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    upload_bytes: int = 500 * 2**20
    pixels: int = 3840 * 2160  # per image or video frame
    frames: int = 9000
    queued: int = 20  # jobs waiting to start; more are turned away until one starts
    stored_bytes: int = 20 * 2**30  # uploads and results kept; more are turned away

    def describe(self) -> str:
        size = f"{self.upload_bytes / 2**20:g} MB" if self.upload_bytes >= 2**20 else \
            f"{self.upload_bytes / 2**10:g} KB"
        return (f"files up to {size}, images and video frames up to {megapixels(self.pixels)}, "
                f"videos up to {self.frames} frames")


def megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels" if n >= 10**5 else f"{n:,} pixels"


@dataclass(frozen=True)
class Media:
    kind: str                 # "image" or "video"
    suffix: str               # extension to store it under
    size: tuple[int, int]     # width, height (as shown: EXIF orientation applied)
    frames: int | None = None
    notes: list[str] = field(default_factory=list)


def inspect(path: Path, name: str, limits: Limits) -> Media:
    """``path`` (uploaded as ``name``) as an image or a video within ``limits``."""
    try:
        with Image.open(path, formats=PIL_FORMATS) as img:
            fmt, size = img.format, img.size
    except Image.DecompressionBombError:
        raise UploadError(f"{name}: too many pixels for this server "
                          f"({limits.describe()})", 413) from None
    except (UnidentifiedImageError, OSError):
        return _inspect_video(path, name, limits)
    _check_pixels(name, size, limits)
    try:
        rgb = load_image(path)  # decodes every pixel: a truncated file fails here
        notes = reductions(path)
    except ImageError as e:  # its message names the server's path: name the upload instead
        reason = str(e).replace(str(path), name)
        raise UploadError(f"a damaged {fmt} image: {reason}" if isinstance(e, DamagedImage)
                          else reason) from None
    return Media("image", IMAGE_SUFFIX.get(fmt, f".{fmt.lower()}"), rgb.shape[1::-1],
                 notes=notes)


def _inspect_video(path: Path, name: str, limits: Limits) -> Media:
    try:
        info = probe(path)
    except NotAVideo:
        raise UploadError(f"{name}: neither an image (PNG, JPEG, BMP, TIFF, WebP) nor a "
                          f"video (MP4, MOV, MKV, AVI, WebM) that can be read", 415) from None
    except VideoError as e:
        raise UploadError(str(e).replace(str(path), name)) from None
    _check_pixels(name, (info.width, info.height), limits)
    if info.frames > limits.frames:
        raise UploadError(f"{name}: {info.frames} frames is more than this server takes "
                          f"({limits.describe()}); cut it shorter", 413)
    notes = [] if info.audio else ["no audio stream"]
    suffix = next(v for k, v in VIDEO_SUFFIX.items() if k in info.container.split(","))
    return Media("video", suffix, (info.width, info.height), info.frames, notes)


def _check_pixels(name: str, size: tuple[int, int], limits: Limits) -> None:
    w, h = size
    if w * h > limits.pixels:
        raise UploadError(f"{name}: {w}x{h} is {megapixels(w * h)}, more than this "
                          f"server takes ({limits.describe()}); downscale or crop it first", 413)

