"""A model card: the facts read off an exported model and its checkpoint, then the user's notes.

The card opens with YAML front matter as the Hugging Face Hub reads it (license, library,
tags, datasets, params, Mult-Adds, and ``model-index`` results with their protocol). What
only the user knows (the training data, benchmark figures) comes from the notes' own
front matter, which is merged in and not repeated below::

    ---
    datasets: [T91, BSD200]
    results: {Set5: {psnr: 37.46, ssim: 0.9588}, Set14: {psnr: 33.06, ssim: 0.9132}}
    ---
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import yaml

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


ONNX_SNIPPET = """```python
import numpy as np, onnxruntime as ort
from PIL import Image

session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
lq = np.asarray(Image.open("photo.png").convert("RGB"), dtype=np.float32) / 255
lq = lq.transpose(2, 0, 1)[None]              # "lq": float32 NCHW, RGB in [0, 1]
sr = session.run(None, {{"lq": lq}})[0]         # (1, 3, h*{s}, w*{s})
sr = (sr[0].clip(0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
Image.fromarray(sr).save("photo_x{s}.png")
```"""

# a Y-only model's files hold the network on Y (nas_sr.archs.luma): Y in, Y out
LOAD_SNIPPET_Y = """```python
import torch
model = torch.export.load("model.pt2").module()
y = torch.rand(1, 1, 120, 160)    # Y of BT.601 YCbCr (16..235) / 255, (N, 1, h, w)
with torch.no_grad():
    sr_y = model(y).clamp(0, 1)   # (N, 1, h*{s}, w*{s}); Cb and Cr: upscale them bicubic
```"""


ONNX_SNIPPET_Y = """```python
import numpy as np, onnxruntime as ort
from PIL import Image

session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
rgb = np.asarray(Image.open("photo.png").convert("RGB"), dtype=np.float32)
y = (16 + rgb @ np.float32([65.481, 128.553, 24.966]) / 255) / 255  # BT.601 Y, as trained
sr_y = session.run(None, {{"lq": y[None, None]}})[0]   # (1, 1, h*{s}, w*{s}): Y alone
```
Cb and Cr are upscaled bicubic and the three planes turned back to RGB; `nas-sr upscale`
does all of it, and feeds a video's decoded Y plane straight in."""


SAFETENSORS_NOTE = ("`model.safetensors` holds the same weights, with the arch spec as JSON "
                    "under `nas_sr.arch` in its metadata: with nas-sr installed, "
                    "`build_model(json.loads(metadata[\"nas_sr.arch\"]))` rebuilds the "
                    "network to load them into (docs/evaluation.md, \"model.safetensors\"); "
                    "elsewhere one needs that spec and the network's code.")

# what the model was trained to undo (``degradation:`` in the notes' front matter)
TRAINED_FOR = {
    "bicubic": "- Trained on bicubic downscaling of clean images: JPEG blocks, noise and camera "
    "blur in an input are sharpened rather than removed (clean the image first, or use a "
    "model trained on realistic degradations).",
    "realistic": "- Trained on synthetic realistic degradations (blur, downscaling by a random "
    "kernel, Gaussian and Poisson noise, JPEG; Real-ESRGAN's scheme, milder): it removes "
    "such damage, and on clean bicubic inputs it is softer than a model trained on them. "
    "Damage beyond the trained ranges (heavy motion blur, strong noise, very low JPEG "
    "quality: see how it was made) is reduced, not removed."}
# what the model was sized for (``speed:`` in the notes' front matter): realtime models keep
# up with video as it plays on a laptop CPU, at a cost in PSNR
SPEEDS = ("quality", "realtime")
LIMITATIONS = [
    "- x2, x3 and x4 only (this model: x{s}); another factor needs another model.",
    "- No GAN: trained for PSNR with a pixel loss, so fine textures come out smooth rather "
    "than invented."]

# how nas-sr measures every figure a card reports (docs/evaluation.md)
PROTOCOL = "on Y of YCbCr, {s} px shaved, 8-bit outputs"
VALIDATION = "validation images"

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


def split_notes(notes: str, where: str = "card_notes") -> tuple[dict[str, Any], str]:
    """The front matter (a dict; ``{}`` where there is none) and the body of ``notes``."""
    if not notes.startswith("---\n"):
        return {}, notes
    head, sep, body = notes[4:].partition("\n---\n")
    try:
        meta = yaml.safe_load(head) if sep else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: its front matter is not YAML ({e})") from None
    sets = (meta.get("results") or {}) if isinstance(meta, dict) else None
    if not isinstance(sets, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values())
            for v in sets.values()):
        raise ConfigError(f"{where}: front matter is a YAML mapping between two '---' lines; "
                          "its results map each set to numbers ({Set5: {psnr: 37.46}})")
    return meta, body.lstrip("\n")


