"""Figures of search runs: how one went (reward, entropy, loss, op choices), the cell it
found, and several runs' rewards overlaid. The plot job and the search itself draw them.

Figures are built on matplotlib's Agg canvas directly (no pyplot): no display, no global
figure state, nothing to close. ``run_figures`` returns them (tests read their axes);
``plot_run`` writes them as PNGs into ``RUN_DIR/plots/``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from omegaconf import DictConfig, OmegaConf

from nas_sr.errors import ConfigError
from nas_sr.runs.log import read_metrics
from search_spaces.genotypes import (
    NUM_CELL_INPUTS,
    Genotype,
    choices_per_decision,
    load_genotype,
)
from search_spaces.operations import OP_NAMES, REGISTRY

DPI = 120
STEP, REWARD = "controller step", "reward (dB)"
BANDS = ("minmax", "std")


class PlotError(ConfigError):
    """Nothing (valid) to plot: no run folders given, or an unreadable metrics log."""


# --- reading a run ---------------------------------------------------------------------
@dataclass
class SearchLog:
    """The parts of a search run the plots use."""

    run_dir: Path
    controller: str  # controller type (enas, random, ...): the overlay's grouping
    steps: list[dict[str, Any]]  # controller records, in step order
    epochs: list[dict[str, Any]]
    ops: tuple[str, ...] = OP_NAMES  # the space's, in the controller's order

    @property
    def name(self) -> str:
        return self.run_dir.name

    def column(self, key: str) -> np.ndarray:
        """One field of every controller step; NaN where a step has none (no baseline
        during the warm-up)."""
        try:
            return np.array([r.get(key, np.nan) for r in self.steps], dtype=float)
        except (TypeError, ValueError):  # a log another tool wrote, or edited by hand
            raise PlotError(f"{self.run_dir / 'metrics.jsonl'}: {key!r} is not a number in "
                            f"every controller record") from None


def run_config(run_dir: Path) -> DictConfig:
    """The run's ``config.yaml`` (empty where the run has none)."""
    config = run_dir / "config.yaml"
    return OmegaConf.load(config) if config.is_file() else OmegaConf.create()


def controller_type(run_dir: Path, config: DictConfig | None = None) -> str:
    config = run_config(run_dir) if config is None else config
    name = OmegaConf.select(config, "controller.name")
    if name:
        return str(name)
    summary = run_dir / "summary.json"
    if summary.is_file():
        return str(json.loads(summary.read_text()).get("controller", "unknown"))
    return "unknown"


def space_of(config: DictConfig) -> tuple[str, ...]:
    """The ops of the run's space (a run from before spaces were a choice: the default)."""
    ops = OmegaConf.select(config, "space.ops")
    return tuple(ops) if ops else OP_NAMES


def load_run(run_dir: str | Path) -> SearchLog:
    run_dir = Path(run_dir).expanduser().resolve()
    records, config = read_metrics(run_dir), run_config(run_dir)  # config.yaml read once
    return SearchLog(
        run_dir, controller_type(run_dir, config),
        sorted((r for r in records if r["kind"] == "controller"),
               key=lambda r: r["controller_step"]),
        [r for r in records if r["kind"] == "epoch"],
        space_of(config),
    )


