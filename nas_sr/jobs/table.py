"""The table job: ``nas-sr table RUN_DIR|TABLE ... output=FILE`` writes the finished trials
of trial searches (``search.trials.count=K``) and the rows of tables already written (its
shards) as one SR-NAS table (``nas_sr.search.table``), the same cell met twice merged. The
sources must agree on what they trained (space, recipe, crops): a table compares like with
like."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas_sr.checkpoint import check_writable, write_json
from nas_sr.errors import ConfigError
from nas_sr.search.latency import default_table_path, load_table
from nas_sr.search.stats import group_means
from nas_sr.search.table import (
    SAME,
    Table,
    add_latency,
    as_macro_rows,
    differences,
    header,
    merge,
    number_macros,
    read_table,
    rows_of,
    size_free,
    table_config,
    write_table,
)
from nas_sr.search.trials import DATABASE, open_study

LATENCY = ("predicted_ms", "measured_ms")  # a row's per-machine columns, made anew


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    if not cfg.output:
        raise ConfigError("output= is required: nas-sr table RUN_DIR ... output=table.jsonl")
    if not cfg.runs:
        raise ConfigError("name the trial-search run folders or table files to join: "
                          "nas-sr table RUN_DIR|TABLE ... output=FILE")
    out = Path(cfg.output).expanduser()
    check_writable(out.parent)
    head, rows = None, []
    for source in map(Path, cfg.runs):
        this, found = _shard(source) if source.is_file() else _study(source)
        if cfg.sizes_as_macro:  # each source's size becomes a row's macro decision
            as_macro_rows(this, found)
            this = {**size_free(this), "macros": None}
        if head is None:
            head = {**this, "extend": []}
        elif differ := differences(this, head):
            hint = ("; sources of other sizes join with sizes_as_macro=true"
                    if not differences(size_free(this), size_free(head)) else "")
            raise ConfigError(f"{source}: trained otherwise than {cfg.runs[0]} "
                              f"({', '.join(differ)}); a table holds cells trained one way"
                              f"{hint}")
        head["extend"] += [e for e in _listed(this["extend"]) if e not in head["extend"]]
        rows += found
    if cfg.sizes_as_macro:
        number_macros(head, rows)
    rows = merge(rows)
    if cfg.latency_threads:
        path = Path(cfg.latency_table).expanduser() if cfg.latency_table \
            else default_table_path()
        table = load_table(path) if cfg.latency_table or path.is_file() else None
        if table is None and not cfg.measure:
            raise ConfigError(f"latency_threads={list(cfg.latency_threads)}: no latency "
                              f"table at {path} (nas-sr profile makes one) and measure=false")
        add_latency(head, rows, list(cfg.latency_threads), list(cfg.latency_lr), table,
                    cfg.measure, cfg.logger.progress)
    write_table(out, head, rows)
    seeds = sorted({len(r["runs"]) for r in rows})
    if head.get("macros") and rows:
        print(size_summary(out, seeds[0]))
    summary = {"output": str(out), "cells": len(rows), "seeds_per_cell": seeds,
               "runs": [str(r) for r in cfg.runs]}
    write_json(run_dir / "summary.json", summary)
    print(f"{len(rows)} cells ({'/'.join(map(str, seeds))} proxy seeds each) written to {out}; "
          f"replay strategies on it: nas-sr replay replay.table={out}")
    return summary


def _study(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A trial search's header and the rows of its finished trials."""
    run_cfg = table_config(folder)
    if not (run_cfg.search.get("trials") or {}).get("count"):
        raise ConfigError(f"{folder}: not a trial search (search.trials.count unset)")
    if not run_cfg.search.trials.storage and not (folder / DATABASE).is_file():
        raise ConfigError(f"{folder}: no {DATABASE}; has the search run a trial?")
    return header(run_cfg, folder), rows_of(run_cfg, open_study(run_cfg, folder))


def _shard(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A table file written before: its header (less what the new table measures again)
    and its rows (less their latency, which is a property of the machine timing it)."""
    head, rows = read_table(path)
    if differ := [k for k in SAME if k not in head]:
        raise ConfigError(f"{path}: its header lacks {', '.join(differ)}")
    head = {k: v for k, v in head.items() if k != "latency"}
    return head, [{k: v for k, v in r.items() if not k.startswith(LATENCY)} for r in rows]


def size_summary(path: Path, seeds: int) -> str:
    """Each network size's mean PSNR over its cells (``seeds`` seeds, final crops), with
    95% intervals, and the best size's lead over the worst's."""
    table = Table.load(path, seeds)
    groups: dict[str, list[float]] = {}
    for cell, psnr in zip(table.cells, table.final, strict=True):
        groups.setdefault("{} x {}".format(*cell.macro), []).append(float(psnr))
    if len(groups) < 2 or min(map(len, groups.values())) < 2:
        return "(too few cells a size to compare the sizes)"
    g = group_means(groups)
    lines = [f"| C x N | cells | mean proxy PSNR, final crops, {seeds} seed(s) (dB) | 95% CI |",
             "|---|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['mean']:.3f} | [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}] |"
              for k, v in g["groups"].items()]
    low, high = g["difference_ci"]
    return "\n".join(lines) + (f"\n{g['best']} leads {g['worst']} by {g['difference']:.3f} dB"
                               f" (95% CI [{low:.3f}, {high:.3f}])")


def _listed(extend: str | list[str]) -> list[str]:
    return [extend] if isinstance(extend, str) else list(extend)
