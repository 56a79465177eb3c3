"""The export job: a checkpoint -> ``model.pt2`` that loads with torch alone.

``torch.export`` traces the model to an ATen graph with the weights inside, with a
dynamic batch, height and width, so one file serves any image size. Loading it
needs neither this package nor the search space code (the tests prove it in a
subprocess that never imports them); but ``torch.export.load`` can run code from the
file, so that is for files one trusts, and nas-sr itself reads a ``.pt2`` with
``nas_sr.deploy.pt2``. Beside it: ``model.safetensors`` (the same weights and the arch spec,
for other frameworks), ``genotype.json`` for cell models and ``MODEL_CARD.md``
(facts read off the model and checkpoint, then ``card_notes``: how it was made, which
only the user knows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nas_sr.archs.complexity import complexity, mult_adds
from nas_sr.archs.lighten import fold_masks
from nas_sr.archs.luma import as_rgb, colors
from nas_sr.checkpoint import atomic_path, check_writable, write_json
from nas_sr.data.images import downscale, load_image, mod_crop, to_tensor
from nas_sr.data.sources import builtin_dir
from nas_sr.deploy.card import model_card, read_notes
from nas_sr.deploy.onnx_model import ONNX_FILE, OnnxModel, export_onnx, levels_apart, with_metadata
from nas_sr.deploy.predictor import Predictor, load_predictor
from nas_sr.deploy.pt2 import export_model, max_abs_diff, save_exported
from nas_sr.deploy.quantize import INT8_FILE, int8_model
from nas_sr.deploy.weights import SAFETENSORS_FILE, save_safetensors
from nas_sr.device import set_threads
from nas_sr.options import export_formats
from search_spaces.genotypes import Genotype

MODEL_FILE = "model.pt2"


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    source = Path(cfg.checkpoint).expanduser()
    # read and checked before the slow export, so a wrong path costs nothing
    notes = read_notes(Path(cfg.card_notes).expanduser()) if cfg.card_notes else ""
    out = Path(cfg.output).expanduser() if cfg.output else run_dir
    check_writable(out)
    predictor = load_predictor(str(source), channels_last=False,  # trace plain NCHW
                               option="checkpoint")
    fold_masks(predictor.model)  # a pruned model ships plain weights, its zeros in them
    out.mkdir(parents=True, exist_ok=True)

    formats = export_formats(cfg)
    program = export_model(predictor.model, colors(predictor.arch))
    diff = max_abs_diff(predictor.model, program, colors(predictor.arch))
    for name, fmt in ((ONNX_FILE, "onnx"), (INT8_FILE, "int8")):
        if fmt not in formats and (out / name).is_file():
            # an earlier export's: left beside new weights it would no longer match them
            (out / name).unlink()
            print(f"removed {out / name} of an earlier export (add {fmt} to format= to renew it)")
    save_exported(program, predictor.arch, out / MODEL_FILE)
    save_safetensors(predictor.model, predictor.arch, out / SAFETENSORS_FILE)
    result: dict[str, Any] = {"model": str(out / MODEL_FILE), "max_abs_diff": diff,
                              "safetensors": str(out / SAFETENSORS_FILE)}
    if "onnx" in formats:
        result["onnx"] = save_onnx(predictor, out / ONNX_FILE)
    if "int8" in formats:
        result["int8"] = save_int8(out / ONNX_FILE, predictor.arch, out / INT8_FILE)
    if "genotype" in predictor.arch:
        write_json(out / "genotype.json", Genotype.from_dict(predictor.arch["genotype"]).to_dict())
    sizes = complexity(predictor.model, predictor.scale)
    if predictor.eager is not None:
        sizes["mult_adds_as_run"] = mult_adds(predictor.eager, predictor.scale)
    with atomic_path(out / "MODEL_CARD.md") as tmp:
        tmp.write_text(model_card(predictor, source, sizes, diff, notes, result.get("onnx")))
    print(f"exported {source} -> {out / MODEL_FILE} (max abs diff vs eager {diff:.2e})")
    return {**result, **sizes}


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
        onnx = as_rgb(OnnxModel(data), predictor.arch)
        check = {**levels_apart(onnx(lq), predictor.model(lq)), "image": image}
    with atomic_path(path) as tmp:
        tmp.write_bytes(with_metadata(data, {"export_check": check}))
    print(f"exported {path}: {check['differ']} of {check['values']:,} 8-bit values differ "
          f"from eager torch (at most {check['max_levels']} level)")
    return check


def save_int8(fp32: Path, arch: dict[str, Any], path: Path) -> dict[str, Any]:
    """``model.int8.onnx``: ``fp32`` quantized, with its check (``nas_sr.deploy.quantize``)."""
    data, check = int8_model(fp32.read_bytes(), arch)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    use = "runtime=auto runs it" if check["verified"] else "only runtime=int8 runs it"
    print(f"exported {path}: Y-PSNR {check['psnr_int8']:.2f} dB against fp32's "
          f"{check['psnr_fp32']:.2f} on the check photograph; {use}")
    return check
