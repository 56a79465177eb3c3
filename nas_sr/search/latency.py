"""A measured latency table: what each part of a cell network costs in ONNX Runtime on this
machine's CPU, so a search can price a cell in milliseconds instead of parameters.

Method (:func:`profile`). Every part is a tiny ``nn.Module`` exported as serving exports a
model (``nas_sr.deploy.onnx_model.trace_onnx``: the dynamo exporter, opset 18, batch 1,
dynamic height and width; the legacy TorchScript exporter is 100x faster on a tiny module
but writes other graphs for some ops, e.g. GlobalAveragePool where serving has ReduceMean,
and is deprecated) and run in an ``OnnxModel``'s session (the CPU provider,
``intra_op_num_threads`` = the thread count, one inter-op thread) on random float32 inputs
of the reference LR size: ``warmup`` untimed runs, then the median wall time of ``repeats``
runs of ``session.run``, in ms (``clock=cpu``: the calling thread's CPU time instead, for
one thread on a shared machine). One session at a time, as serving runs one model: timed in
alternation, each session's thread pool spins on after its run into the next session's
(ONNX Runtime's workers spin-wait), which on a 2-core machine tripled some entries.
Nothing is subtracted: an entry is the whole call, its fixed overhead (feeding the
inputs, ONNX Runtime's layout reorders around a conv) included. The parts, per width C:

- ``op:NAME``: every op of ``search_spaces.operations.REGISTRY`` as ``build(C)`` makes it
  (ops registered later are profiled too; one that does not map C channels to C fails
  loudly, naming it);
- ``add``: the sum of two C-channel tensors, one per node (a node adds its two op outputs);
- ``combine:L``: a cell's output, ``h(k-1) + conv1x1(concat(L loose ends))``, for L = 1 to
  ``nodes``;
- ``head``: ``conv3x3(x - mean)``, 3 to C channels; ``tail:S``: ``conv3x3(h + feat)``,
  C to 3 S^2 channels, ``PixelShuffle(S)`` and ``+ mean``, for each scale S; ``head:y`` and
  ``tail:S:y`` the same for a network on Y (one channel in, one out), and ``...:conv1`` a
  tail whose sub-pixel conv is 1x1 (a table made before these prices only the RGB 3x3 form;
  ``nas-sr profile profile.reuse=true`` adds them).

:func:`predict_latency` is arithmetic on the table: ``head + cells x share x (ops + nodes x
add + combine:L) + tail:S``, scaled linearly from the reference LR size to the asked one
by pixel count. ``share`` (:func:`served_share`) is the part of the cell's conv
multiply-adds that its served form keeps: serving runs the cell re-parameterised
(``search_spaces.fused``: convs on one state summed, the combine folded into the loose
ends' ops), which the searched form's parts do not see: by genotype the searched cell
takes 2-52% longer, so the plain sum ranks networks worse (docs/search.md, "Latency
table"). :func:`measure_latency` times a whole network the same way, exported as serving
exports it (``export_onnx``); :func:`validate` compares the two on random networks.

A table is valid on the CPU model and ONNX Runtime version that made it: :func:`load_table`
refuses another's, and a malformed one, naming the command that remakes it.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import platform
import re
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from controllers.uniform import RandomController
from nas_sr.archs.build import build_model
from nas_sr.archs.luma import colors
from nas_sr.checkpoint import write_json
from nas_sr.deploy.onnx_model import OnnxModel, export_onnx, trace_onnx
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar
from nas_sr.search.stats import rank_correlation
from search_spaces.cell import Cell
from search_spaces.fused import FusedCell
from search_spaces.genotypes import Genotype
from search_spaces.network import UPSAMPLERS, CellSRNet, form_overrides
from search_spaces.operations import REGISTRY

REMAKE = "nas-sr profile"  # the command that (re)makes this machine's table
REUSE = "nas-sr profile profile.reuse=true"  # ... and that times only the parts it lacks
EXPORTER = "torch.onnx.export(dynamo=True)"
TABLE_KEYS = ("machine", "reference_lr", "threads", "widths", "scales", "nodes", "entries")
MACHINE_KEYS = ("cpu", "cores", "onnxruntime", "torch")
# wall: what a user waits; cpu: the calling thread's CPU time, which is the same on a quiet
# machine for one thread (ONNX Runtime then runs in the caller) and leaves out the time
# other processes hold the core: for one thread on a shared machine
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
TRACE_SIZE = (48, 40)  # unequal sides, so the exporter specialises neither dimension
Run = tuple[Any, dict[str, np.ndarray]]  # an ONNX Runtime session and its inputs


# --- the parts ----------------------------------------------------------------------------

class Head(nn.Module):
    """The network's start, as ``CellSRNet.forward`` runs it: ``head(x - mean)``."""

    def __init__(self, net: CellSRNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(x - self.net.mean)


class Tail(nn.Module):
    """The network's end: the global residual, ``tail`` (conv, PixelShuffle), ``+ mean``."""

    def __init__(self, net: CellSRNet):
        super().__init__()
        self.net = net

    def forward(self, h: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return self.net.tail(h + feat) + self.net.mean


class Combine(nn.Module):
    """A cell's output, as ``Cell`` makes it: ``h(k-1) + conv1x1(concat(loose ends))``."""

    def __init__(self, channels: int, loose: int):
        super().__init__()
        self.combine = nn.Conv2d(loose * channels, channels, 1)

    def forward(self, h: torch.Tensor, *ends: torch.Tensor) -> torch.Tensor:
        return h + self.combine(torch.cat(ends, dim=1))


class Add(nn.Module):
    """A node's sum of its two op outputs."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def parts(c: int, scales: Sequence[int], nodes: int) -> dict[str, tuple[nn.Module, list[int]]]:
    """Every part the table prices at width ``c``: name -> (module, its inputs' channels)."""
    out: dict[str, tuple[nn.Module, list[int]]] = {}
    for name, op in REGISTRY.items():
        out[f"op:{name}"] = (op.build(c), [c])
    out["add"] = (Add(), [c, c])
    for loose in range(1, nodes + 1):
        out[f"combine:{loose}"] = (Combine(c, loose), [c] * (loose + 1))
    for planes in (3, 1):
        out[head_part(planes)] = (Head(CellSRNet(2, c, num_cells=0, colors=planes)), [planes])
        for s, up in itertools.product(scales, UPSAMPLERS):
            tail = Tail(CellSRNet(s, c, num_cells=0, colors=planes, upsampler=up))
            out[tail_part(s, planes, up)] = (tail, [c, c])
    return out


def head_part(colors: int) -> str:
    return "head:y" if colors == 1 else "head"


def tail_part(scale: int, colors: int, upsampler: str) -> str:
    return (f"tail:{scale}" + (":y" if colors == 1 else "")
            + (f":{upsampler}" if upsampler != "conv3" else ""))


def cell_parts(genotype: Genotype) -> Counter[str]:
    """How many of each table part one cell of ``genotype`` runs in its searched form."""
    cell = Counter(f"op:{op}" for op in genotype.ops())
    cell["add"] += genotype.num_nodes
    cell[f"combine:{len(genotype.loose_ends())}"] += 1
    return cell


def conv_macs(module: nn.Module) -> int:
    """Multiply-adds per pixel of every conv in ``module``."""
    return sum(m.out_channels * m.in_channels // m.groups * math.prod(m.kernel_size)
               for m in module.modules() if isinstance(m, nn.Conv2d))


def served_share(genotype: Genotype, channels: int) -> float:
    """The share of a cell's conv multiply-adds that its served form keeps: inference runs
    the cell re-parameterised (``search_spaces.fused``: full convs on one state summed into
    one, the 1x1 combine folded into the loose ends' ops), which the searched form's parts
    do not see. Read off the fused cell itself, so it follows whatever fused.py folds."""
    return _served_share(Genotype(genotype.nodes), channels)  # the cell's, at any size


@functools.lru_cache(maxsize=4096)
def _served_share(genotype: Genotype, channels: int) -> float:
    with torch.random.fork_rng(devices=[]):  # a cell's random init leaves the caller's RNG
        cell = Cell(channels, genotype.num_nodes, genotype)
        return conv_macs(FusedCell(cell, concat=False)) / conv_macs(cell)


# --- timing -------------------------------------------------------------------------------

def export_part(module: nn.Module, channels: list[int]) -> bytes:
    """``module`` as ONNX, batch 1, its inputs' height and width dynamic (one pair for all)."""
    height, width = Dim("height", min=1, max=16384), Dim("width", min=1, max=16384)
    examples = tuple(torch.rand(1, c, *TRACE_SIZE) for c in channels)
    dims = torch.export.ShapesCollection()  # fits any signature, ``*ends`` included
    for x in examples:
        dims[x] = {2: height, 3: width}
    names = [f"x{i}" for i in range(len(channels))]
    with torch.no_grad(), warnings.catch_warnings():
        # inputs share one height and width, so the exporter names each once: as meant
        warnings.filterwarnings("ignore", message="# The axis name")
        return trace_onnx(module.eval(), examples, names,
                          dims.dynamic_shapes(module, examples))


def session(graph: bytes, shapes: list[tuple[int, ...]], threads: int) -> Run:
    """An ``OnnxModel``'s session of ``graph`` and random float32 inputs of ``shapes``."""
    onnx_session = OnnxModel(graph, threads).session
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.random(shape, dtype=np.float32)
             for i, shape in zip(onnx_session.get_inputs(), shapes, strict=True)}
    return onnx_session, feeds


def median_ms(run: Run, warmup: int, repeats: int, clock: str = "wall") -> float:
    """Median milliseconds of one ``session.run`` after ``warmup`` untimed ones, on the
    ``clock`` of ``CLOCKS``."""
    onnx_session, feeds = run
    now = CLOCKS[clock]
    for _ in range(warmup):
        onnx_session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = now()
        onnx_session.run(None, feeds)
        times.append(now() - start)
    return 1000 * float(np.median(times))


def _checked_part(name: str, module: nn.Module, channels: list[int]) -> bytes:
    """The part exported, after a check that an op maps C channels to C at stride 1."""
    x = [torch.rand(1, c, *TRACE_SIZE) for c in channels]
    try:
        with torch.no_grad():
            shape = tuple(module.eval()(*x).shape)
        if name.startswith("op:") and shape != tuple(x[0].shape):
            raise ValueError(f"maps {tuple(x[0].shape)} to {shape}, not to the same shape")
        return export_part(module, channels)
    except Exception as e:  # an op this table does not know how to run: say which
        raise RuntimeError(f"latency table: cannot profile {name} at width {channels[0]}: "
                           f"{type(e).__name__}: {e}") from e


# --- the table ----------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """What a table is valid for: the CPU model and ONNX Runtime (and, for the record, the
    core count and torch)."""
    import onnxruntime as ort  # noqa: PLC0415  (only ONNX work needs it)

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: platform's word for it
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "onnxruntime": ort.__version__,
            "torch": torch.__version__}


def default_table_path() -> Path:
    """``~/.cache/nas-sr/latency/<cpu>-ort<version>.json`` (``$XDG_CACHE_HOME`` if set)."""
    m = machine()
    slug = re.sub(r"[^a-z0-9]+", "-", m["cpu"].lower()).strip("-") or "cpu"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nas-sr" / "latency" / f"{slug}-ort{m['onnxruntime']}.json"


def profile(widths: Sequence[int], lr_size: Sequence[int] = (128, 128),
            threads: Sequence[int] = (1, 2), scales: Sequence[int] = (2, 3, 4), nodes: int = 5,
            warmup: int = 3, repeats: int = 10, progress: bool = True, clock: str = "wall"
            ) -> dict[str, Any]:
    """The latency table of this machine (the method: the module's docstring)."""
    check_clock(clock, threads)
    table = {"machine": machine(), "reference_lr": list(lr_size), "threads": list(threads),
             "widths": list(widths), "scales": list(scales), "nodes": nodes,
             "warmup": warmup, "repeats": repeats, "clock": clock, "exporter": EXPORTER,
             "entries": {str(t): {} for t in threads}}
    complete(table, progress)
    return table


def complete(table: dict[str, Any], progress: bool = True) -> list[str]:
    """Time the parts ``table`` lacks at its widths, scales and thread counts, as it timed
    the others (all of them for a new table; for an older one, the parts added since, such
    as the Y head and tail); the names of the parts timed."""
    warmup, repeats = table.get("warmup", 3), table.get("repeats", 10)
    clock = table.get("clock", "wall")
    h, w = table["reference_lr"]
    entries, threads = table["entries"], table["threads"]
    todo = [(c, name, part) for c in table["widths"]
            for name, part in parts(c, table["scales"], table["nodes"]).items()
            if any(str(c) not in entries[str(t)].get(name, {}) for t in threads)]
    for c, name, (module, channels) in progress_bar(todo, desc="profiling parts",
                                                    disable=not progress):
        graph = _checked_part(name, module, channels)
        for t in threads:
            run = session(graph, [(1, ch, h, w) for ch in channels], t)
            entries[str(t)].setdefault(name, {})[str(c)] = median_ms(run, warmup, repeats,
                                                                     clock)
    return sorted({name for _, name, _ in todo})


def check_clock(clock: str, threads: Sequence[int]) -> None:
    """``clock`` is one of ``CLOCKS``, and ``cpu`` times one thread only (more threads'
    CPU time is summed and spun, not waited)."""
    if clock not in CLOCKS:
        raise ConfigError(f"clock={clock!r}: use {' or '.join(CLOCKS)}")
    if clock == "cpu" and any(t != 1 for t in threads):
        raise ConfigError(f"clock=cpu times 1 thread only, not threads={list(threads)}; "
                          "use clock=wall for more")


def save_table(table: dict[str, Any], path: Path) -> None:
    """Written atomically: a reader never meets half a table."""
    write_json(path, table)


def load_table(path: str | Path, every_part: bool = True) -> dict[str, Any]:
    """The table at ``path``, refused (``ConfigError``, one line) when it was made on another
    CPU model or ONNX Runtime, is malformed, or (``every_part``) lacks a part the toolkit
    has now, such as an op registered since."""
    path = Path(path)
    remake = f"remake it with `{REMAKE} profile.table={path}`"
    add = f"add what it lacks with `{REUSE} profile.table={path}`"
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no latency table here; make it with `{REMAKE}`") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a latency table ({e}); {remake}") from None
    problem = _malformed(table, every_part)
    if problem:
        fix = add if problem.startswith(MISSING) else remake
        raise ConfigError(f"{path}: malformed latency table ({problem}); {fix}")
    here, there = machine(), table["machine"]
    for key in ("cpu", "onnxruntime"):
        if there[key] != here[key]:
            raise ConfigError(f"{path}: stale or foreign latency table (made with {key} "
                              f"{there[key]!r}, this machine has {here[key]!r}); {remake}")
    return table


def _malformed(table: Any, every_part: bool = True) -> str | None:
    """What is wrong with a table's structure (and ``every_part``: a part it lacks), or
    None."""
    if not isinstance(table, dict):
        return "not a JSON object"
    missing = [k for k in TABLE_KEYS if k not in table]
    if missing:
        return f"no {', '.join(missing)}"
    m = table["machine"]
    if not isinstance(m, dict) or any(not isinstance(m.get(k), str) for k in
                                      ("cpu", "onnxruntime", "torch")):
        return "machine needs cpu, onnxruntime and torch as strings"
    for key, length in (("reference_lr", 2), ("threads", None), ("widths", None),
                        ("scales", None)):
        v = table[key]
        if (not isinstance(v, list) or not v or (length and len(v) != length)
                or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v)):
            return f"{key} must be a list of positive whole numbers, got {v!r}"
    if isinstance(table["nodes"], bool) or not isinstance(table["nodes"], int):
        return f"nodes must be a whole number, got {table['nodes']!r}"
    if table.get("clock", "wall") not in CLOCKS:
        return f"clock must be one of {list(CLOCKS)}, got {table['clock']!r}"
    calibration = table.get("calibration", {})
    if not isinstance(calibration, dict) or not all(_is_time(f) and f > 0
                                                    for f in calibration.values()):
        return f"calibration must map thread counts to positive factors, got {calibration!r}"
    return _bad_entries(table, every_part)


