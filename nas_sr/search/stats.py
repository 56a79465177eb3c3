"""Rank agreement between two scorings of the same cells, with bootstrap intervals, and
how much of a retrained PSNR is the cell and how much the seed."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def rank_correlation(x: Sequence[float], y: Sequence[float], resamples: int = 2000,
                     seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Kendall tau-b and Spearman rho of ``x`` against ``y``, each with a percentile
    bootstrap interval over the cells (resampled with replacement)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two equal-length 1-D sequences, got {x.shape} and {y.shape}")
    if len(x) < 3:
        raise ValueError(f"need at least 3 cells for a rank correlation, got {len(x)}")
    from scipy import stats  # noqa: PLC0415  (SciPy's statistics cost every command 0.6 s)

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


def expected_max_normal(k: int) -> float:
    """E[max of ``k`` independent standard normals]: the integral of x times the max's
    density ``k phi(x) Phi(x)^(k-1)``, on a grid fine enough for 1e-6."""
    from scipy import stats  # noqa: PLC0415

    x = np.linspace(-10, 10, 20001)
    density = k * stats.norm.pdf(x) * stats.norm.cdf(x) ** (k - 1)
    return float(np.sum(x * density) * (x[1] - x[0]))


def variance_components(psnr: Sequence[Sequence[float]], pool: int = 480,
                        resamples: int = 2000, seed: int = 0,
                        level: float = 0.95) -> dict[str, Any]:
    """One-way random-effects split of retrained PSNRs ``psnr[cell][seed]``.

    ``within_std``: the spread of one cell retrained under other seeds (the judge's
    noise); ``between_std``: the spread of the cells' true means (the variance of the
    cell means less the share of seed noise left in a mean of ``seeds`` retrains), with a
    percentile bootstrap interval over the cells. ``oracle_gain``: what a perfect ranker
    of ``pool`` uniform cells gains over a random pick, were the true means normal;
    ``random_pick_std``: the spread of one random cell retrained once, the seed-to-seed
    spread of a random search whose reward is blind.
    """
    psnr = np.asarray(psnr, dtype=float)
    if psnr.ndim != 2 or psnr.shape[0] < 2 or psnr.shape[1] < 2:
        raise ValueError(f"need PSNRs of >= 2 cells x >= 2 seeds, got shape {psnr.shape}")
    seeds = psnr.shape[1]

    def split(rows: np.ndarray) -> tuple[float, float]:
        within = float(rows.var(axis=1, ddof=1).mean())
        return within, max(0.0, float(rows.mean(axis=1).var(ddof=1)) - within / seeds)

    within, between = split(psnr)
    draws = np.random.default_rng(seed).integers(len(psnr), size=(resamples, len(psnr)))
    boot = np.sqrt([split(psnr[i])[1] for i in draws])
    tail = 100 * (1 - level) / 2
    ci = [float(v) for v in np.percentile(boot, [tail, 100 - tail])]
    best = expected_max_normal(pool)
    return {"cells": len(psnr), "seeds": seeds, "within_std": within ** 0.5,
            "between_std": between ** 0.5, "between_std_ci": ci,
            "random_pick_std": (within + between) ** 0.5, "pool": pool,
            "oracle_gain": between ** 0.5 * best, "oracle_gain_ci": [v * best for v in ci]}


def reliability(variance: dict[str, Any], runs: int = 1) -> float:
    """The share of a ``runs``-seed mean's variance that is the cell, not the seed, from a
    ``variance_components`` split: its squared correlation with the cell's true mean."""
    between, within = variance["between_std"] ** 2, variance["within_std"] ** 2
    return between / (between + within / runs)


def pearson_from_tau(tau: float) -> float:
    """The Pearson correlation a bivariate normal with Kendall ``tau`` has (Greiner's
    relation, sin(pi tau / 2)): turns a measured rank agreement into a score model."""
    return float(np.sin(np.pi * tau / 2))


def selection_gain(between_std: float, pool: int, top: int, prescreen_r: float,
                   final_r: float, trials: int = 10000, seed: int = 0) -> dict[str, float]:
    """What a search's two-stage choice gains over a random pick, in the judge's dB.

    ``pool`` cells have true means normal with ``between_std``; a prescreen score (the
    shared weights) correlating ``prescreen_r`` with the true mean keeps the ``top``; a
    final score (the proxy) correlating ``final_r`` picks one of them. Monte Carlo over
    ``trials`` searches with normal scores; returns the mean and std of the chosen cell's
    true mean (0 is a random pick) and the ``oracle`` a perfect ranker would reach."""
    if not 1 <= top <= pool:
        raise ValueError(f"need 1 <= top <= pool, got top={top}, pool={pool}")
    for r in (prescreen_r, final_r):
        if not -1 <= r <= 1:
            raise ValueError(f"a correlation is in [-1, 1], got {r}")
    rng = np.random.default_rng(seed)

    def noisy(true: np.ndarray, r: float) -> np.ndarray:
        return r * true + (1 - r * r) ** 0.5 * rng.standard_normal(true.shape)

    true = rng.standard_normal((trials, pool))
    kept = np.take_along_axis(true, np.argsort(-noisy(true, prescreen_r), axis=1)[:, :top], 1)
    chosen = kept[np.arange(trials), np.argmax(noisy(kept, final_r), axis=1)] * between_std
    return {"gain": float(chosen.mean()), "gain_std": float(chosen.std(ddof=1)),
            "oracle": between_std * expected_max_normal(pool)}


def hypervolume(costs: Sequence[float], psnrs: Sequence[float], ref_cost: float,
                ref_psnr: float) -> float:
    """The area that the (cost, PSNR) points dominate inside the box a reference point
    closes: cost below ``ref_cost``, PSNR above ``ref_psnr``. Costs are lower-is-better,
    PSNR higher-is-better; the larger the area, the better the front. In 2-D it is exact:
    points by rising cost, each adding the strip of PSNR it gains over the ones before."""
    area, best = 0.0, ref_psnr
    for cost, psnr in sorted(zip(costs, psnrs, strict=True)):
        if cost <= ref_cost and psnr > best:
            area += (ref_cost - cost) * (psnr - best)
            best = psnr
    return area


def group_means(groups: dict[str, Sequence[float]], resamples: int = 2000, seed: int = 0,
                level: float = 0.95) -> dict[str, Any]:
    """Each group's mean with a bootstrap interval over its members, and the difference
    between the best and the worst group's means with its interval (both groups resampled
    together, which group is best fixed by the observed means)."""
    if len(groups) < 2 or any(len(v) < 2 for v in groups.values()):
        raise ValueError("need at least two groups of at least two values each")
    rng = np.random.default_rng(seed)
    tail = 100 * (1 - level) / 2
    values = {k: np.asarray(v, dtype=float) for k, v in groups.items()}
    boot = {k: v[rng.integers(len(v), size=(resamples, len(v)))].mean(1)
            for k, v in values.items()}
    means = {k: float(v.mean()) for k, v in values.items()}
    best, worst = max(means, key=means.get), min(means, key=means.get)
    return {"groups": {k: {"n": len(values[k]), "mean": means[k],
                           "ci": [float(x) for x in np.percentile(boot[k], [tail, 100 - tail])]}
                       for k in values},
            "best": best, "worst": worst, "difference": means[best] - means[worst],
            "difference_ci": [float(x) for x in
                              np.percentile(boot[best] - boot[worst], [tail, 100 - tail])]}
