"""The options every job shares: seed, device, model sizes, logging; and how upscale and
serve treat pixels (tiles, runtimes, video encoding)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas_sr.schema.fields import opt, section


def colors_opt(why: str) -> Any:
    """A model's ``colors`` field: 1 builds it on Y alone (nas_sr.archs.luma)."""
    return opt(None, f"1: the network on Y alone, chroma bicubic ({why}); null = RGB", low=1,
               high=3, whole=True)


@dataclass
class CellArch:
    channels: int = opt(32, "C, feature channels of every cell", low=1, whole=True)
    cells: int = opt(4, "N, cells stacked", low=1, whole=True)
    nodes: int = opt(5, "nodes per cell (the paper: 5)", low=1, whole=True)


@dataclass
class SrcnnArch:
    """SRCNN(9-5-5) has no size to set."""


@dataclass
class FsrcnnArch:
    d: int = opt(56, "FSRCNN's feature channels d", low=1, whole=True)
    s: int = opt(12, "FSRCNN's shrunk channels s", low=1, whole=True)
    m: int = opt(4, "FSRCNN's mapping layers m", low=1, whole=True)
    colors: int | None = colors_opt("the paper's way")


@dataclass
class EspcnArch:
    f1: int = opt(64, "ESPCN's first (5x5) layer's channels", low=1, whole=True)
    f2: int = opt(32, "ESPCN's second (3x3) layer's channels", low=1, whole=True)
    colors: int | None = colors_opt("the paper's way")


@dataclass
class VdsrArch:
    depth: int = opt(20, "conv layers", low=2, whole=True)
    channels: int = opt(64, "feature channels", low=1, whole=True)


@dataclass
class EdsrArch:
    blocks: int = opt(16, "residual blocks", low=1, whole=True)
    channels: int = opt(64, "feature channels", low=1, whole=True)
    res_scale: float = opt(1.0, "residual scaling (EDSR's large model: 0.1)", above=0)


@dataclass
class MsrnArch:
    blocks: int = opt(8, "multi-scale residual blocks", low=1, whole=True)
    channels: int = opt(64, "feature channels", low=1, whole=True)


@dataclass
class Archs:
    cell: CellArch = section(CellArch, "the cell network (search builds it as its supernet)")
    srcnn: SrcnnArch = section(SrcnnArch)
    fsrcnn: FsrcnnArch = section(FsrcnnArch, "Dong, Loy and Tang 2016's FSRCNN(56, 12, 4)")
    espcn: EspcnArch = section(EspcnArch, "Shi et al. 2016's ESPCN(64, 32), the real-time "
                               "anchor")
    vdsr: VdsrArch = section(VdsrArch)
    edsr_baseline: EdsrArch = section(EdsrArch)
    msrn: MsrnArch = section(MsrnArch, "Li et al. 2018's size (5.93M params at x2)")
    smsrn: MsrnArch = section(MsrnArch, "MSRN with separable convs (741K params at x2)")


@dataclass
class Wandb:
    enabled: bool = opt(False, "log metrics.jsonl to a wandb run as well")
    mode: str = opt("offline", "offline or disabled; `wandb sync RUN/wandb/offline-run-*` "
                    "uploads later")
    project: str = opt("nas-sr", "the wandb project")


@dataclass
class Logger:
    progress: bool = opt(True, "tqdm bars; redrawn every 30 s instead of 10 a second into a "
                         "log file")
    plots: bool = opt(True, "search: PNG plots at the end (`nas-sr plot RUN_DIR` makes them "
                      "later)")
    tensorboard: bool = opt(False, "every number of metrics.jsonl also as a scalar in "
                            "RUN_DIR/tensorboard; needs pip install nas-sr[tensorboard]")
    wandb: Wandb = section(Wandb)


@dataclass
class Common:
    seed: int = opt(0, "fixes data order, sampled cells and initial weights", low=0,
                    whole=True)
    device: str = opt("auto", "auto = cuda if available, else cpu; or cpu, cuda, cuda:K")
    threads: int | None = opt(None, "torch CPU threads; null = torch's default", low=1,
                              whole=True)
    channels_last: bool = opt(True, "NHWC tensors: 1.2-1.6x faster convs on the CPUs "
                              "measured (bench/)")
    resume: str | None = opt(None, "a run folder to continue (search, retrain)")
    archs: Archs = section(Archs, "every model's size, by name")
    logger: Logger = section(Logger)


@dataclass
class Video:
    container: str = opt("mp4", "output extension: mp4, mov, mkv, avi, or webm (with "
                         "codec=libvpx-vp9)")
    codec: str = opt("libx264", "any FFmpeg encoder in PyAV's wheel: libx264, libx265, "
                     "libvpx-vp9, mpeg4")
    crf: int | None = opt(18, "constant quality: lower = better and bigger (x264: 0-51); "
                          "null = the encoder's default", low=0, whole=True)
    preset: str | None = opt("medium", "x264/x265 speed preset: ultrafast ... veryslow")
    pix_fmt: str = opt("yuv420p", "4:2:0, what every player decodes (odd output sides lose "
                       "one pixel)")
    batch: int = opt(1, "frames per model call; more gained nothing on this CPU "
                     "(bench/video.py)", low=1, whole=True)
    overlap: bool = opt(True, "decode, upscale and encode on three threads at once (false: "
                        "one after another)")
    workers: int | None = opt(None, "frames in the model at once (overlapped), each ONNX "
                              "Runtime call on a session of threads/workers threads (eager "
                              "torch shares torch's); null = one a thread, at most 4, where "
                              "ONNX Runtime runs on the CPU, else 1", low=1, whole=True)
    options: dict[str, Any] = opt({}, "more encoder options, one + override each: "
                                  "+video.options.tune=film")


# runtime=, amp= and self_ensemble= of the jobs that run a model (evaluate too)
RUNTIME_HELP = ("auto: ONNX Runtime where model.onnx beside the model passed its export check "
                "(nas-sr export), or model.int8.onnx where its check lost <= 0.05 dB, else "
                "torch; eager: torch; onnx: ONNX Runtime; int8: model.int8.onnx")
AMP_HELP = ("bf16 autocast of the torch model: true | false | auto (where the device has "
            "bf16 in hardware); not 8-bit exact, and on, runtime=auto runs torch")


@dataclass
class Inference:
    self_ensemble: bool = opt(False, "geometric x8 (4 rotations x flip), 8x the compute")
    overlap: int = opt(16, "LR pixels of context around each tile, cropped away after",
                       low=0, whole=True)
    runtime: str = opt("auto", RUNTIME_HELP)
    amp: Any = opt(False, AMP_HELP)


@dataclass
class Media(Inference):
    tile: int | None = opt(256, "LR tile size; null = each image or frame in one go")
    video: Video = section(Video, "videos: every frame through the model, timestamps, "
                           "rotation and audio kept")
