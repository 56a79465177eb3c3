"""Reading a ``model.pt2`` without running anything that is in it.

``torch.export.load`` is not safe on a file from a stranger: it unpickles parts of the
archive (the sample inputs, with a fallback to ``weights_only=False``; weights or
constants marked ``use_pickle``; custom objects) and evaluates the graph's shape
expressions with ``sympy.sympify``, which is ``eval``. A crafted archive runs code.

So nas-sr never calls it. It reads two things from the archive, both inert: the arch
spec ``extra/nas_sr.json`` (JSON, bounded by ``archs.check_arch``) and the raw
little-endian float32 bytes of each weight, located through the JSON weights config.
The network is rebuilt from this package's own code and the bytes are copied into it;
every name, shape and byte count must match exactly, or the file is refused. The
graph, the sample inputs and anything pickled are never read.

A pruned model (``nas-sr compress``) is exported with its weight masks folded into plain
weights, zeros included; its spec keeps the ``prune`` entry as a record, so the network
is rebuilt from the folded spec (``lighten.folded``: no masks, the weights' own names).
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim, ExportedProgram

from nas_sr import checkpoint
from nas_sr.archs.build import build_model, check_arch
from nas_sr.archs.lighten import folded
from nas_sr.checkpoint import atomic_path
from nas_sr.errors import ConfigError
from search_spaces.cell import upgrade_state_dict

# the arch spec, stored inside every model.pt2 that `nas-sr export` writes
EXPORT_METADATA = "nas_sr.json"
FLOAT32 = 7  # torch._export.serde.schema.ScalarType.FLOAT
MAX_JSON_BYTES = 16 << 20  # the weights config of a 1M-parameter model is ~70 KB
WEIGHT_NAME = re.compile(r"weight_\d+")


class ModelError(ConfigError):
    """A model file or model choice that cannot be used; the message says what to fix."""


def _member(archive: zipfile.ZipFile, name: str, path: Path, limit: int | None = None) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ModelError(f"{path}: has no {name}; export the model with "
                         "`nas-sr export checkpoint=...`") from None
    if limit is not None and info.file_size > limit:
        raise ModelError(f"{path}: {name} is {info.file_size:,} bytes, more than any nas-sr "
                         "model writes; refusing it")
    return archive.read(info)


def _json(archive: zipfile.ZipFile, name: str, path: Path) -> Any:
    try:
        return json.loads(_member(archive, name, path, MAX_JSON_BYTES))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: {name} is not valid JSON ({e})") from None


def _ints(values: Any) -> list[int]:
    """``[{"as_int": 3}, ...]`` (the schema's SymInt) -> ``[3, ...]``; anything else fails."""
    return [int(v["as_int"]) for v in values]


def _weight(archive: zipfile.ZipFile, prefix: str, name: str, entry: Any,
            expected: torch.Tensor, path: Path) -> torch.Tensor:
    """One weight, checked against the rebuilt model's tensor before its bytes are read."""
    where = f"{path}: weight {name!r}"
    try:
        meta, file_name = entry["tensor_meta"], entry["path_name"]
        sizes, strides = _ints(meta["sizes"]), _ints(meta["strides"])
        offset, dtype, pickled = _ints([meta["storage_offset"]])[0], meta["dtype"], \
            entry["use_pickle"]
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{where}: its entry in the weights config is malformed") from None
    if pickled is not False:
        raise ModelError(f"{where} is stored pickled; nas-sr never unpickles a model file "
                         "(export it again with `nas-sr export`)")
    if dtype != FLOAT32 or sizes != list(expected.shape) or offset != 0 \
            or strides != list(torch.empty(sizes).stride()):
        raise ModelError(f"{where} is not a plain float32 {tuple(expected.shape)} tensor as "
                         f"the arch spec in {EXPORT_METADATA} needs; the file does not hold "
                         "the model its spec describes")
    if not isinstance(file_name, str) or not WEIGHT_NAME.fullmatch(file_name):
        raise ModelError(f"{where}: unexpected payload name {file_name!r}")
    data = _member(archive, f"{prefix}/data/weights/{file_name}", path,
                   limit=expected.numel() * 4)
    if len(data) != expected.numel() * 4:
        raise ModelError(f"{where}: {len(data)} bytes where {expected.numel() * 4} belong")
    return torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(sizes)


def load_exported(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model and arch spec of a ``model.pt2`` written by ``nas-sr export``."""
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a torch.export archive; export it with nas-sr export")
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"/extra/{EXPORT_METADATA}")]
        if len(names) != 1:
            raise ModelError(f"{path}: has no {EXPORT_METADATA} inside (its scale is unknown); "
                             "export it with `nas-sr export checkpoint=...`")
        prefix = names[0].removesuffix(f"/extra/{EXPORT_METADATA}")
        byteorder = _member(archive, f"{prefix}/byteorder", path, 16).decode(errors="replace")
        if byteorder != sys.byteorder:
            raise ModelError(f"{path}: written on a {byteorder}-endian machine; export it here")
        arch = _json(archive, names[0], path)
        try:
            check_arch(arch)
            with torch.device("meta"):  # shapes only: nothing allocated yet
                expected = build_model(folded(arch), checked=True).state_dict()
        except ValueError as e:  # ConfigError, GenotypeError
            raise ModelError(f"{path}: its {EXPORT_METADATA} is not a valid nas-sr arch spec "
                             f"({e}); export the model with `nas-sr export`") from None
        config = _json(archive, f"{prefix}/data/weights/model_weights_config.json", path)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            raise ModelError(f"{path}: its weights config is malformed")
        entries = upgrade_state_dict(entries)  # an export from before the ops had names
        if entries.keys() != expected.keys():
            odd = sorted(entries.keys() ^ expected.keys())
            raise ModelError(
                f"{path}: its weights do not match the {arch.get('name')!r} model its "
                f"{EXPORT_METADATA} describes ({len(odd)} names differ, e.g. {odd[0]!r}); "
                "it was not written by `nas-sr export` for this arch")
        state = {name: _weight(archive, prefix, name, entries[name], tensor, path)
                 for name, tensor in expected.items()}
    model = build_model(folded(arch), checked=True)
    model.load_state_dict(state)
    return model.eval(), arch


def read_model_file(path: str | Path) -> dict[str, Any]:
    """``{"model": state_dict, "arch": spec, ...}`` of a retrain checkpoint or a ``model.pt2``.

    A ``.pt2`` comes through :func:`load_exported` (nothing in it runs), its weights as
    exported (masks folded), so a shipped model can be fine-tuned without its checkpoint.
    """
    path = Path(path).expanduser()
    if path.suffix == ".pt2":
        model, arch = load_exported(path)
        return {"model": model.state_dict(), "arch": folded(arch)}
    return checkpoint.load(path)


def export_model(model: nn.Module, channels: int = 3) -> ExportedProgram:
    """Trace ``model`` with a dynamic batch, height and width (down to 1x1 pixels), on
    ``channels`` input channels (1: a Y-only model's network alone, nas_sr.archs.luma)."""
    example = torch.rand(2, channels, 48, 40)  # unequal sides and batch > 1, so none is specialised
    dims = {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=1, max=16384),
            3: Dim("width", min=1, max=16384)}
    return torch.export.export(model, (example,), dynamic_shapes=(dims,))


def save_exported(program: ExportedProgram, arch: dict[str, Any], path: Path) -> None:
    """``model.pt2`` with its arch spec inside, so ``load_predictor`` knows its scale."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.export.save(program, f, extra_files={EXPORT_METADATA: json.dumps(arch)})


@torch.inference_mode()
def max_abs_diff(model: nn.Module, program: ExportedProgram, channels: int = 3) -> float:
    """Exported vs eager on an input of another shape than the traced example."""
    x = torch.rand(1, channels, 37, 53, generator=torch.Generator().manual_seed(0))
    return float((program.module()(x) - model(x)).abs().max())
