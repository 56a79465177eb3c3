"""An SR-NAS table: cells of one space, each proxy-trained under several seeds, kept as data
so that search strategies can be compared by replay (``nas_sr.search.replay``) instead of
by training.

A table is a JSON-lines file: a header (what was trained, how, and the command that
extends it), then one row per cell: its decisions and nodes, its costs at the retrain
width (a row whose space searches the network's size has its own ``macro``), and for each
proxy seed the per-crop Y-PSNRs on the reward and the final crops.
Rows come from the studies of trial searches (``search.trials``), typically random ones of
``space=wide`` in a few cost bands; the same cell met in two studies merges its seeds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nas_sr.archs.build import build_model
from nas_sr.checkpoint import atomic_path
from nas_sr.deploy.onnx_model import export_onnx
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar
from nas_sr.schema.train import retrain_width
from nas_sr.search.latency import cell_arch, machine, median_ms, predict_latency, session
from nas_sr.search.proxy import ProxySetting
from nas_sr.search.trials import Decisions, finished
from search_spaces.cost import genotype_cost
from search_spaces.genotypes import Genotype, Macro, deepest_first
from search_spaces.network import form_of

log = logging.getLogger(__name__)

KIND, VERSION = "nas-sr table", 1
COSTS = ("params", "mult_adds", "latency_ms")  # a row's closed-form (and budget) costs
# what must agree between the studies of one table: the same cells trained the same way
SAME = ("space", "ops", "nodes", "scale", "width", "recipe", "reward_crops", "final_crops")


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What two table headers disagree on of :data:`SAME` and the space's macros."""
    return [k for k in (*SAME, "macros") if a.get(k) != b.get(k)]


