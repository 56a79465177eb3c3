"""What every benchmark shares: a median timer, a result row, the machine's name."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

# the untrained cell the benchmarks time where no trained model is at hand
BENCH_CELL = {"name": "cell", "scale": 2, "channels": 32, "cells": 6, "nodes": 5,
              "genotype": {"nodes": [[1, "sep_conv_3x3", 0, "conv_3x3"]] * 5}}


@dataclass
class Row:
    bench: str
    what: str
    value: float
    unit: str
    note: str = ""


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                warmup: int = 2) -> dict[str, float]:
    """Median time of each of ``fns``, timed in alternation so that drift in the
    machine's load hits every contender alike (these machines are noisy)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
