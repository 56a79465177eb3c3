"""Running a trained model on whole images: loading, x8 self-ensemble and tiling.

Shared by ``evaluate`` and ``upscale``. A model is anything that maps an LR batch
(N, 3, h, w) in [0, 1] to (N, 3, h*s, w*s): a retrain checkpoint, an exported
``model.pt2``, or ``bicubic`` (PIL's bicubic upsampling, the benchmark reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from nas_sr.archs import lighten
from nas_sr.archs.build import load_model
from nas_sr.archs.luma import LumaSR, Model, as_rgb, colors
from nas_sr.deploy.form import for_inference
from nas_sr.deploy.onnx_model import ONNX_FILE, OnnxModel, export_onnx, read_onnx
from nas_sr.deploy.pt2 import ModelError, load_exported
from nas_sr.deploy.quantize import INT8_FILE
from nas_sr.device import memory_format, use_amp
from nas_sr.errors import ConfigError
from nas_sr.metrics import quantize

Progress = Callable[[int, int], None]  # (done, total) units of work


class PILBicubic(nn.Module):
    """PIL bicubic upsampling of 8-bit images: reproduces the datasets README's reference."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        images = quantize(x).byte().permute(0, 2, 3, 1).cpu().numpy()
        up = [np.asarray(Image.fromarray(img).resize((w * self.scale, h * self.scale),
                                                     Image.BICUBIC))
              for img in images]
        return torch.from_numpy(np.stack(up)).permute(0, 3, 1, 2).to(x.device) / 255.0


@dataclass
class Predictor:
    """A loaded model; ``arch`` is its plain spec (None for bicubic), ``extras`` the rest of
    its checkpoint (figures, epoch, ...; empty for bicubic and exported models)."""

    model: nn.Module
    scale: int
    arch: dict[str, Any] | None
    extras: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = False  # feed NHWC inputs (faster convs, exported models too)
    # runs in place of ``model`` when set (runtime=onnx): an ONNX Runtime session, a Y-only
    # model's wrapped to take and give RGB too (nas_sr.archs.luma)
    session: Model | None = None
    int8: bool = False  # the session is model.int8.onnx (runtime=int8)
    # runs in place of ``model`` in eager torch: a cell network re-parameterised
    # (search_spaces.fused), the same function with fewer convs; None: ``model`` itself
    eager: nn.Module | None = None

    @property
    def luma(self) -> bool:
        """A Y-only model: it also takes the Y plane alone (N, 1, h, w), as a video decodes it."""
        return colors(self.arch) == 1

    @property
    def runtime(self) -> str:
        return "eager" if self.session is None else "int8" if self.int8 else "onnx"

    def with_threads(self, threads: int) -> Predictor:
        """This predictor with each ONNX Runtime call on ``threads`` threads; eager torch
        keeps the process's torch threads."""
        inner = self.session.net if isinstance(self.session, LumaSR) else self.session
        if not isinstance(inner, OnnxModel):
            return self
        return replace(self, session=as_rgb(inner.with_threads(threads), self.arch))

    @property
    def net(self) -> Model:
        """What runs: the ONNX Runtime session, else the eager model in its inference form."""
        if self.session is not None:
            return self.session
        return self.eager if self.eager is not None else self.model


RUNTIMES = ("auto", "eager", "onnx", "int8")


def amp_and_runtime(amp: bool | str, runtime: str, device: torch.device) -> tuple[bool, str]:
    """``amp`` (true | false | auto, as :func:`nas_sr.device.use_amp`) resolved on
    ``device``, and the runtime the model then runs on. bf16 autocast is torch's, so amp on
    makes ``runtime=auto`` torch; an explicit ``runtime=onnx`` stays fp32 ONNX Runtime
    (``amp=true`` with it is refused by ``nas_sr.options``)."""
    if runtime == "onnx":
        return False, runtime
    on = use_amp(amp, device)
    return on, "eager" if on and runtime == "auto" else runtime


MODEL_FILES = "a retrain checkpoint (best.pt) or an exported model.pt2"
# the shipped models, package data (nas_sr/models/NAME/model.pt2): model=NAME loads one,
# from a clone or an installed wheel alike
SHIPPED = Path(__file__).resolve().parents[1] / "models"


def shipped_models() -> list[str]:
    return sorted(p.parent.name for p in SHIPPED.glob("*/model.pt2"))


