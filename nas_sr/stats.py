"""Rank agreement between two scorings of the same cells, with bootstrap intervals."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def rank_correlation(x: Sequence[float], y: Sequence[float], resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Kendall tau-b and Spearman rho of ``x`` against ``y``, each with a percentile
    bootstrap interval over the cells (resampled with replacement)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two equal-length 1-D sequences, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError(f"need at least 3 cells for a rank correlation, got {len(x)}")
    measures = {"kendall_tau": stats.kendalltau, "spearman_rho": stats.spearmanr}
    out: dict[str, Any] = {"n": len(x)}
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(x), size=(resamples, len(x)))
    tail = 100 * (1 - level) / 2
    for name, fn in measures.items():
        out[name] = float(fn(x, y).statistic)
        with warnings.catch_warnings():  # a resample of tied values has no ranking: NaN
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            boot = np.array([fn(x[i], y[i]).statistic for i in draws])
        boot = boot[np.isfinite(boot)]
        out[f"{name}_ci"] = [float(v) for v in np.percentile(boot, [tail, 100 - tail])]
    return out
