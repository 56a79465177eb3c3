"""7. Runtimes: each shipped model (``nas_sr/models/*/model.pt2``) and SRCNN / FSRCNN run through
torch eager (a cell also as trained, without the re-parameterisation of
``search_spaces/fused.py``; and under bf16 autocast, ``amp=true``), the exported ``.pt2``
program, ``torch.compile`` and ONNX Runtime, at 1 and 2 threads: output MP/s on Set5's
baby (x2, 256x256 LR; scikit-image's astronaut without the datasets), how many 8-bit
output values differ from eager, and the peak memory of ``nas-sr upscale`` with the
shipped x2 model on a 1920x1080 input (tiled, the default, and untiled) per runtime.

``torch.compile`` runs for the shipped x2 model and SRCNN only, the pair the speed goal
compares: inductor's C++ build takes minutes a model and thread count on a small CPU.

`python -m bench --only runtime` (``--quick``: no ``torch.compile``, no memory runs).
Trained SRCNN / FSRCNN weights are taken from ``runs/equal_time/*/best.pt`` when present
(their speed does not depend on the weights).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from bench.inference import test_image
from bench.memory import peak_mb
from bench.timing import Row, interleaved
from nas_sr.archs.build import build_model
from nas_sr.data.sources import builtin_dir
from nas_sr.deploy.form import for_inference
from nas_sr.deploy.onnx_model import OnnxModel, export_onnx, levels_apart
from nas_sr.deploy.predictor import load_predictor
from nas_sr.deploy.pt2 import export_model

ROOT = Path(__file__).resolve().parents[1]
BASELINES = {"SRCNN": "srcnn", "FSRCNN": "fsrcnn"}
THREADS = (1, 2)
MEMORY_MODEL = "searched_x2"  # the shipped x2 model: peak memory of upscaling 1080p
COMPILED = (MEMORY_MODEL, "SRCNN")  # the speed goal's pair; the only ones compiled


def models() -> dict[str, tuple[nn.Module, dict, Path | None]]:
    """name -> (eager model, arch, model file for the memory runs)"""
    out = {}
    for path in sorted(ROOT.glob("nas_sr/models/*/model.pt2")):
        predictor = load_predictor(str(path), channels_last=False, runtime="eager")
        if predictor.scale == 2:  # the timing image is x2
            out[path.parent.name] = (predictor.model, predictor.arch, path)
    for label, name in BASELINES.items():
        trained = ROOT / "runs" / "equal_time" / name / "best.pt"
        if trained.is_file():
            predictor = load_predictor(str(trained), channels_last=False, runtime="eager")
            out[label] = (predictor.model, predictor.arch, trained)
        else:
            arch = {"name": name, "scale": 2}
            out[label] = (build_model(arch).eval(), arch, None)
    return out


def fed_nhwc(model: Callable) -> Callable:
    """``model`` fed channels_last input, as ``super_resolve`` feeds an eager model."""
    return lambda x: model(x.contiguous(memory_format=torch.channels_last))


def under_bf16(model: Callable) -> Callable:
    """``model`` run under CPU bf16 autocast, its output back in fp32 (``amp=true``)."""
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            return model(x).float()
    return run


def runtimes(model: nn.Module, arch: dict, threads: int, lq: torch.Tensor,
             compile_too: bool = True) -> dict[str, tuple[Callable, float]]:
    """runtime -> (callable on an NCHW batch, seconds to prepare it and make a first call);
    ``torch.compile`` only with ``compile_too`` (inductor builds C++ kernels: minutes).

    eager, compile and ONNX run the form nas-sr runs (a cell re-parameterised,
    ``nas_sr.deploy.form``); a cell is also timed as trained, and the ``.pt2`` holds that form.
    """
    trained = build_model(arch).eval()
    trained.load_state_dict(model.state_dict())
    fast = for_inference(trained, arch).to(memory_format=torch.channels_last)
    builders: dict[str, Callable[[], Callable]] = {
        "eager": lambda: fed_nhwc(fast),
        "eager bf16": lambda: under_bf16(fed_nhwc(fast)),
        "pt2": lambda: export_model(model).module(),
        "compile": lambda: fed_nhwc(torch.compile(fast, dynamic=False)),
        "onnx": lambda: OnnxModel(export_onnx(model, arch), threads),
    }
    if fast is not trained:
        trained.to(memory_format=torch.channels_last)
        builders["eager as trained"] = lambda: fed_nhwc(trained)
    if not compile_too:
        del builders["compile"]
    out = {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        fn = build()
        fn(lq)
        out[name] = (fn, time.perf_counter() - t0)
    return out


def memory_rows(name: str, path: Path, tmp: Path) -> list[Row]:
    photo = Image.open(builtin_dir() / "astronaut.png").convert("RGB")
    photo.resize((1920, 1080), Image.BICUBIC).save(tmp / "1080p.png")
    rows = []
    for runtime in ("eager", "onnx"):
        for tile in ("256", "null"):
            mb = peak_mb("upscale", f"model={path}", f"input={tmp / '1080p.png'}",
                         f"output={tmp / 'out'}", "overwrite=true", f"tile={tile}",
                         f"runtime={runtime}", "threads=1",
                         f"hydra.run.dir={tmp / f'up_{runtime}_{tile}'}")
            what = "tiled 256px" if tile != "null" else "untiled"
            rows.append(Row("runtime", f"{name}, {runtime}: upscale 1920x1080 x2, {what}", mb,
                            "MB peak RSS", "nas-sr upscale, 1 thread, a fresh process"))
    return rows


def run(quick: bool) -> list[Row]:
    lq, _, image = test_image()
    megapixels = lq.shape[-1] * lq.shape[-2] * 4 / 1e6
    rows: list[Row] = []
    before = torch.get_num_threads()
    nets = models()
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        for name, (model, arch, path) in nets.items():
            for threads in THREADS:
                torch.set_num_threads(threads)
                fns = runtimes(model, arch, threads, lq,
                               compile_too=not quick and name in COMPILED)
                reference = fns["eager"][0](lq)
                times = interleaved({k: (lambda f=f: f(lq)) for k, (f, _) in fns.items()},
                                    repeats=3 if quick else 7, warmup=2)
                for runtime, (fn, setup) in fns.items():
                    gap = levels_apart(fn(lq), reference)
                    rows.append(Row(
                        "runtime", f"{name}, {runtime}, {threads} thread{'s' * (threads > 1)}",
                        megapixels / times[runtime], "MP/s",
                        f"{image}; {gap['differ']} of {gap['values']:,} 8-bit values differ "
                        f"from eager (max {gap['max_levels']}); setup {setup:.1f}s"))
            if name == MEMORY_MODEL and not quick:
                rows += memory_rows(name, path, Path(tmp))
    torch.set_num_threads(before)
    return rows
