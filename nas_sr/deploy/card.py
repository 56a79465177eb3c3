"""A model card: the facts read off an exported model and its checkpoint, then the user's notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nas_sr.archs.complexity import HR_SIZE, human
from nas_sr.deploy.predictor import Predictor
from nas_sr.errors import ConfigError
from search_spaces.genotypes import Genotype

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


def read_notes(path: Path) -> str:
    """The Markdown ``card_notes=`` names, for the model card."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror
        raise ConfigError(f"card_notes={path}: {reason}; card_notes= takes a Markdown "
                          f"file") from None
