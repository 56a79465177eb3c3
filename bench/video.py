"""6. Video: frames/s of upscaling a 640x360 clip to 1280x720 (x2) with the shipped x2 model,
end to end as `nas-sr upscale` runs it (decode, super-resolve on `runtime=auto`, encode
H.264 CRF 18), with its three stages overlapped (the default) and one after another, for a
few tile/batch settings and on eager torch, beside the earlier, lighter `cell_x2`, the
decode+encode cost alone (nearest-neighbour x2) and the model call alone.

`python -m bench --only video` prints it; the clip pans across a real photograph.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from bench.timing import Row
from nas_sr.data.sources import builtin_dir
from nas_sr.data.video import Encoding, rewrite
from nas_sr.deploy.media import Settings, upscale_video
from nas_sr.deploy.predictor import Predictor, load_predictor, super_resolve

MODELS = Path(__file__).resolve().parents[1] / "nas_sr" / "models"
SHIPPED_X2, CELL_X2 = MODELS / "searched_x2" / "model.pt2", MODELS / "cell_x2" / "model.pt2"
SIZE = (640, 360)


def make_clip(path: Path, frames: int, fps: int = 24, size: tuple[int, int] = SIZE) -> Path:
    """A ``size`` (width, height) H.264 clip panning across scikit-image's astronaut
    photograph."""
    photo = Image.open(builtin_dir() / "astronaut.png").convert("RGB")
    wide = np.asarray(photo.resize((size[0] + 2 * frames, size[0] * photo.height // photo.width),
                                   Image.BICUBIC))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            crop = np.ascontiguousarray(wide[40:40 + size[1], 2 * i:2 * i + size[0]])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def run(quick: bool) -> list[Row]:
    frames = 4 if quick else 12
    what = f"{frames} frames 640x360 -> 1280x720, end to end"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", frames)
        t0 = time.perf_counter()
        rewrite(clip, Path(tmp) / "io.mp4", lambda f: f.repeat(2, 1).repeat(2, 2), 2)
        rows.append(Row("video", "decode + encode only (nearest x2, no model)",
                        frames / (time.perf_counter() - t0), "frames/s",
                        f"{frames} frames 640x360 -> 1280x720, libx264 CRF 18 medium"))
        # (model, runtime, tile, batch, overlap); the first is `nas-sr upscale`'s default
        cases = [(SHIPPED_X2, "auto", 256, 1, True), (SHIPPED_X2, "auto", 256, 1, False),
                 (SHIPPED_X2, "eager", 256, 1, True), (SHIPPED_X2, "auto", 256, 4, True),
                 (SHIPPED_X2, "auto", None, 1, True), (CELL_X2, "auto", 256, 1, True)]
        loaded: dict[tuple[Path, str], Predictor] = {}  # one load (and ONNX session) each
        for path, runtime, tile, batch, overlap in cases:
            if (path, runtime) not in loaded:
                loaded[path, runtime] = load_predictor(str(path), runtime=runtime)
                # first-call costs out of the way
                super_resolve(loaded[path, runtime], torch.rand(1, 3, 64, 64))
            predictor = loaded[path, runtime]
            settings = Settings(tile=tile, encoding=Encoding(batch=batch, overlap=overlap))
            t0 = time.perf_counter()
            upscale_video(predictor, clip, Path(tmp) / "sr.mp4", settings)
            fps = frames / (time.perf_counter() - t0)
            ran = {"onnx": "ONNX Runtime", "eager": "eager torch"}[predictor.runtime]
            default = " (the defaults)" if (path, runtime, tile, batch, overlap) == cases[0] \
                else ""
            how = "overlapped" if overlap else "one stage after another"
            rows.append(Row("video", f"{path.parent.name}, {ran}, tile={tile} batch={batch}, "
                            f"{how}{default}", fps, "frames/s", what))
        # the model call alone, the ceiling an overlapped pipeline approaches
        predictor = loaded[SHIPPED_X2, "auto"]
        lq = torch.rand(1, 3, SIZE[1], SIZE[0])
        t0 = time.perf_counter()
        for _ in range(frames):
            super_resolve(predictor, lq, tile=256, overlap=16)
        rows.append(Row("video", "searched_x2, ONNX Runtime, tile=256: the model call alone",
                        frames / (time.perf_counter() - t0), "frames/s",
                        f"{frames} frames 640x360 -> 1280x720, no decoding or encoding"))
    return rows