MISSING = "no entry "  # how a part the table lacks is named (profile.reuse adds it)


def _bad_entries(table: dict[str, Any], every_part: bool = True) -> str | None:
    """The first unusable entry, or (``every_part``) missing one: every part at every
    width and thread count."""
    if not isinstance(table["entries"], dict):
        return "entries must be an object"
    names = [*(f"op:{op}" for op in REGISTRY), "add", "head",
             *(f"combine:{n}" for n in range(1, table["nodes"] + 1)),
             *(f"tail:{s}" for s in table["scales"])]
    for t in table["threads"]:
        rows = table["entries"].get(str(t))
        if not isinstance(rows, dict):
            return f"no entries for {t} thread(s)"
        later = [n for n in rows if n.startswith(("head:", "tail:")) and n not in names]
        for name in names + later:  # the forms added since: checked where present
            if name in rows and not isinstance(rows[name], dict):
                return f"entry {name}, {t} thread(s) is {rows[name]!r}, not times by width"
            for c in table["widths"]:
                ms = rows.get(name, {}).get(str(c))
                if ms is None:
                    if not every_part:
                        continue
                    return f"{MISSING}{name} at width {c}, {t} thread(s)"
                if not _is_time(ms):
                    return f"entry {name} at width {c}, {t} thread(s) is {ms!r}, not a time"
    return None


