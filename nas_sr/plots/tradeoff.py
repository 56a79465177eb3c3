"""Figures of cells against each other: shared-weight vs retrained PSNR, PSNR vs cost."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nas_sr.plots.search import new_axes

SOURCE_STYLE = {"uniform": ("tab:blue", "o"), "policy": ("tab:red", "^"),
                "given": ("tab:green", "s")}  # given: rank.cells_file's


def rank_figure(cells: list[dict[str, Any]], result: dict[str, Any], title: str,
                score: str = "shared_psnr",
                label: str = "shared-weight PSNR on the final crops (dB)") -> Figure:
    """Each cell's ``score`` (x: the shared-weight score, or the proxy's) against its
    retrained validation PSNR (y)."""
    fig, ax = new_axes(f"{title}: Kendall tau {result['kendall_tau']:.2f} "
                       f"[{result['kendall_tau_ci'][0]:.2f}, {result['kendall_tau_ci'][1]:.2f}],"
                       f" Spearman rho {result['spearman_rho']:.2f}",
                       label, "retrained validation PSNR (dB)", size=(7.5, 5.0))
    for source, (color, marker) in SOURCE_STYLE.items():
        rows = [c for c in cells if c["source"] == source]
        if rows:
            ax.scatter([c[score] for c in rows], [c["retrained_psnr"] for c in rows],
                       s=[12 + c["params"] / 5e3 for c in rows], c=color, marker=marker,
                       alpha=0.75, label=f"{source} cells (size ~ params)")
    ax.legend(loc="lower right")
    return fig


def pareto_figure(cells: list[dict[str, Any]], fronts: dict[str, list[int]],
                  budget: dict[str, int | None], title: str) -> Figure:
    """Every scored cell's PSNR against each cost of ``fronts`` (params, Mult-Adds, and
    latency where the search had a latency budget), the front and the budget."""
    fig = Figure(figsize=(5.5 * len(fronts), 4.4), dpi=120, layout="constrained")
    psnr = np.array([c["psnr"] for c in cells])
    for k, key in enumerate(fronts):
        ax = fig.add_subplot(1, len(fronts), k + 1)
        cost = np.array([c[key] for c in cells], dtype=float)
        ax.scatter(cost, psnr, s=8, c="0.6", label="scored cells")
        front = sorted(fronts[key], key=lambda i: cost[i])
        ax.plot(cost[front], psnr[front], "o-", c="tab:red", ms=4, label="Pareto front")
        chosen = [i for i, c in enumerate(cells) if c.get("chosen")]
        ax.scatter(cost[chosen], psnr[chosen], marker="*", s=160, c="gold",
                   edgecolors="k", zorder=3, label="chosen cell")
        if budget.get(key):
            ax.axvline(budget[key], c="k", ls="--", lw=1, label="budget")
        ax.set(title=f"{title}: PSNR vs {key}", xlabel=f"{key} (retrain width)",
               ylabel="PSNR on the final shared weights (dB)")
        # the cheapest cells (identity chains) score far below the rest: clip them, but
        # never the chosen cell
        lo = min([np.percentile(psnr, 5), *psnr[chosen]])
        ax.set_ylim(lo - 0.1, psnr.max() + 0.1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    return fig
