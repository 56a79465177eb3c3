"""The profile job: ``nas-sr profile`` times every part of a cell network in ONNX Runtime on
this CPU and caches the latency table (``nas_sr.search.latency``); with
``profile.validate=K`` it times K random networks whole and reports how well the table
predicts them (mean absolute percentage error, Kendall tau) in ``summary.json``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas_sr.checkpoint import write_json
from nas_sr.errors import ConfigError
from nas_sr.search.latency import (
    check_clock,
    complete,
    default_table_path,
    load_table,
    profile,
    save_table,
    validate,
)

BUSY_LOAD = 1.0  # a load average from which another process likely holds a core being timed


def checked(p: DictConfig) -> dict[str, Any]:
    """The job's options as plain values; ConfigError for the first that cannot work."""
    def whole(key: str, value: Any, least: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"profile.{key}={value!r}: must be a whole number >= {least}")
        return value

    def numbers(key: str, least: int, length: int | None = None) -> list[int]:
        values = p[key]
        if not values or (length and len(values) != length):
            raise ConfigError(f"profile.{key}={values}: give {length or 'one or more'} numbers")
        return [whole(key, v, least) for v in values]

    threads = sorted({whole("threads", t or os.cpu_count() or 1, 1) for t in p.threads or []})
    if not threads:
        raise ConfigError("profile.threads: give one or more thread counts")
    scales = numbers("scales", 2)
    if any(s > 4 for s in scales):
        raise ConfigError(f"profile.scales={scales}: the network's scales are 2, 3 and 4")
    cells = numbers("validate_cells", 1, 2)
    validate_lr = numbers("validate_lr", 1, 2) if p.validate_lr else None
    if cells[0] > cells[1]:
        raise ConfigError(f"profile.validate_cells={cells}: [low, high] with low <= high")
    return {"widths": sorted(set(numbers("widths", 1))), "lr_size": numbers("lr_size", 1, 2),
            "threads": threads, "scales": sorted(set(scales)),
            "nodes": whole("nodes", p.nodes, 1), "warmup": whole("warmup", p.warmup, 0),
            "repeats": whole("repeats", p.repeats, 1), "validate": whole("validate", p.validate, 0),
            "validate_cells": cells, "validate_lr": validate_lr}


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    o = checked(cfg.profile)
    check_clock(cfg.profile.clock, o["threads"])
    path = Path(cfg.profile.table).expanduser() if cfg.profile.table else default_table_path()
    summary: dict[str, Any] = {"table": str(path), "load_before": os.getloadavg()}
    if summary["load_before"][0] >= BUSY_LOAD:  # other work shares the cores being timed
        print(f"profile: the machine is busy (load average {summary['load_before'][0]:.1f} "
              f"on {os.cpu_count()} cores): timings will read high and uneven")
    if cfg.profile.reuse:
        table = load_table(path, every_part=False)  # the parts it lacks are timed next
        if added := complete(table, cfg.logger.progress):  # parts added to the toolkit since
            save_table(table, path)
            print(f"latency table: {len(added)} parts added to {path} ({', '.join(added)})")
        summary["added"] = added
    else:
        start = time.perf_counter()
        table = profile(o["widths"], o["lr_size"], o["threads"], o["scales"], o["nodes"],
                        o["warmup"], o["repeats"], cfg.logger.progress, cfg.profile.clock)
        summary["profile_s"] = time.perf_counter() - start
        save_table(table, path)
        print(f"latency table ({summary['profile_s']:.0f} s): {path}")
    summary["machine"] = table["machine"]
    if o["validate"]:
        start = time.perf_counter()
        summary["validation"] = validate(table, o["validate"], o["validate_cells"], cfg.seed,
                                         o["warmup"], o["repeats"], cfg.logger.progress,
                                         o["validate_lr"])
        summary["validate_s"] = time.perf_counter() - start
        agreements = summary["validation"]["per_threads"]
        for t, agree in agreements.items():
            print(f"{t} thread(s), {o['validate']} random networks: MAPE {agree['mape']:.1f}%, "
                  f"Kendall tau {agree.get('kendall_tau', float('nan')):.3f}; calibrated "
                  f"x{agree['calibration']:.3f}: MAPE {agree['calibrated_mape']:.1f}% "
                  f"(leave-one-out)")
        if not o["validate_lr"]:  # calibrated at the size the table was timed at
            table["calibration"] = {t: agree["calibration"] for t, agree in agreements.items()}
            save_table(table, path)
    summary["load_after"] = os.getloadavg()
    write_json(run_dir / "summary.json", summary)
    print(f"summary: {run_dir / 'summary.json'}")
    return summary