def results(scale: int, extras: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """``model-index`` results: the notes' figures per benchmark set, then the checkpoint's
    validation PSNR, each metric named with its protocol."""
    protocol = PROTOCOL.format(s=scale)
    sets = dict(meta.get("results") or {})
    psnr = extras.get("val_psnr")
    if isinstance(psnr, float) and math.isfinite(psnr):
        sets.setdefault(VALIDATION, {"psnr": round(psnr, 4)})
    task = {"type": "image-to-image", "name": f"Image super-resolution x{scale}"}
    return [{"task": dict(task), "dataset": {"name": name, "type": name},
             "metrics": [{"type": kind, "value": value, "name": f"{kind.upper()} {protocol}"}
                         for kind, value in figures_of.items()]}
            for name, figures_of in sets.items()]


def as_list(value: Any) -> list[Any]:
    """A front-matter entry as a list: ``DIV2K`` and ``[DIV2K]`` alike; none: ``[]``."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def front_matter(name: str, scale: int, sizes: dict[str, int], extras: dict[str, Any],
                 meta: dict[str, Any]) -> str:
    """The card's YAML front matter, as the Hugging Face Hub reads it."""
    found = results(scale, extras, meta)
    kinds = sorted({m["type"] for r in found for m in r["metrics"]})
    fields = {
        "license": "mit", "library_name": "nas-sr", "pipeline_tag": "image-to-image",
        "tags": ["super-resolution", "neural-architecture-search", f"x{scale}",
                 *as_list(meta.get("tags"))],
        "datasets": as_list(meta.get("datasets")) or ["unknown"],
        "degradation": trained_for(meta),
        **({"speed": "realtime"} if sized_for(meta) == "realtime" else {}),
        "metrics": kinds,
        "params": sizes["params"],
        "mult_adds": sizes["mult_adds"],
        "mult_adds_output": f"{HR_SIZE[1]}x{HR_SIZE[0]}",
        **({"model-index": [{"name": f"{name}-x{scale}", "results": found}]} if found else {}),
    }
    return "---\n" + yaml.safe_dump(fields, sort_keys=False, width=100) + "---"


def trained_for(meta: dict[str, Any]) -> str:
    """``bicubic`` or ``realistic``: the degradation the notes say the model was trained on."""
    kind = meta.get("degradation", "bicubic")
    if kind not in TRAINED_FOR:
        raise ConfigError(f"card_notes: degradation: {kind!r}; use one of {sorted(TRAINED_FOR)}")
    return kind


def sized_for(meta: dict[str, Any]) -> str:
    """``quality`` or ``realtime``: what the notes say the model was sized for."""
    speed = meta.get("speed", "quality")
    if speed not in SPEEDS:
        raise ConfigError(f"card_notes: speed: {speed!r}; use one of {list(SPEEDS)}")
    return speed


def how_to_use(scale: int, onnx: bool, degradation: str = "bicubic", luma: bool = False
               ) -> list[str]:
    """The card's "How to use": ONNX Runtime, safetensors, then plain torch for trusted
    files; ``luma``: the files hold a network on Y."""
    onnx_part = (["ONNX Runtime, no torch needed (any input size):", "",
                  (ONNX_SNIPPET_Y if luma else ONNX_SNIPPET).format(s=scale)] if onnx else
                 ["ONNX Runtime: no verified `model.onnx` ships with this model; `nas-sr "
                  "export checkpoint=model.pt2 output=DIR` writes one."])
    return ["## How to use", "", *onnx_part, "", SAFETENSORS_NOTE, "",
            "### Plain torch (`model.pt2`, a file you trust)", "",
            "No nas-sr needed; input size is free (dynamic batch, height and width). "
            "`.module().to('cuda')` runs it on a GPU.", "",
            (LOAD_SNIPPET_Y if luma else LOAD_SNIPPET).format(s=scale), "", TRUST_NOTE, "",
            "## Limitations", "", TRAINED_FOR[degradation],
            *(line.format(s=scale) for line in LIMITATIONS)]


def facts_table(predictor: Predictor, source: Path, sizes: dict[str, int], diff: float,
                onnx_check: dict[str, Any] | None) -> list[str]:
    """The title, the table of facts read off the model, and its cell."""
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
    return lines


def model_card(predictor: Predictor, source: Path, sizes: dict[str, int], diff: float,
               notes: str = "", onnx_check: dict[str, Any] | None = None) -> str:
    """The Markdown card: front matter, facts, how to use, limitations, checkpoint figures,
    then the notes' body."""
    meta, body = split_notes(notes)
    lines = [front_matter(predictor.arch["name"], predictor.scale, sizes, predictor.extras,
                          meta), "",
             *facts_table(predictor, source, sizes, diff, onnx_check), "",
             *how_to_use(predictor.scale, bool(onnx_check and onnx_check["agrees"]),
                         trained_for(meta), predictor.luma)]
    figs = figures(predictor.extras)
    if figs:
        lines += ["", "## Figures from the checkpoint", "", "| key | value |", "| --- | --- |",
                  *(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                    for k, v in figs.items())]
    if body.strip():
        lines += ["", body.strip()]
    return "\n".join(lines) + "\n"


def card_front(model_file: Path) -> dict[str, Any]:
    """The front matter of the ``MODEL_CARD.md`` beside ``model_file``; ``{}`` without a
    readable card."""
    try:
        meta, _ = split_notes((model_file.parent / "MODEL_CARD.md").read_text())
    except (OSError, UnicodeDecodeError, ConfigError):
        return {}
    return meta


def card_degradation(model_file: Path) -> str | None:
    """What the model beside ``MODEL_CARD.md`` was trained for (its front matter's
    ``degradation``); None without a readable card, or from before the field."""
    kind = card_front(model_file).get("degradation")
    return kind if kind in TRAINED_FOR else None


def read_notes(path: Path) -> str:
    """The Markdown ``card_notes=`` names, for the model card; its front matter is checked
    here, before the slow export."""
    try:
        notes = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror
        raise ConfigError(f"card_notes={path}: {reason}; card_notes= takes a Markdown "
                          f"file") from None
    meta = split_notes(notes, f"card_notes={path}")[0]
    trained_for(meta)
    sized_for(meta)
    return notes