# --- helpers ---------------------------------------------------------------------------
def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average what exists so far (no look-ahead)."""
    csum = np.concatenate([[0.0], np.cumsum(values)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    return (csum[end] - csum[start]) / (end - start)


def new_axes(title: str, xlabel: str, ylabel: str,
          size: tuple[float, float] = (7.5, 4.2)) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the non-interactive backend, explicitly
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps and epochs are counts
    ax.grid(alpha=0.3)
    return fig, ax


def _robust_ylim(ax: Axes, values: np.ndarray) -> None:
    """Keep the first few near-random rewards from squashing the rest of the curve."""
    lo, hi = np.percentile(values, [2, 100])
    pad = 0.08 * max(hi - lo, 0.1)
    ax.set_ylim(lo - pad, hi + pad)


# --- one run ---------------------------------------------------------------------------
def reward_figure(run: SearchLog, window: int) -> Figure:
    fig, ax = new_axes(f"Controller reward: {run.name} ({run.controller})", STEP, REWARD)
    x, reward = run.column("controller_step"), run.column("reward")
    ax.plot(x, reward, ".", ms=3, alpha=0.35, color="tab:blue",
            label="reward (validation PSNR, shared weights)")
    ax.plot(x, run.column("baseline"), color="tab:orange", lw=1.3, label="EMA baseline")
    ax.plot(x, smooth(reward, window), color="tab:blue", lw=2,
            label=f"moving average ({window} steps)")
    _robust_ylim(ax, reward)
    ax.legend(loc="lower right")
    return fig


def entropy_figure(run: SearchLog) -> Figure:
    fig, ax = new_axes(f"Policy entropy: {run.name} ({run.controller})", STEP,
                    "entropy (nats, sum over decisions)")
    ax.plot(run.column("controller_step"), run.column("entropy"), lw=1.2, color="tab:purple",
            label="entropy of the sampled decisions")
    nodes = len(run.steps[0]["genotype"])
    ax.axhline(sum(np.log(choices_per_decision(nodes, run.ops))), color="gray", ls="--", lw=1,
               label="uniform policy (maximum)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower left")
    return fig


def best_reward_figure(run: SearchLog) -> Figure:
    fig, ax = new_axes(f"Best reward so far: {run.name} ({run.controller})", STEP, REWARD)
    x, best = run.column("controller_step"), np.maximum.accumulate(run.column("reward"))
    ax.step(x, best, where="post", color="tab:green", lw=2, label="best reward so far")
    improved = np.concatenate([[True], best[1:] > best[:-1]])
    ax.plot(x[improved], best[improved], "o", ms=3, color="tab:green")
    ax.annotate(f"{best[-1]:.2f} dB", (x[-1], best[-1]), textcoords="offset points",
                xytext=(-4, 6), ha="right")
    _robust_ylim(ax, best)
    ax.legend(loc="lower right")
    return fig


def loss_figure(run: SearchLog) -> Figure:
    fig, ax = new_axes(f"Supernet training loss: {run.name}", "epoch", "L1 loss (shared weights)")
    epochs = [e["epoch"] for e in run.epochs]
    ax.plot(epochs, [e["loss"] for e in run.epochs], "o-", ms=4, color="tab:red",
            label="mean loss over the epoch")
    ax.legend(loc="upper right")
    return fig


def op_shares(run: SearchLog, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Window edges (in steps) and each op's share of the sampled ops per window."""
    ops = [[op for node in r["genotype"] for op in node[1::2]] for r in run.steps]
    edges = np.append(np.arange(0, len(ops), window), len(ops))
    shares = np.array([
        [c[op] / sum(c.values()) for op in run.ops]
        for c in (Counter(o for cell in ops[a:b] for o in cell)
                  for a, b in zip(edges[:-1], edges[1:], strict=True))
    ])
    return edges, shares


def op_frequency_figure(run: SearchLog, window: int) -> Figure:
    fig, ax = new_axes(f"Ops in sampled cells: {run.name} ({run.controller})", STEP,
                    "share of the sampled ops (%)", size=(8.5, 4.2))
    edges, shares = op_shares(run, window)
    # piecewise-constant areas: each window's shares hold over its whole span of steps
    x = np.repeat(edges, 2)[1:-1]
    ax.stackplot(x, 100 * np.repeat(shares, 2, axis=0).T, labels=run.ops,
                 colors=[REGISTRY[o].color for o in run.ops], alpha=0.85)
    for level in 100 * np.arange(1, len(run.ops)) / len(run.ops):  # a uniform choice's
        ax.axhline(level, color="white", ls=":", lw=1)
    ax.set(xlim=(edges[0], edges[-1]), ylim=(0, 100))
    ax.set_title(f"{ax.get_title()}\nshare per window of {window} steps; "
                 "dotted: a uniform choice", fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="op")
    return fig


def best_cell(run: SearchLog) -> tuple[Genotype, str] | None:
    """The chosen cell (genotype.json) or, before the search ends, the best one sampled."""
    path = run.run_dir / "genotype.json"
    if path.is_file():
        summary = run.run_dir / "summary.json"
        score = (f", {json.loads(summary.read_text())['val_psnr']:.2f} dB on the final crops"
                 if summary.is_file() else "")
        return load_genotype(path), f"chosen cell (genotype.json{score})"
    if not run.steps:
        return None
    top = max(run.steps, key=lambda r: r["reward"])
    return (Genotype.from_dict({"nodes": top["genotype"]}),
            f"highest-reward sample so far: {top['reward']:.2f} dB at step "
            f"{top['controller_step']}")


def _cell_layout(genotype: Genotype) -> dict[int | str, tuple[float, float]]:
    """Columns by longest path from the cell inputs (so every edge points right)."""
    column = [0] * NUM_CELL_INPUTS
    for node in genotype.nodes:
        column.append(1 + max(column[node.in1], column[node.in2]))
    members = defaultdict(list)
    for state, c in enumerate(column):
        members[c].append(state)
    pos: dict[int | str, tuple[float, float]] = {}
    for c, states in members.items():
        for row, state in enumerate(states):
            pos[state] = (2.4 * c, 2.0 * ((len(states) - 1) / 2 - row))
    pos["out"] = (2.4 * (max(column) + 1), 0.0)
    return pos


