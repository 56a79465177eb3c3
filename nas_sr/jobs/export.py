"""The export job: a checkpoint -> ``model.pt2`` that loads with torch alone.

``torch.export`` traces the model to an ATen graph with the weights inside, with a
dynamic batch, height and width, so one file serves any image size. Loading it
needs neither this package nor the search space code (the tests prove it in a
subprocess that never imports them); but ``torch.export.load`` can run code from the
file, so that is for files one trusts, and nas-sr itself reads a ``.pt2`` with
``nas_sr.pt2``. Beside it: ``genotype.json`` for cell models and ``MODEL_CARD.md``
(facts read off the model and checkpoint, then ``card_notes``: how it was made, which
only the user knows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.export import Dim, ExportedProgram

from nas_sr.checkpoint import atomic_path, write_json
from nas_sr.complexity import HR_SIZE, complexity, human, mult_adds
from nas_sr.data import builtin_dir
from nas_sr.images import downscale, load_image, mod_crop, to_tensor
from nas_sr.inference import Predictor, load_predictor
from nas_sr.lighten import fold_masks
from nas_sr.onnx_model import ONNX_FILE, OnnxModel, export_onnx, levels_apart, with_metadata
from nas_sr.options import export_formats
from nas_sr.pt2 import EXPORT_METADATA
from nas_sr.runtime import ConfigError, set_threads
from search_spaces.genotypes import Genotype

MODEL_FILE = "model.pt2"

LOAD_SNIPPET = """```python
import torch
model = torch.export.load("model.pt2").module()
lq = torch.rand(1, 3, 120, 160)   # RGB in [0, 1], (N, 3, h, w) of any size
with torch.no_grad():
    sr = model(lq).clamp(0, 1)    # (N, 3, h*{s}, w*{s})
```"""


TRUST_NOTE = ("`torch.export.load` can run code stored in the file: use it only on a file "
              "you trust. `nas-sr evaluate` and `nas-sr upscale` read just the weights and "
              "`nas_sr.json` of a `.pt2` and rebuild the network, so any file is safe there "
              "(docs/evaluation.md).")


def export_model(model: nn.Module) -> ExportedProgram:
    """Trace ``model`` with a dynamic batch, height and width (down to 1x1 pixels)."""
    example = torch.rand(2, 3, 48, 40)  # unequal sides and batch > 1, so none is specialised
    dims = {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=1, max=16384),
            3: Dim("width", min=1, max=16384)}
    return torch.export.export(model, (example,), dynamic_shapes=(dims,))


def save_exported(program: ExportedProgram, arch: dict[str, Any], path: Path) -> None:
    """``model.pt2`` with its arch spec inside, so ``load_predictor`` knows its scale."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.export.save(program, f, extra_files={EXPORT_METADATA: json.dumps(arch)})


@torch.inference_mode()
def max_abs_diff(model: nn.Module, program: ExportedProgram) -> float:
    """Exported vs eager on an input of another shape than the traced example."""
    x = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    return float((program.module()(x) - model(x)).abs().max())


def figures(extras: dict[str, Any]) -> dict[str, Any]:
    """Scalar entries of a checkpoint (and flat dicts of them, e.g. best metrics), dotted."""
    scalar = (int, float, str, bool)
    out = {}
    for key, value in extras.items():
        if isinstance(value, scalar):
            out[key] = value
        elif isinstance(value, dict) and value and all(isinstance(v, scalar)
                                                       for v in value.values()):
            out.update({f"{key}.{k}": v for k, v in value.items()})
    return out


