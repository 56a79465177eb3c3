"""10. Real-time upscaling: how fast the shipped real-time model runs beside the hand-sized
anchors and the quality model, and whether `nas-sr upscale` keeps up with a playing video.

- The model call alone on a 640x360 and a 960x540 LR frame at 1 and 2 threads: ONNX
  Runtime fp32 for every network; for the shipped ones also ONNX Runtime int8 (static
  post-training quantization made here, as `nas-sr export format=int8` makes it, its loss
  on the check photograph in the note) and eager torch in bf16 (the served form). The
  anchors (FSRCNN 56-12-4, ESPCN 64-32, on RGB and on Y) are timed with fresh weights:
  their speed does not depend on what they learnt; their PSNR, trained here, is in
  docs/RESULTS.md.
- End to end: `upscale_video` of an H.264 clip (decode, super-resolve whole frames, encode
  H.264 CRF 18 at the x264 presets medium and veryfast, the three stages overlapped), with
  a one-thread model call per thread at once (the default) and, at 2 threads, one
  two-thread call at a time beside it. A Y-only model takes the decoded Y plane as it is,
  with no RGB on the way.
- The CPU a frame costs: the whole pipeline run one stage after another on one thread
  (process CPU time, the encoder's own threads included) against the model call alone,
  and the frames/s ceiling that total puts on this machine's cores however well the stages
  overlap: what a real-time model may cost for 24 frames/s.

`python -m bench --only realtime` prints it; 24 frames/s is the goal.
"""

from __future__ import annotations

import itertools
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.timing import Row
from bench.video import MODELS, make_clip
from nas_sr.archs.build import build_model
from nas_sr.archs.luma import colors
from nas_sr.data.video import Encoding
from nas_sr.deploy.form import for_inference
from nas_sr.deploy.media import MAX_WORKERS, Settings, upscale_video
from nas_sr.deploy.onnx_model import ONNX_FILE, OnnxModel, read_onnx
from nas_sr.deploy.predictor import load_predictor
from nas_sr.deploy.pt2 import load_exported
from nas_sr.deploy.quantize import int8_model
from nas_sr.search.latency import measure_latency, median_ms

REALTIME, QUALITY = MODELS / "realtime_x2", MODELS / "searched_x2"
FRAMES = ((360, 640), (540, 960))  # LR (height, width): to 720p and to 1080p at x2
THREADS = (1, 2)
ANCHORS = {"FSRCNN (56-12-4)": {"name": "fsrcnn", "scale": 2},
           "ESPCN (64-32)": {"name": "espcn", "scale": 2},
           "FSRCNN (56-12-4) on Y": {"name": "fsrcnn", "scale": 2, "colors": 1},
           "ESPCN (64-32) on Y": {"name": "espcn", "scale": 2, "colors": 1}}


def _networks() -> dict[str, tuple[torch.nn.Module, dict, Path | None]]:
    """name -> (model, arch spec, the folder it ships in)."""
    found = {}
    for folder in (REALTIME, QUALITY):
        if (folder / "model.pt2").is_file():
            model, arch = load_exported(folder / "model.pt2")
            found[folder.name] = (model, arch, folder)
    for name, arch in ANCHORS.items():
        found[name] = (build_model(arch).eval(), arch, None)
    return found


def _ms(session: Any, lr: tuple[int, int], repeats: int) -> float:
    lq = session.get_inputs()[0]  # (N, 1 or 3, h, w): a Y-only model takes Y
    feeds = {lq.name: np.random.default_rng(0).random((1, lq.shape[1], *lr), dtype=np.float32)}
    return median_ms((session, feeds), 2, repeats)


def _bf16_ms(model: torch.nn.Module, arch: dict, lr: tuple[int, int], threads: int,
             repeats: int) -> float:
    torch.set_num_threads(threads)
    served, x = for_inference(model, arch).eval(), torch.rand(1, colors(arch), *lr)
    times = []
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            served(x)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    torch.set_num_threads(1)
    return 1000 * float(np.median(times))


