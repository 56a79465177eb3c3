"""The upscale job: super-resolve images of any size (tiled) and videos (frame by frame)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas_sr.checkpoint import check_writable
from nas_sr.data.images import PIL_EXTENSIONS, ImageError, list_images
from nas_sr.data.video import VIDEO_EXTENSIONS, VideoError
from nas_sr.deploy.media import Settings, is_video, upscale_image, upscale_video
from nas_sr.deploy.predictor import Predictor, load_predictor
from nas_sr.device import set_threads
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar


def upscale_file(predictor: Predictor, src: Path, dest: Path, settings: Settings,
                 show_progress: bool = False) -> None:
    """An image or a video of the upscale job; a video shows a bar of its frames. What an
    image lost on its way to 8-bit RGB (alpha, 16-bit samples) is printed."""
    if not is_video(src):
        for note in upscale_image(predictor, src, dest, settings):
            print(f"{src}: {note}")
        return
    with progress_bar(desc=src.name, unit="frame", disable=not show_progress) as bar:
        def frames(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        upscale_video(predictor, src, dest, settings, frames)


def input_files(path: Path) -> tuple[Path, list[Path]]:
    """(root the output names are relative to, inputs): one file, or a folder's media."""
    if path.is_file():
        return path.parent, [path]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; input= takes an image, "
                                "a video or a folder of them")
    others: list[Path] = []
    files = list_images(path, PIL_EXTENSIONS + VIDEO_EXTENSIONS, others)
    if others:  # said, so a file that was meant to be upscaled is not missed unseen
        print(f"{path}: skipped {len(others)} file(s) that are neither an image nor a video "
              f"(e.g. {', '.join(str(p.relative_to(path)) for p in sorted(others)[:3])}); "
              f"upscale takes {' '.join(PIL_EXTENSIONS + VIDEO_EXTENSIONS)}")
    return path, files


def one_output(files: list[Path], output: Path, settings: Settings) -> Path | None:
    """``output`` as the output file itself: one input, and ``output`` named with the suffix
    that input's output takes (``.png`` for an image, the container's for a video)."""
    if len(files) != 1 or output.is_dir() or not output.suffix:
        return None
    wanted = Path(settings.output_name(files[0])).suffix
    if output.suffix.lower() != wanted:
        raise ConfigError(f"output={output}: {files[0].name} is written as a {wanted} file; "
                          f"name the output ...{wanted}, or give a folder")
    return output


def output_paths(root: Path, files: list[Path], out_dir: Path, settings: Settings,
                 overwrite: bool = False, named: Path | None = None) -> list[Path]:
    """One output per input under ``out_dir`` (or the one ``named``); checked before any
    work, so no input is lost, and no file already there unless ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output={out_dir} is a file; output= takes a folder (made if "
                          "missing) for the upscaled files")
    check_writable(out_dir)  # before the model is read
    dests = [named] if named else [out_dir / f.relative_to(root).with_name(
        settings.output_name(f)) for f in files]
    inputs = {f.resolve() for f in files}
    seen: dict[Path, Path] = {}
    for src, dest in zip(files, dests, strict=True):
        if dest.resolve() in inputs:
            raise ConfigError(f"output={out_dir} would overwrite the input {dest}; "
                              f"pick another output folder")
        if dest in seen:
            raise ConfigError(f"{seen[dest]} and {src} would both be written to {dest}; "
                              f"rename one or upscale them separately")
        seen[dest] = src
    if not overwrite and (there := [d for d in dests if d.exists()]):
        raise ConfigError(f"output={out_dir} already holds {len(there)} of the {len(dests)} "
                          f"output file(s), e.g. {there[0]}; pass overwrite=true to replace "
                          f"them, or pick another output folder")
    return dests


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    if not cfg.model or not cfg.input:
        raise FileNotFoundError("model= and input= are required: model= a retrain checkpoint, "
                                "an exported model.pt2 or bicubic (with scale=); input= an "
                                "image, a video or a folder of them")
    settings = Settings.from_cfg(cfg)
    root, files = input_files(Path(cfg.input).expanduser())
    out_dir = Path(cfg.output).expanduser() if cfg.output else run_dir / "images"
    named = one_output(files, out_dir, settings)  # output=photo_x2.png: that file
    dests = output_paths(root, files, named.parent if named else out_dir, settings,
                         cfg.overwrite, named)
    predictor = load_predictor(str(cfg.model), cfg.scale, settings.device, cfg.channels_last,
                               settings.runtime)
    written, failed = [], []
    for path, dest in progress_bar(list(zip(files, dests, strict=True)),
                                   desc=f"upscaling x{predictor.scale}", unit="file",
                                   disable=not cfg.logger.progress or len(files) == 1):
        try:
            upscale_file(predictor, path, dest, settings, cfg.logger.progress)
        except (ImageError, VideoError) as e:  # one bad file does not cost the rest
            failed.append(str(e))
            continue
        written.append(str(dest))
    print(f"wrote {len(written)} file(s) x{predictor.scale} to {out_dir} "
          f"(runtime: {predictor.runtime})")
    if failed:
        raise ImageError(f"{len(failed)} of {len(files)} file(s) failed (the others are "
                         f"written):\n  " + "\n  ".join(failed))
    return {"outputs": written, "scale": predictor.scale}
