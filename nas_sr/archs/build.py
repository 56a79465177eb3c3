"""Every SR model the toolkit trains, built from a plain ``arch`` spec.

An ``arch`` spec is a JSON-able dict (``{"name": "cell", "scale": 2, ...}``)
stored in every checkpoint beside the weights, so a checkpoint alone rebuilds
its model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_sr import checkpoint
from nas_sr.archs.baselines import EDSR, ESPCN, FSRCNN, MSRN, SRCNN, VDSR, smsrn
from nas_sr.archs.lighten import LIGHTENINGS, apply_spec
from nas_sr.archs.luma import LumaSR
from nas_sr.errors import ConfigError
from search_spaces.genotypes import Genotype
from search_spaces.network import UPSAMPLERS, CellSRNet

# the hand-designed models by name (``model=``); the cell network is built from a genotype
BASELINES: dict[str, Callable[..., nn.Module]] = {
    "srcnn": SRCNN, "fsrcnn": FSRCNN, "espcn": ESPCN, "vdsr": VDSR, "edsr_baseline": EDSR,
    "msrn": MSRN, "smsrn": smsrn}
# the models that can be built Y-only (``colors: 1``: see nas_sr.archs.luma)
TAKE_COLORS = ("cell", "fsrcnn", "espcn")


def check_scale(scale: int) -> None:
    """Every model here upsamples x2, x3 or x4 (sub-pixel or bicubic); say so up front."""
    if scale not in (2, 3, 4):
        raise ConfigError(f"scale must be 2, 3 or 4, got {scale}")


# bounds on an arch spec read from a file, so a tiny crafted checkpoint cannot make us
# allocate gigabytes: sizes are checked first, then parameters are counted on the meta device
MAX_SIZE = 1024  # channels, cells, nodes, blocks, depth


MAX_PARAMS = 100_000_000  # EDSR (the big one, 43M) fits twice


MAX_RECURSIONS = 16  # passes of each cell: they cost time, not weights, so bounded apart


SIZE_BOUNDS = {**dict.fromkeys(("channels", "cells", "nodes", "blocks", "depth", "d", "s", "m",
                                "colors"), MAX_SIZE), "recursions": MAX_RECURSIONS}


def check_arch(arch: Any) -> None:
    """Refuse an arch spec that is malformed or builds an unreasonably large network."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise ConfigError(f"an arch spec is a dict with a name, got {type(arch).__name__}")
    for key, most in SIZE_BOUNDS.items():
        value = arch.get(key, 1)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
                raise ConfigError(f"arch {key}={value!r}: must be whole numbers in 1..{most}")
    try:
        with torch.device("meta"):  # no memory: only the shapes
            params = sum(p.numel() for p in build_model(arch, checked=True).parameters())
    except (KeyError, TypeError) as e:
        raise ConfigError(f"arch spec {arch['name']!r} is malformed ({type(e).__name__}: {e})"
                          ) from None
    if params > MAX_PARAMS:
        raise ConfigError(f"arch {arch['name']!r} would have {params:,} parameters "
                          f"(at most {MAX_PARAMS:,} are accepted)")


def build_model(arch: dict[str, Any], checked: bool = False) -> nn.Module:
    """Model from an arch spec; unknown keys are an error, not silently dropped.

    ``checked=False`` bounds the spec first (:func:`check_arch`): specs come from files.
    """
    if not checked:
        check_arch(arch)
    spec = dict(arch)
    name, scale = spec.pop("name"), int(spec.pop("scale"))
    lightened = {k: spec.pop(k) for k in LIGHTENINGS if k in spec}
    check_scale(scale)
    colors = spec.get("colors", 3)
    if colors not in (1, 3) or (colors == 1 and (name not in TAKE_COLORS or lightened)):
        raise ConfigError(f"arch colors={colors!r}: 3 (RGB), or 1 (Y only) for "
                          f"{', '.join(TAKE_COLORS)} not compressed")
    if name == "cell":
        genotype = Genotype.from_dict(spec.pop("genotype"))
        if spec.get("upsampler", "conv3") not in UPSAMPLERS:
            raise ConfigError(f"arch upsampler={spec['upsampler']!r}: one of "
                              f"{', '.join(UPSAMPLERS)}")
        if genotype.macro and genotype.macro != (spec.get("channels"), spec.get("cells")):
            raise ConfigError(f"arch channels {spec.get('channels')} x cells "
                              f"{spec.get('cells')} differ from its genotype's macro "
                              f"{list(genotype.macro)}")
        model: nn.Module = CellSRNet(scale, genotype=genotype, channels=spec.pop("channels"),
                                     num_cells=spec.pop("cells"), num_nodes=genotype.num_nodes,
                                     recursions=spec.pop("recursions", 1),
                                     colors=spec.pop("colors", 3),
                                     upsampler=spec.pop("upsampler", "conv3"),
                                     **_no_more(spec, name))
    else:
        if name not in BASELINES:
            raise ConfigError(f"unknown model {name!r}; known: cell, {', '.join(BASELINES)}")
        model = BASELINES[name](scale, **spec)
    return LumaSR(model) if colors == 1 else apply_spec(model, lightened)


# sizes that shape a model's tensors (a cell's nodes follow its genotype; recursions reuse
# the cell's weights)
SHAPE_KEYS = ("channels", "cells", "blocks", "depth", "d", "s", "m", "colors", "upsampler")


def shape_mismatch(source: dict[str, Any], target: dict[str, Any]) -> str:
    """Where arch spec ``source`` (an ``init_from=`` file's) differs in kind or size from
    ``target`` (the model being built), with the overrides that would build it alike;
    '' where neither differs."""
    name = source.get("name")
    if name != target.get("name"):
        return f"it is a {name} model, this one a {target.get('name')}: pass model={name}"
    keys = [k for k in SHAPE_KEYS if k in source and source[k] != target.get(k)]
    if not keys:
        return ""
    section = "train.cell" if name == "cell" else f"archs.{name}"
    return (", ".join(f"{k} {source[k]} vs {target.get(k)}" for k in keys) + ": pass "
            + " ".join(f"{section}.{k}={source[k]}" for k in keys))


def _no_more(spec: dict[str, Any], name: str) -> dict[str, Any]:
    spec.pop("nodes", None)  # implied by the genotype
    if spec:
        raise ConfigError(f"unexpected options for {name}: {sorted(spec)}")
    return {}


def load_model(path: str | Path, map_location: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a checkpoint written by retrain (``weights_only`` load)."""
    state = checkpoint.load(path, map_location)
    if not isinstance(state, dict) or "arch" not in state or "model" not in state:
        raise ConfigError(f"{path}: not a nas-sr model checkpoint (no 'arch' and 'model')")
    model = build_model(state["arch"])
    model.load_state_dict(state["model"])
    return model.eval(), state