def _arc(p: np.ndarray, q: np.ndarray, rad: float, t: np.ndarray | float) -> np.ndarray:
    """Points at ``t`` on matplotlib's arc3 curve p -> q (in data units: equal aspect)."""
    t = np.asarray(t)[..., None]
    ctrl = (p + q) / 2 + rad * np.array([q[1] - p[1], p[0] - q[0]])
    return (1 - t) ** 2 * p + 2 * t * (1 - t) * ctrl + t**2 * q


def _bend(p: np.ndarray, q: np.ndarray, others: list[np.ndarray], taken: set[float],
          clearance: float) -> float:
    """An arc3 bend for p -> q that keeps clear of other nodes and of a parallel edge."""
    def distance(rad: float) -> float:
        curve = _arc(p, q, rad, np.linspace(0.15, 0.85, 15))
        return min((np.linalg.norm(curve - o, axis=1).min() for o in others), default=np.inf)

    candidates = [r for r in (0.0, 0.3, -0.3, 0.5, -0.5) if r not in taken]
    clear = [r for r in candidates if distance(r) > clearance]
    return clear[0] if clear else max(candidates, key=distance)


def _cell_edges(genotype: Genotype, pos: dict[int | str, tuple[float, float]],
                clearance: float) -> list[tuple[int | str, int | str, float, str | None]]:
    """(source, target, arc3 bend, op) per edge; op None for a loose end into the output."""
    points = {s: np.array(p) for s, p in pos.items()}
    # a node that reads one state twice gets two arcs bent either way, not one straight
    pairs = Counter((i, j + NUM_CELL_INPUTS) for j, n in enumerate(genotype.nodes)
                    for i in (n.in1, n.in2))
    taken = {pair: {0.0} if count > 1 else set() for pair, count in pairs.items()}
    wires: list[tuple[int | str, int | str, str | None]] = [
        (src, j + NUM_CELL_INPUTS, op) for j, n in enumerate(genotype.nodes)
        for src, op in ((n.in1, n.op1), (n.in2, n.op2))]
    wires += [(j + NUM_CELL_INPUTS, "out", None) for j in genotype.loose_ends()]
    edges = []
    for src, dst, op in wires:
        others = [o for s, o in points.items() if s not in (src, dst)]
        used = taken.setdefault((src, dst), set())
        rad = _bend(points[src], points[dst], others, used, clearance)
        used.add(rad)
        edges.append((src, dst, rad, op))
    return edges