def model_card(predictor: Predictor, source: Path, sizes: dict[str, int], diff: float,
               notes: str = "", onnx_check: dict[str, Any] | None = None) -> str:
    arch, s = predictor.arch, predictor.scale
    options = ", ".join(f"{k}={v}" for k, v in arch.items() if k not in ("name", "scale",
                                                                         "genotype"))
    lines = [
        f"# nas-sr model: {arch['name']} x{s}", "",
        "| | |", "| --- | --- |",
        f"| architecture | {arch['name']}{f' ({options})' if options else ''} |",
        f"| scale | x{s} |",
        f"| parameters | {human(sizes['params'])} ({sizes['params']:,}) |",
        *([f"| nonzero parameters | {sizes['nonzero_params']:,} (pruned) |"]
          if sizes["nonzero_params"] < sizes["params"] else []),
        f"| Mult-Adds, {HR_SIZE[1]}x{HR_SIZE[0]} output | {human(sizes['mult_adds'])} |",
        *([f"| Mult-Adds as nas-sr runs it (linear ops merged, `search_spaces/fused.py`) | "
           f"{human(sizes['mult_adds_as_run'])} |"] if "mult_adds_as_run" in sizes else []),
        f"| exported from | `{source}` |",
        f"| exported with torch | {torch.__version__} |",
        f"| export check | max abs diff vs the eager model {diff:.2e} |",
    ]
    if onnx_check:
        lines.append(f"| `model.onnx` check | {onnx_check['differ']} of "
                     f"{onnx_check['values']:,} 8-bit values differ from eager torch, by at "
                     f"most {onnx_check['max_levels']} level ({onnx_check['image']}); "
                     f"{'used' if onnx_check['agrees'] else 'not used'} by runtime=auto |")
    if "genotype" in arch:
        lines += ["", f"Cell (see `genotype.json`): `{Genotype.from_dict(arch['genotype'])}`"]
    lines += ["", "## Load it with plain torch", "",
              "No nas-sr needed; input size is free (dynamic batch, height and width). "
              "`.module().to('cuda')` runs it on a GPU.", "",
              LOAD_SNIPPET.format(s=s), "", TRUST_NOTE]
    figs = figures(predictor.extras)
    if figs:
        lines += ["", "## Figures from the checkpoint", "", "| key | value |", "| --- | --- |",
                  *(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                    for k, v in figs.items())]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    source = Path(cfg.checkpoint).expanduser()
    # read before the slow export, so a wrong path costs nothing
    notes = read_notes(Path(cfg.card_notes).expanduser()) if cfg.card_notes else ""
    predictor = load_predictor(str(source), channels_last=False,  # trace plain NCHW
                               option="checkpoint")
    fold_masks(predictor.model)  # a pruned model ships plain weights, its zeros in them
    out = Path(cfg.output).expanduser() if cfg.output else run_dir
    out.mkdir(parents=True, exist_ok=True)

    formats = export_formats(cfg)
    program = export_model(predictor.model)
    diff = max_abs_diff(predictor.model, program)
    if "onnx" not in formats and (out / ONNX_FILE).is_file():
        # an earlier export's: left beside new weights it would no longer match them
        (out / ONNX_FILE).unlink()
        print(f"removed {out / ONNX_FILE} of an earlier export (add format=onnx to renew it)")
    save_exported(program, predictor.arch, out / MODEL_FILE)
    result: dict[str, Any] = {"model": str(out / MODEL_FILE), "max_abs_diff": diff}
    if "onnx" in formats:
        result["onnx"] = save_onnx(predictor, out / ONNX_FILE)
    if "genotype" in predictor.arch:
        write_json(out / "genotype.json", Genotype.from_dict(predictor.arch["genotype"]).to_dict())
    sizes = complexity(predictor.model, predictor.scale)
    if predictor.eager is not None:
        sizes["mult_adds_as_run"] = mult_adds(predictor.eager, predictor.scale)
    with atomic_path(out / "MODEL_CARD.md") as tmp:
        tmp.write_text(model_card(predictor, source, sizes, diff, notes, result.get("onnx")))
    print(f"exported {source} -> {out / MODEL_FILE} (max abs diff vs eager {diff:.2e})")
    return {**result, **sizes}


def read_notes(path: Path) -> str:
    """The Markdown ``card_notes=`` names, for the model card."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror
        raise ConfigError(f"card_notes={path}: {reason}; card_notes= takes a Markdown "
                          f"file") from None


def check_image(scale: int) -> tuple[torch.Tensor, str]:
    """A real photograph's LR (scikit-image's astronaut, 512px, bicubic x1/scale)."""
    gt = mod_crop(load_image(builtin_dir() / "astronaut.png"), scale)
    return to_tensor(downscale(gt, scale))[None], f"scikit-image astronaut, x1/{scale} bicubic"


def save_onnx(predictor: Predictor, path: Path) -> dict[str, Any]:
    """``model.onnx``, with how far ONNX Runtime's 8-bit output is from eager torch's on a
    real photograph; ``runtime=auto`` runs it in place of torch only when that ``agrees``."""
    data = export_onnx(predictor.model, predictor.arch)
    lq, image = check_image(predictor.scale)
    with torch.inference_mode():
        check = {**levels_apart(OnnxModel(data)(lq), predictor.model(lq)), "image": image}
    with atomic_path(path) as tmp:
        tmp.write_bytes(with_metadata(data, {"export_check": check}))
    print(f"exported {path}: {check['differ']} of {check['values']:,} 8-bit values differ "
          f"from eager torch (at most {check['max_levels']} level)")
    return check
