"""``model.safetensors``: a model's weights with its arch spec, for any framework to read.

The weights are those of the model ``model.pt2`` holds (masks folded); the arch spec rides
in the file's string metadata as JSON under ``ARCH_KEY``, already folded, so
``build_model(json.loads(metadata[ARCH_KEY]))`` takes the weights as they are.

A safetensors file holds no code: a JSON header and raw bytes. Reading one back, nas-sr
still checks every name, dtype and shape in the header against the network its spec
builds before a byte of weight is read, as ``nas_sr.deploy.pt2`` does, so a file whose
spec and weights disagree is refused with a message rather than half-loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from nas_sr.archs.build import build_model, check_arch
from nas_sr.archs.lighten import folded
from nas_sr.checkpoint import atomic_path
from nas_sr.deploy.pt2 import ModelError

SAFETENSORS_FILE = "model.safetensors"
ARCH_KEY = "nas_sr.arch"


def save_safetensors(model: nn.Module, arch: dict[str, Any], path: Path) -> None:
    """``model``'s weights (masks already folded) with its folded arch spec in the metadata."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {ARCH_KEY: json.dumps(folded(arch)), "format": "pt"}  # "pt": as HF writes
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_safetensors(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model and arch spec of a ``model.safetensors`` written by ``nas-sr export``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            arch = _arch(f.metadata() or {}, path)
            expected = _expected(arch, path)
            if set(f.keys()) != expected.keys():
                odd = sorted(set(f.keys()) ^ expected.keys())
                raise ModelError(f"{path}: its weights do not match the {arch['name']!r} model "
                                 f"its {ARCH_KEY} describes ({len(odd)} names differ, e.g. "
                                 f"{odd[0]!r})")
            for name, tensor in expected.items():
                _check(f.get_slice(name), name, tensor, path)
            state = {name: f.get_tensor(name) for name in expected}
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
    model = build_model(arch, checked=True)
    model.load_state_dict(state)
    return model.eval(), arch


def _arch(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    if ARCH_KEY not in metadata:
        raise ModelError(f"{path}: has no {ARCH_KEY} in its metadata (its network is unknown); "
                         "export it with `nas-sr export checkpoint=...`")
    try:
        arch = folded(json.loads(metadata[ARCH_KEY]))
    except (json.JSONDecodeError, AttributeError) as e:
        raise ModelError(f"{path}: its {ARCH_KEY} is not a JSON arch spec ({e})") from None
    return arch


def _expected(arch: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The state dict ``arch`` builds, on the meta device: shapes, no memory."""
    try:
        check_arch(arch)
        with torch.device("meta"):
            return build_model(arch, checked=True).state_dict()
    except ValueError as e:  # ConfigError, GenotypeError
        raise ModelError(f"{path}: its {ARCH_KEY} is not a valid nas-sr arch spec ({e})"
                         ) from None


def _check(view: Any, name: str, expected: torch.Tensor, path: Path) -> None:
    """One weight's header entry against the rebuilt model's tensor, before its bytes."""
    if view.get_dtype() != "F32" or list(view.get_shape()) != list(expected.shape):
        raise ModelError(f"{path}: weight {name!r} is {view.get_dtype()} "
                         f"{tuple(view.get_shape())}, not the float32 {tuple(expected.shape)} "
                         f"tensor the arch spec in {ARCH_KEY} needs; the file does not hold "
                         "the model its spec describes")