def run(quick: bool) -> list[Row]:
    repeats, frames = (3, 6) if quick else (10, 24)
    rows = []
    for name, (model, arch, folder) in _networks().items():
        int8 = int8_model((folder / "model.onnx").read_bytes(), arch) if folder else None
        for lr in FRAMES[:1] if quick else FRAMES:
            for t in THREADS:
                what = f"{lr[1]}x{lr[0]} -> {2 * lr[1]}x{2 * lr[0]}, {t} thread(s)"
                ms = measure_latency(model, lr, t, arch, warmup=2, repeats=repeats)
                rows.append(Row("realtime", f"{name}, ONNX Runtime fp32, the model call",
                                1000 / ms, "frames/s", f"{what}; {ms:.1f} ms"))
                if int8 is None:
                    continue
                ms = _ms(OnnxModel(int8[0], t).session, lr, repeats)
                rows.append(Row("realtime", f"{name}, ONNX Runtime int8, the model call",
                                1000 / ms, "frames/s", f"{what}; {ms:.1f} ms; "
                                f"{int8[1]['psnr_loss']:+.2f} dB lost on the check photo"))
                ms = _bf16_ms(model, arch, lr, t, repeats)
                rows.append(Row("realtime", f"{name}, eager torch bf16, the model call",
                                1000 / ms, "frames/s", f"{what}; {ms:.1f} ms"))
    if (REALTIME / "model.pt2").is_file():
        rows += end_to_end(REALTIME, frames, FRAMES[:1] if quick else FRAMES)
        rows += cpu_per_frame(REALTIME, frames, ("veryfast",) if quick else PRESETS)
    return rows


PRESETS = ("veryfast", "ultrafast")


def _cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return used.ru_utime + used.ru_stime


def cpu_per_frame(folder: Path, frames: int, presets: tuple[str, ...] = PRESETS,
                  lr: tuple[int, int] = FRAMES[0]) -> list[Row]:
    """CPU ms a frame of `upscale_video` costs with the model in ``folder`` (one torch and
    ONNX Runtime thread, stages one after another), the model call's share, and the
    frames/s that total allows on this machine's cores."""
    torch.set_num_threads(1)
    predictor = load_predictor(str(folder / "model.pt2"), runtime="auto")
    call = _ms(OnnxModel(read_onnx(folder / ONNX_FILE)[0], 1).session, lr, 5)  # as served
    cores, what = os.cpu_count() or 1, f"{lr[1]}x{lr[0]} -> {2 * lr[1]}x{2 * lr[0]}"
    rows = [Row("realtime", f"{folder.name}, CPU a frame: the model call", call, "ms",
                f"{what}, 1 thread")]
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", frames, size=(lr[1], lr[0]))
        for preset in presets:
            settings = Settings(tile=None, encoding=Encoding(preset=preset, overlap=False))
            upscale_video(predictor, clip, Path(tmp) / "sr.mp4", settings)  # warm
            t0 = _cpu_seconds()
            upscale_video(predictor, clip, Path(tmp) / "sr.mp4", settings)
            ms = 1000 * (_cpu_seconds() - t0) / frames
            rows += [Row("realtime", f"{folder.name}, CPU a frame: decode, model, encode "
                         f"(x264 {preset})", ms, "ms", f"{what}; the rest of the model "
                         f"call {ms - call:.1f} ms"),
                     Row("realtime", f"{folder.name}, the ceiling that CPU allows, x264 "
                         f"{preset}", cores * 1000 / ms, "frames/s",
                         f"{cores} cores, the stages overlapped perfectly")]
    return rows


def end_to_end(folder: Path, frames: int, sizes: tuple[tuple[int, int], ...] = FRAMES,
               presets: tuple[str, ...] = ("medium", "veryfast")) -> list[Row]:
    """Frames/s of `upscale_video` with the model in ``folder`` (runtime auto, whole
    frames) on an H.264 clip of each LR size, at 1 and 2 threads and each x264 preset."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in sizes:
            clip = make_clip(Path(tmp) / f"clip{lr[0]}.mp4", frames, size=(lr[1], lr[0]))
            for t in THREADS:
                torch.set_num_threads(t)  # ONNX Runtime's session takes torch's count
                predictor = load_predictor(str(folder / "model.pt2"), runtime="auto")
                # the default (a one-thread call per thread) and, beside it, one call at a time
                for preset, workers in itertools.product(presets, (None, 1) if t > 1 else (1,)):
                    settings = Settings(tile=None, encoding=Encoding(preset=preset,
                                                                     workers=workers))
                    t0 = time.perf_counter()
                    upscale_video(predictor, clip, Path(tmp) / "sr.mp4", settings)
                    calls = "one call at a time" if workers or not predictor.session else \
                        f"{min(t, MAX_WORKERS)} calls at once"
                    rows.append(Row("realtime", f"{folder.name} end to end, x264 {preset}",
                                    frames / (time.perf_counter() - t0), "frames/s",
                                    f"{frames} frames {lr[1]}x{lr[0]} -> {2 * lr[1]}x"
                                    f"{2 * lr[0]}, {t} thread(s), {calls}, whole frames"
                                    + (", on the Y plane" if predictor.luma else "")))
    torch.set_num_threads(1)
    return rows