def model_file(spec: str, option: str = "model") -> Path:
    """``option=spec`` as a model file, or a shipped model's name (``searched_x2``); a
    folder (a run's, say) or a missing path is named, with what to pass instead."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if not path.exists() and path.name == spec and (SHIPPED / spec / "model.pt2").is_file():
        return SHIPPED / spec / "model.pt2"
    if path.is_dir():
        inside = next((path / n for n in ("best.pt", "model.pt2") if (path / n).is_file()), None)
        raise ConfigError(f"{option}={spec} is a folder; " + (
            f"pass the model in it: {option}={inside}" if inside else
            f"{option}= takes a file: {MODEL_FILES}"))
    names = ", ".join(shipped_models())
    raise FileNotFoundError(f"{option}={spec}: no such model file; {option}= takes "
                            f"{MODEL_FILES}, a shipped model's name ({names})"
                            + (", or bicubic" if option == "model" else ""))


def load_predictor(spec: str, scale: int | None = None, device: torch.device | str = "cpu",
                   channels_last: bool = True, runtime: str = "eager",
                   option: str = "model") -> Predictor:
    """``bicubic``, an exported ``*.pt2`` or a retrain checkpoint, checked against ``scale``,
    to run on ``runtime`` (see :func:`attach_runtime`); ``option`` names it in errors."""
    if spec == "bicubic":
        if scale is None:
            raise ModelError("model=bicubic needs scale=2, 3 or 4")
        return Predictor(PILBicubic(scale), scale, None)  # PIL wants plain NCHW
    path = model_file(spec, option)
    extras: dict[str, Any] = {}
    if path.suffix == ".pt2":
        model, arch = load_exported(path)  # never torch.export.load: see nas_sr/deploy/pt2.py
    else:
        try:
            model, state = load_model(path)
        except (RuntimeError, ValueError, TypeError) as e:  # damaged or foreign file
            reason = str(e).splitlines()[0].removeprefix(f"{path}: ")
            raise ModelError(f"{path}: cannot be loaded as a nas-sr checkpoint: {reason}"
                             ) from None
        arch = dict(state["arch"])
        extras = {k: v for k, v in state.items() if k not in ("arch", "model")}
    model_scale = int(arch["scale"])
    if scale is not None and model_scale != scale:
        raise ModelError(f"{path}: wrong scale: the model upscales x{model_scale} but "
                         f"scale={scale}; pass scale={model_scale} or a x{scale} model")
    fmt = memory_format(channels_last)
    model = model.to(device, memory_format=fmt)
    fast = for_inference(model, arch).to(memory_format=fmt)
    predictor = Predictor(model, model_scale, arch, extras, channels_last,
                          eager=fast if fast is not model else None)
    return attach_runtime(predictor, path, torch.device(device), runtime)


def attach_runtime(predictor: Predictor, path: Path, device: torch.device, runtime: str
                   ) -> Predictor:
    """Run ``predictor`` on ONNX Runtime where asked (``onnx``) or where it is known to be
    faithful (``auto``: a ``model.onnx`` beside the model file whose export check passed).

    ``runtime=onnx`` without such a file converts the model in memory (seconds). Either way
    the session is checked against the eager model on a small input before it is used.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime={runtime!r}: use one of {', '.join(RUNTIMES)}")
    int8 = attach_int8(predictor, path, device, runtime)
    if int8 is not None:
        return int8
    beside = path.with_name(ONNX_FILE)
    if runtime == "eager" or (runtime == "auto" and (device.type != "cpu"
                                                     or not beside.is_file())):
        return predictor
    if device.type != "cpu":
        raise ConfigError(f"runtime=onnx runs on the CPU (onnxruntime's CPU build); "
                          f"use runtime=eager with device={device}")
    if beside.is_file():
        data, arch, facts = read_onnx(beside)
        verified = arch == predictor.arch and facts.get("export_check", {}).get("agrees")
        if runtime == "auto" and not verified:
            print(f"note: {beside} is not this model's verified export; running eager torch")
            return predictor
        if arch != predictor.arch:
            raise ModelError(f"{beside} was exported from another model than {path}; "
                             "re-export it (nas-sr export)")
    else:
        data = export_onnx(predictor.model, predictor.arch)
    session = OnnxModel(data)
    probe = torch.rand(1, colors(predictor.arch), 24, 20,
                       generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        gap = (session(probe) - predictor.model(probe)).abs().max().item()
    if gap <= 1e-3:
        return replace(predictor, session=as_rgb(session, predictor.arch), channels_last=False)
    if not beside.is_file():
        raise ModelError(f"{path}: ONNX Runtime's output is {gap:.2g} away from eager "
                         f"torch's; use runtime=eager")
    # the same arch with other weights: a model file re-exported without its model.onnx
    stale = (f"{beside} does not hold {path.name}'s weights (its output is {gap:.2g} away); "
             f"it is left from another export")
    if runtime == "auto":
        print(f"note: {stale}; running eager torch")
        return predictor
    raise ModelError(f"{stale}: re-export with format=onnx, or use runtime=eager")


def attach_int8(predictor: Predictor, path: Path, device: torch.device, runtime: str
                ) -> Predictor | None:
    """The predictor on ``model.int8.onnx`` beside ``path``: always with ``runtime=int8``,
    with ``auto`` only where its check found it within ``MAX_PSNR_LOSS`` dB of fp32; None
    where it is not to run."""
    beside = path.with_name(INT8_FILE)
    if runtime not in ("int8", "auto") or (runtime == "auto" and (
            device.type != "cpu" or not beside.is_file())):
        return None
    if device.type != "cpu" or not beside.is_file():
        raise ConfigError(f"runtime=int8 runs {beside} on the CPU; " + (
            "use device=cpu" if beside.is_file() else
            "there is none: export it with nas-sr export checkpoint=... format=[pt2,onnx,int8]"))
    data, arch, facts = read_onnx(beside)
    if arch != predictor.arch:
        raise ModelError(f"{beside} was exported from another model than {path}; re-export it")
    if runtime == "auto" and not facts.get("int8_check", {}).get("verified"):
        return None  # within the loss it may cost unverified: fp32 it is
    return replace(predictor, session=as_rgb(OnnxModel(data), arch), channels_last=False,
                   int8=True)


def self_ensemble(model: Model, lq: torch.Tensor) -> torch.Tensor:
    """Geometric x8 ensemble (EDSR): the mean over 4 rotations x flip, each undone."""
    total = None
    for k in range(4):
        for flip in (False, True):
            x = lq.rot90(k, dims=(-2, -1))
            y = model(x.flip(-1) if flip else x)
            y = (y.flip(-1) if flip else y).rot90(-k, dims=(-2, -1))
            total = y if total is None else total + y
    return total / 8


def tiled_forward(model: Model, lq: torch.Tensor, scale: int, tile: int | None,
                  overlap: int = 16, progress: Progress | None = None) -> torch.Tensor:
    """``model(lq)`` computed over ``tile`` x ``tile`` LR tiles (None or 0: in one go).

    Each tile runs with ``overlap`` extra LR pixels of context on every side that
    the image has, and only its core is kept: where the model's receptive field
    fits in the overlap the result equals the untiled one exactly, and beyond it
    the error decays with distance, so no seam shows. Activation memory is bounded
    by one (tile + 2 * overlap)^2 tile; only the output is image-sized.
    ``progress(done, total)`` is called after each tile.
    """
    report = progress or (lambda done, total: None)
    h, w = lq.shape[-2:]
    if not tile or (tile >= h and tile >= w):
        out = model(lq)
        report(1, 1)
        return out
    if tile < 1 or overlap < 0:
        raise ConfigError(f"tile must be >= 1 and overlap >= 0, got tile={tile} overlap={overlap}")
    s = scale
    out = lq.new_empty(lq.shape[0], lq.shape[1], h * s, w * s)
    done, total = 0, -(-h // tile) * -(-w // tile)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            cy, cx = max(y0 - overlap, 0), max(x0 - overlap, 0)  # context origin
            sr = model(lq[..., cy:min(y1 + overlap, h), cx:min(x1 + overlap, w)])
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = \
                sr[..., (y0 - cy) * s:(y1 - cy) * s, (x0 - cx) * s:(x1 - cx) * s]
            done += 1
            report(done, total)
    return out


@torch.inference_mode()
def super_resolve(predictor: Predictor, lq: torch.Tensor, *, tile: int | None = None,
                  overlap: int = 16, ensemble: bool = False, amp: bool = False,
                  progress: Progress | None = None) -> torch.Tensor:
    """The SR image of an LR batch, optionally x8-ensembled (per tile) and tiled.

    ``amp`` runs the model under bf16 autocast (torch models; see :func:`amp_and_runtime`);
    ``progress(done, total)`` is called after each tile.
    """
    lq = lq.contiguous(memory_format=memory_format(predictor.channels_last))
    net = predictor.net
    model: Model = partial(self_ensemble, net) if ensemble else net
    with torch.autocast(lq.device.type, torch.bfloat16, enabled=amp):
        sr = tiled_forward(model, lq, predictor.scale, tile, overlap, progress).float()
    # else a black picture, saved as if it were one; a NaN or inf anywhere makes the sum
    # one, at a tenth of the time of a per-pixel check (a video checks every frame)
    if not torch.isfinite(sr.sum()):
        raise ModelError("the model's output holds NaN or infinite values: its weights are "
                         "damaged (a diverged training run?)")
    return sr


def load_source(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model, arch) of a retrain checkpoint or an exported ``model.pt2``.

    An exported pruned model has its masks folded into zeros: its model, as ``nas_sr.deploy.pt2``
    rebuilds it, has plain weights, and its arch spec here says so (no ``prune``).
    """
    predictor = load_predictor(str(path), channels_last=False, option="checkpoint")
    arch = dict(predictor.arch)
    return predictor.model, lighten.folded(arch) if path.suffix == ".pt2" else arch