def _is_time(value: Any) -> bool:
    """A finite number >= 0 (JSON's ``true`` is no number)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value >= 0)


# --- prediction and measurement -----------------------------------------------------------

def predict_latency(genotype: Genotype, channels: int, cells: int, scale: int,
                    table: dict[str, Any], threads: int, lr_size: Sequence[int],
                    colors: int = 3, upsampler: str = "conv3") -> float:
    """Milliseconds the network (on Y with ``colors=1``; its ``upsampler``) should take on
    an ``lr_size`` input: the head, the tail and
    ``cells`` times the sum of the table's entries for a cell's parts, that sum scaled by
    the share of its conv multiply-adds the served (fused) cell keeps; all scaled from the
    reference LR size by pixel count; times the table's ``calibration`` factor for
    ``threads``, if it has one (:func:`validate` measures it)."""
    rows = table["entries"].get(str(threads))
    if rows is None:
        raise ConfigError(f"the latency table has no entries for {threads} thread(s) (it has "
                          f"{table['threads']}); profile them with `{REMAKE}`")
    def ms(name: str) -> float:
        value = rows.get(name, {}).get(str(channels))
        if value is None:  # a part added to the toolkit since, or a size never timed
            never = [f"profile.{k}=[...,{v}]" for k, v, timed in (
                ("widths", channels, table["widths"]), ("scales", scale, table["scales"]))
                if v not in timed]
            if name.startswith("combine:") and int(name.split(":")[1]) > table["nodes"]:
                never.append(f"profile.nodes={name.split(':')[1]}")
            how = f"{REMAKE} {' '.join(never)}" if never else REUSE
            raise ConfigError(f"the latency table has no {name} at width {channels} "
                              f"(widths {table['widths']}, scales {table['scales']}, up to "
                              f"{table['nodes']} loose ends); profile it with `{how}`")
        return value

    cell = sum(n * ms(name) for name, n in cell_parts(genotype).items())
    total = (ms(head_part(colors)) + cells * cell * served_share(genotype, channels)
             + ms(tail_part(scale, colors, upsampler)))
    factor = table.get("calibration", {}).get(str(threads), 1.0)
    return factor * total * math.prod(lr_size) / math.prod(table["reference_lr"])


def cell_arch(genotype: Genotype, channels: int, cells: int, scale: int, colors: int = 3,
              upsampler: str = "conv3") -> dict[str, Any]:
    """The arch spec of a plain standalone cell network (on Y with ``colors=1``)."""
    return {"name": "cell", "scale": scale, "channels": channels, "cells": cells,
            "genotype": genotype.to_dict(),
            **form_overrides({"colors": colors, "upsampler": upsampler})}


def measure_latency(model: nn.Module, lr_size: Sequence[int], threads: int,
                    arch: dict[str, Any] | None = None, warmup: int = 3,
                    repeats: int = 10, clock: str = "wall") -> float:
    """Median milliseconds of ``model`` on an ``lr_size`` input in ONNX Runtime, exported as
    serving exports it (``arch``, if given, decides the inference form as ``export_onnx``
    does; a plain standalone cell network is re-parameterised without one)."""
    graph = export_onnx(model, arch or {"name": "cell"})
    check_clock(clock, [threads])
    return median_ms(session(graph, [(1, colors(arch), *lr_size)], threads), warmup, repeats,
                     clock)


def random_networks(count: int, table: dict[str, Any], cells: Sequence[int], seed: int
                    ) -> list[dict[str, Any]]:
    """``count`` arch specs: uniform genotypes (``RandomController``) of the table's nodes,
    widths and scales drawn among the table's, cells uniform in ``cells`` = [low, high]."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    controller = RandomController(table["nodes"])
    return [cell_arch(controller.sample(generator).genotype, int(rng.choice(table["widths"])),
                      int(rng.integers(cells[0], cells[1] + 1)),
                      int(rng.choice(table["scales"]))) for _ in range(count)]