def cell_figure(genotype: Genotype, title: str) -> Figure:
    radius = 0.48
    pos = _cell_layout(genotype)
    edges = _cell_edges(genotype, pos, clearance=1.5 * radius)
    points = {s: np.array(p) for s, p in pos.items()}
    # the drawing's extent includes the arcs, which may swing past the outer nodes
    drawn = np.vstack([*points.values(), *(
        _arc(points[src], points[dst], rad, np.linspace(0, 1, 21)) for src, dst, rad, _ in edges)])
    (x0, y0), (x1, y1) = drawn.min(axis=0) - 0.6, drawn.max(axis=0) + 0.6
    fig = Figure(figsize=(0.3 + 0.75 * (x1 - x0), 1.1 + 0.75 * (y1 - y0)), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)  # not the axes' title: an equal-aspect axes would clip it
    ax = fig.add_subplot()
    ax.set(xlim=(x0, x1), ylim=(y0, y1), aspect="equal")
    ax.axis("off")

    names = {0: "h(k-2)", 1: "h(k-1)", "out": "h(k)",
             **{j + NUM_CELL_INPUTS: f"n{j}" for j in range(genotype.num_nodes)}}
    circles = {}
    for state, (x, y) in pos.items():
        is_input = state in (0, 1)
        face = "#dde8f5" if is_input else "#fbe3c8" if state == "out" else "white"
        circles[state] = ax.add_patch(Circle((x, y), radius, fc=face, ec="black", zorder=3))
        ax.text(x, y, names[state], ha="center", va="center",
                fontsize=8 if is_input or state == "out" else 10, zorder=4)
    for src, dst, rad, op in edges:
        color = "black" if op is None else REGISTRY[op].color
        ax.annotate("", xy=pos[dst], xytext=pos[src], zorder=2, arrowprops=dict(
            arrowstyle="-|>", mutation_scale=12, color=color, lw=1.6, ls="--" if op is None
            else "-", patchA=circles[src], patchB=circles[dst],
            connectionstyle=f"arc3,rad={rad}"))
        if op is not None:  # past the middle, where edges leaving one node have drawn apart
            ax.text(*_arc(points[src], points[dst], rad, 0.6), REGISTRY[op].label, ha="center",
                    va="center", fontsize=7.5, color=color, zorder=5,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))

    handles = [Line2D([], [], color=REGISTRY[o].color, lw=2, label=o)
               for o in REGISTRY if o in genotype.ops()]
    handles.append(Line2D([], [], color="black", ls="--", lw=1.5,
                          label="loose end: h(k) = h(k-1) + 1x1 conv(concat)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def run_figures(run: SearchLog, smooth_window: int = 20,
                op_window: int | None = None) -> dict[str, Figure]:
    """Every figure the run's log supports so far, by file stem.

    A search that has not finished an epoch (or a controller step) yet just has fewer.
    ``op_window`` defaults to one epoch of controller steps.
    """
    figures = {}
    if run.steps:
        window = op_window or max(Counter(r["epoch"] for r in run.steps).values())
        figures |= {
            "reward": reward_figure(run, smooth_window),
            "entropy": entropy_figure(run),
            "best_reward": best_reward_figure(run),
            "op_frequencies": op_frequency_figure(run, window),
        }
    if any("loss" in e for e in run.epochs):  # a proxy-reward search trains no supernet
        figures["loss"] = loss_figure(run)
    cell = best_cell(run)
    if cell is not None:
        figures["best_cell"] = cell_figure(cell[0], f"Best cell: {run.name}\n{cell[1]}")
    return figures


def save(figures: dict[str, Figure], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in figures.items():
        paths.append(folder / f"{stem}.png")
        fig.savefig(paths[-1], dpi=DPI)
    return paths


def plot_run(run_dir: str | Path, smooth_window: int = 20,
             op_window: int | None = None) -> list[Path]:
    """Write the run's plots to ``RUN_DIR/plots/``; safe on a search that is still running."""
    run = load_run(run_dir)
    return save(run_figures(run, smooth_window, op_window), run.run_dir / "plots")


# --- several runs ----------------------------------------------------------------------
def overlay_figure(runs: list[SearchLog], smooth_window: int = 20,
                   band: str = "minmax") -> Figure:
    """Smoothed reward per controller type: mean and spread over runs.

    Runs of unequal length: at each step the mean and band cover the runs that reached
    it, so a short run drops out instead of cutting the others short; a dotted line
    marks where each shorter run ends.
    """
    if band not in BANDS:
        raise PlotError(f"band={band!r}: choose one of {BANDS}")
    fig, ax = new_axes(f"Smoothed reward by controller ({smooth_window}-step moving average)",
                    STEP, REWARD, size=(8, 4.5))
    groups: dict[str, list[SearchLog]] = defaultdict(list)
    for run in runs:
        groups[run.controller].append(run)
    lows = []
    for i, (name, members) in enumerate(sorted(groups.items())):
        color = f"C{i}"  # matplotlib's colour cycle
        length = max(int(r.column("controller_step").max()) for r in members)
        curves = np.full((len(members), length), np.nan)
        for row, run in zip(curves, members, strict=True):
            row[run.column("controller_step").astype(int) - 1] = smooth(
                run.column("reward"), smooth_window)
        x = np.arange(1, length + 1)
        mean = np.nanmean(curves, axis=0)
        if band == "std":
            spread = np.nanstd(curves, axis=0)
            lo, hi, what = mean - spread, mean + spread, "±1 std"
        else:
            lo, hi, what = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0), "min-max"
        n = len(members)
        ax.plot(x, mean, color=color, lw=2, label=f"{name}: mean of {n} run{'s' * (n > 1)}")
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0, label=f"{name}: {what}")
        for run in members:
            end = int(run.column("controller_step").max())
            if end < length:
                ax.axvline(end, color=color, ls=":", lw=1)
        lows.append(lo)
    _robust_ylim(ax, np.concatenate(lows))
    ax.legend(loc="best", title="mean over the runs that reached each step", fontsize=8,
              title_fontsize=8)
    return fig


# --- wandb -----------------------------------------------------------------------------
def log_to_wandb(wandb_run: Any, paths: list[Path], prefix: str = "plots") -> None:
    """Log the PNGs as ``wandb.Image`` under ``prefix/<stem>`` (the scalar curves are
    already in wandb: RunLog mirrors every record to it)."""
    import wandb  # optional at run time: only needed when wandb logging is on

    wandb_run.log({f"{prefix}/{p.stem}": wandb.Image(str(p)) for p in paths})