def as_macro_rows(head: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Rows of a table at one size as rows of a table whose macro decision is the size:
    each gets its ``macro``, the size its proxy trained at (the recipe's, else the
    retrain width), and a placeholder decision for it (:func:`number_macros` sets it).
    Where that size is not the width the search priced its rows at, their params and
    Mult-Adds are priced again at it (and a budget latency, priced at the width, dropped).
    Rows that have sizes already (a table joined so before, or a search of
    ``space.macro``) keep them."""
    if head.get("macros"):
        return
    recipe = head["recipe"]
    size = [recipe["channels"], recipe["cells"]] if "channels" in recipe else list(head["width"])
    form = form_of(recipe)
    for row in rows:
        row["macro"], row["decisions"] = size, [*row["decisions"], None]
        if size != list(head["width"]):
            row.pop("latency_ms", None)
            row.update(genotype_cost(row_cell(row), *size, head["scale"], **form))


def number_macros(head: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The sizes of ``rows`` as the table's macro list, deepest first whatever order the
    sources came in, and each row's last decision its index."""
    head["macros"] = [list(m) for m in deepest_first(r["macro"] for r in rows)]
    for row in rows:
        row["decisions"][-1] = head["macros"].index(list(row["macro"]))


def size_free(head: dict[str, Any]) -> dict[str, Any]:
    """A header less its network size (the width, the recipe's channels and cells): what
    sources of several sizes must still agree on."""
    recipe = {k: v for k, v in head["recipe"].items() if k not in ("channels", "cells")}
    return {**head, "width": None, "recipe": recipe}


def table_macros(head: dict[str, Any]) -> tuple[Macro, ...]:
    """A table's (channels, cells) choices; () where its space fixed the network's size."""
    return tuple(tuple(m) for m in head.get("macros", ()))


def row_cell(row: dict[str, Any]) -> Genotype:
    """A table row's cell, with its macro where it has one."""
    return Genotype.from_dict({"nodes": row["genotype"], "macro": row.get("macro")})


def header(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """What a trial search's runs were: its space, recipe and crops, and how to extend it."""
    setting, decisions = ProxySetting.from_config(cfg), Decisions(cfg)
    macros = {"macros": [list(m) for m in decisions.macros]} if decisions.macros else {}
    return {"kind": KIND, "version": VERSION, "space": cfg.get("space", {}).get("name", "enas"),
            "ops": list(decisions.ops), **macros, "nodes": cfg.archs.cell.nodes,
            "scale": cfg.scale, "width": list(retrain_width(cfg)), "recipe": setting.record(),
            "reward_crops": cfg.search.reward_crops, "final_crops": cfg.search.final_crops,
            "data": cfg.data.name,
            "extend": f"nas-sr search resume={run_dir} search.trials.count=N"}


def rows_of(cfg: DictConfig, study: Any) -> list[dict[str, Any]]:
    """One row per finished trial of a trial search's study."""
    decisions = Decisions(cfg)
    rows = []
    for t in finished(study):
        genotype = decisions.genotype(t.params)
        macro = {"macro": list(genotype.macro)} if genotype.macro else {}
        rows.append({"decisions": genotype.to_decisions(decisions.ops, decisions.macros),
                     "genotype": genotype.to_dict()["nodes"], **macro, **t.user_attrs["cost"],
                     "runs": t.user_attrs["runs"]})
    return rows


def merge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the same cell joined: each seed's runs once (the first source's, where two
    trained the same seed of a cell alike yet scored it apart, as nondeterministic kernels
    can: said, not silent)."""
    by_cell: dict[tuple[int, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row["decisions"])
        if key in by_cell:
            runs = by_cell[key]["runs"]
            if clash := [s for s in row["runs"] if s in runs and runs[s] != row["runs"][s]]:
                log.warning("cell %s: proxy seed %s scored otherwise by two sources; the "
                            "first source's scores are kept", row_cell(row), clash[0])
            by_cell[key]["runs"] = {**row["runs"], **runs}
        else:
            by_cell[key] = {**row, "runs": dict(row["runs"])}
    return list(by_cell.values())


def add_latency(head: dict[str, Any], rows: list[dict[str, Any]], threads: list[int],
                lr_size: list[int], table: dict[str, Any] | None, measure: bool,
                progress: bool = False) -> None:
    """Each row's latency on an ``lr_size`` frame at each of ``threads``: predicted by the
    latency ``table`` (``predicted_ms_t{n}``) and, with ``measure``, timed whole in ONNX
    Runtime here (``measured_ms_t{n}``); the header records the machine and the frame."""
    head["latency"] = {"lr_size": lr_size, "threads": threads, "machine": machine(),
                       "predicted_by": table and table.get("machine")}
    for row in progress_bar(rows, desc="latency", disable=not progress):
        genotype = row_cell(row)
        channels, cells = genotype.width(head["width"])
        form = form_of(head["recipe"])
        arch = cell_arch(genotype, channels, cells, head["scale"], **form)
        graph = export_onnx(build_model(arch).eval(), arch) if measure else None
        for t in threads:
            if table is not None:
                row[f"predicted_ms_t{t}"] = predict_latency(genotype, channels, cells,
                                                            head["scale"], table, t, lr_size,
                                                            **form)
            if graph is not None:
                row[f"measured_ms_t{t}"] = median_ms(
                    session(graph, [(1, form["colors"], *lr_size)], t), 3, 10)


def write_table(path: Path, head: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(json.dumps(head) + "\n")
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_table(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A table's header and rows; a file that is not one is refused in one line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: no such table file (nas-sr table writes one)")
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a nas-sr table ({e})") from None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("kind") != KIND:
        raise ConfigError(f"{path}: not a nas-sr table (no '{KIND}' header line)")
    if lines[0].get("version") != VERSION:
        raise ConfigError(f"{path}: table version {lines[0].get('version')}; this nas-sr "
                          f"reads version {VERSION}")
    rows = lines[1:]
    needed = {"decisions", "genotype", "params", "runs"}
    for i, row in enumerate(rows, 2):
        if not isinstance(row, dict) or not needed <= row.keys() or not row["runs"]:
            raise ConfigError(f"{path}, line {i}: a row needs {sorted(needed)} and at least "
                              "one run")
    return lines[0], rows


@dataclass
class Table:
    """A table's rows as arrays: for replay, a trial is a lookup."""

    head: dict[str, Any]
    cells: list[Genotype]
    decisions: np.ndarray  # (cells, decisions)
    costs: dict[str, np.ndarray]
    reward: np.ndarray  # (cells, seeds): each seed's mean PSNR on the reward crops
    final: np.ndarray  # (cells,): the mean over seeds on the final crops

    @classmethod
    def load(cls, path: str | Path, seeds: int = 2) -> Table:
        """The rows with at least ``seeds`` proxy runs (their first ``seeds``)."""
        head, rows = read_table(path)
        rows = [r for r in rows if len(r["runs"]) >= seeds]
        if not rows:
            raise ConfigError(f"{path}: no cell has {seeds} proxy seeds")

        def means(row: dict[str, Any], crops: str) -> list[float]:
            runs = [row["runs"][s] for s in sorted(row["runs"], key=int)[:seeds]]
            return [float(np.mean(r[crops])) for r in runs]

        shared = set.intersection(*(set(r) for r in rows))  # joined sources may differ
        return cls(head, [row_cell(r) for r in rows],
                   np.array([r["decisions"] for r in rows]),
                   {k: np.array([r[k] for r in rows], dtype=float) for k in sorted(shared)
                    if k in COSTS or k.startswith(("predicted_ms", "measured_ms"))},
                   np.array([means(r, "reward") for r in rows]),
                   np.array([np.mean(means(r, "final")) for r in rows]))._checked()

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(self.head["ops"])

    @property
    def macros(self) -> tuple[Macro, ...]:
        return table_macros(self.head)

    def _checked(self) -> Table:
        for g, d in zip(self.cells, self.decisions, strict=True):
            if g.to_decisions(self.ops, self.macros) != list(d):
                raise ConfigError(f"a table row's decisions {list(d)} are not its cell {g}")
        return self

    def where(self, key: str | None, band: list[float] | None) -> Table:
        """The rows whose ``key`` cost lies in ``band`` [low, high] (all rows without one)."""
        if key is None or band is None:
            return self
        if key not in self.costs:
            raise ConfigError(f"the table has no {key} (it has {sorted(self.costs)})")
        keep = (self.costs[key] >= band[0]) & (self.costs[key] <= band[1])
        if keep.sum() < 2:
            raise ConfigError(f"{keep.sum()} cells of the table have {key} in {list(band)}")
        idx = np.flatnonzero(keep)
        return Table(self.head, [self.cells[i] for i in idx], self.decisions[idx],
                     {k: v[idx] for k, v in self.costs.items()}, self.reward[idx],
                     self.final[idx])


def table_config(run_dir: Path) -> DictConfig:
    """A trial search's saved config."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    return OmegaConf.load(config)
