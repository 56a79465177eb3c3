"""The table job: ``nas-sr table RUN_DIR ... output=FILE`` writes the finished trials of
trial searches (``search.trials.count=K``) as an SR-NAS table (``nas_sr.search.table``),
the same cell of two studies merged. The studies must agree on what they trained (space,
recipe, crops): a table compares like with like."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas_sr.checkpoint import check_writable, write_json
from nas_sr.errors import ConfigError
from nas_sr.search.latency import default_table_path, load_table
from nas_sr.search.table import (
    SAME,
    add_latency,
    header,
    merge,
    rows_of,
    table_config,
    write_table,
)
from nas_sr.search.trials import DATABASE, open_study


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    if not cfg.output:
        raise ConfigError("output= is required: nas-sr table RUN_DIR ... output=table.jsonl")
    if not cfg.runs:
        raise ConfigError("name the trial-search run folders: nas-sr table RUN_DIR ... "
                          "output=FILE")
    out = Path(cfg.output).expanduser()
    check_writable(out.parent)
    head, rows = None, []
    for folder in map(Path, cfg.runs):
        run_cfg = table_config(folder)
        if not (run_cfg.search.get("trials") or {}).get("count"):
            raise ConfigError(f"{folder}: not a trial search (search.trials.count unset)")
        if not run_cfg.search.trials.storage and not (folder / DATABASE).is_file():
            raise ConfigError(f"{folder}: no {DATABASE}; has the search run a trial?")
        this = header(run_cfg, folder)
        if head is None:
            head = {**this, "extend": [this["extend"]]}
        elif differ := [k for k in SAME if this[k] != head[k]]:
            raise ConfigError(f"{folder}: trained otherwise than {cfg.runs[0]} "
                              f"({', '.join(differ)}); a table holds cells trained one way")
        else:
            head["extend"].append(this["extend"])
        rows += rows_of(run_cfg, open_study(run_cfg, folder))
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
    summary = {"output": str(out), "cells": len(rows), "seeds_per_cell": seeds,
               "runs": [str(r) for r in cfg.runs]}
    write_json(run_dir / "summary.json", summary)
    print(f"{len(rows)} cells ({'/'.join(map(str, seeds))} proxy seeds each) written to {out}; "
          f"replay strategies on it: nas-sr replay replay.table={out}")
    return summary
