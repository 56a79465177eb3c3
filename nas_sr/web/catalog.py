"""The models the page offers: every ``*/model.pt2`` under a folder, plus bicubic references."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from nas_sr.deploy.card import card_degradation, card_front
from nas_sr.deploy.predictor import Predictor, load_predictor
from nas_sr.deploy.pt2 import ModelError

log = logging.getLogger(__name__)
BICUBIC_SCALES = (2, 3, 4)
# a model's use, from what its card says it was trained for
USE = {"bicubic": "clean images", "realistic": "real photos: blur, noise, JPEG"}


@dataclass(frozen=True)
class Entry:
    name: str
    label: str
    scale: int
    predictor: Predictor


def _entry(name: str, spec: str, scale: int | None, device: torch.device,
           channels_last: bool, runtime: str = "eager") -> Entry:
    predictor = load_predictor(spec, scale, device, channels_last, runtime)
    params = sum(p.numel() for p in predictor.model.parameters())
    what = f"{params / 1e3:.0f}K params" if params else "reference, no model"
    kind = card_degradation(Path(spec)) if spec != "bicubic" else None
    use = f", {USE[kind]}" if kind else ""
    if spec != "bicubic" and card_front(Path(spec)).get("speed") == "realtime":
        use += ", fast: real-time video"
    return Entry(name, f"{name} (x{predictor.scale}, {what}{use})", predictor.scale, predictor)


def is_model_name(model: str) -> bool:
    """``searched_x2`` names a ``models_dir`` folder; ``dir/x.pt2`` or ``x.pt`` is a file."""
    return "/" not in model and "\\" not in model and Path(model).suffix not in (".pt", ".pt2")


def load_catalog(models_dir: Path, model: str | None, device: torch.device,
                 channels_last: bool = True, runtime: str = "auto") -> dict[str, Entry]:
    """name -> entry, the default first: ``model`` (a model file, added to the list, or the
    name of one of ``models_dir``'s models), then ``models_dir``'s models (a folder's name
    is its model's name), then bicubic x2/x3/x4.

    A model file that does not load is left out with a warning; a ``model`` file is not. A
    ``model`` name that ``models_dir`` lacks leaves the first model the default, with a
    warning (the config's default name, run outside the repository).
    """
    found = [(p.parent.name, str(p)) for p in sorted(models_dir.glob("*/model.pt2"))]
    specs: list[tuple[str, str]] = []
    if model and is_model_name(model):
        specs += [(name, spec) for name, spec in found if name == model]
        if not specs:
            log.warning("model=%s: no %s/%s/model.pt2; offering %s first (models_dir=DIR "
                        "names a folder of models; null: the shipped ones)", model,
                        models_dir, model, found[0][0] if found else "bicubic_x2")
    elif model:
        path = Path(model)
        specs.append((path.parent.name if path.name == "model.pt2" else path.stem, model))
    specs += found
    catalog: dict[str, Entry] = {}
    for name, spec in specs:
        if name in catalog:
            continue
        try:
            catalog[name] = _entry(name, spec, None, device, channels_last, runtime)
        except (ModelError, FileNotFoundError) as e:
            if spec == model:
                raise
            log.warning("leaving out %s: %s", spec, e)
    for s in BICUBIC_SCALES:
        catalog[f"bicubic_x{s}"] = _entry(f"bicubic_x{s}", "bicubic", s, device, False)
    return catalog