def validate(table: dict[str, Any], count: int, cells: Sequence[int] = (1, 8), seed: int = 0,
             warmup: int = 3, repeats: int = 10, progress: bool = True,
             lr_size: Sequence[int] | None = None) -> dict[str, Any]:
    """Predicted (uncalibrated) against measured latency of ``count`` random networks on an
    ``lr_size`` input (default: the reference), per thread count: :func:`agreement`."""
    lr = list(lr_size or table["reference_lr"])
    table = {**table, "calibration": {}}  # the plain sums
    archs = random_networks(count, table, cells, seed)
    measured = {}
    for i, arch in enumerate(progress_bar(archs, desc="validating", disable=not progress)):
        graph = export_onnx(build_model(arch).eval(), arch)
        for t in table["threads"]:
            measured[i, t] = median_ms(session(graph, [(1, 3, *lr)], t), warmup, repeats,
                                       table.get("clock", "wall"))
    rows = [{**{k: arch[k] for k in ("channels", "cells", "scale")},
             "genotype": arch["genotype"]["nodes"], "threads": t,
             "predicted_ms": predict_latency(Genotype.from_dict(arch["genotype"]),
                                             arch["channels"], arch["cells"], arch["scale"],
                                             table, t, lr),
             "measured_ms": measured[i, t]}
            for i, arch in enumerate(archs) for t in table["threads"]]
    return {"networks": count, "lr_size": lr,
            "per_threads": {str(t): agreement([r for r in rows if r["threads"] == t])
                            for t in table["threads"]},
            "rows": rows}


def agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """MAPE (%) and Kendall tau of ``predicted_ms`` against ``measured_ms``; the factor that
    calibrates the predictions (the median of measured / predicted) and the MAPE it leaves,
    each network's error taken with the factor of the others (leave-one-out)."""
    predicted = np.array([r["predicted_ms"] for r in rows])
    measured = np.array([r["measured_ms"] for r in rows])
    ratio = measured / predicted
    others = np.array([np.median(np.delete(ratio, i)) for i in range(len(ratio))])
    out: dict[str, Any] = {"mape": _mape(predicted, measured),
                           "calibration": float(np.median(ratio)),
                           "calibrated_mape": _mape(predicted * others, measured)}
    if len(rows) >= 3:
        corr = rank_correlation(predicted, measured, resamples=1000)
        out |= {"kendall_tau": corr["kendall_tau"], "kendall_tau_ci": corr["kendall_tau_ci"]}
    return out


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured) * 100)
