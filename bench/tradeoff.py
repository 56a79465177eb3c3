"""PSNR against parameters and against CPU latency, for every model evaluated.

    python -m bench.tradeoff [LABEL=]EVAL_RUN ... [--extra POINTS.json ...] [--out DIR]

Each ``EVAL_RUN`` is a folder written by ``nas-sr evaluate`` (its ``results.json`` gives
the model, its size and its Set5/Set14 PSNR); the model is loaded again and timed here.
``--extra`` adds models evaluated elsewhere: JSON files, each a list of ``{"label", "arch", "Set5",
"Set14"}`` (``"published": true`` for a paper's figures: hollow markers), timed as an
untrained model of that arch (dense latency does not depend on the weights).
Latency: median of interleaved runs on one random LR image, every model eager (an exported
one rebuilt from its arch) in the form nas-sr runs it (``nas_sr.deploy.form``), masks folded,
channels_last, the threads torch is given (``OMP_NUM_THREADS``). Pruned models are placed
at their nonzero parameters, and timed as they run: dense kernels multiply the zeros too.
Writes ``tradeoff_params.png`` and ``tradeoff_latency.png`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from torch import nn

from bench.timing import interleaved, machine
from nas_sr.archs.build import build_model
from nas_sr.archs.complexity import complexity, human
from nas_sr.archs.lighten import fold_masks, folded
from nas_sr.deploy.form import for_inference
from nas_sr.deploy.predictor import load_predictor, load_source
from nas_sr.plots.search import new_axes

FAMILY_COLORS = {"bicubic": "tab:gray", "srcnn": "tab:blue", "fsrcnn": "tab:cyan",
                 "vdsr": "tab:purple",
                 "edsr_baseline": "tab:brown", "msrn": "tab:red", "smsrn": "tab:red",
                 "cell": "tab:green"}


@dataclass
class Point:
    label: str
    family: str
    params: int | None  # nonzero parameters; None for bicubic
    mult_adds: int | None
    set5: float
    set14: float
    model: nn.Module
    latency_ms: float = float("nan")
    published: bool = False  # the paper's PSNR (hollow marker), not trained here


def describe(arch: dict[str, Any] | None) -> str:
    """'srcnn, pruned (std, 4 rounds)' from an arch spec; 'bicubic' for none."""
    if not arch:
        return "bicubic"
    parts = []
    if arch.get("separable"):
        parts.append("separable")
    if arch.get("shrink"):
        parts.append("channels cut")
    if p := arch.get("prune"):
        parts.append(f"pruned ({p['criterion']}, {p['rounds']} rounds)")
    return arch["name"] + (f", {', '.join(parts)}" if parts else "")


def from_run(spec: str) -> Point:
    label, _, folder = spec.rpartition("=")
    results = json.loads((Path(folder) / "results.json").read_text())
    arch, scale = results["arch"], results["scale"]
    # every model timed eager (an exported one rebuilt from its arch), so they compare,
    # in the form nas-sr runs it (a cell re-parameterised)
    model = (for_inference(fold_masks(load_source(Path(results["model"]))[0]), folded(arch))
             if arch else load_predictor("bicubic", scale).model)
    return Point(label or describe(arch), arch["name"] if arch else "bicubic",
                 results.get("nonzero_params") or results["params"], results["mult_adds"],
                 results["sets"]["Set5"]["psnr"], results["sets"]["Set14"]["psnr"],
                 model.to(memory_format=torch.channels_last))


def from_extra(entry: dict[str, Any]) -> Point:
    model = build_model(entry["arch"]).eval()
    sizes = complexity(model, int(entry["arch"]["scale"]))
    return Point(entry["label"], entry["arch"]["name"], sizes["params"],  # untrained: dense
                 sizes["mult_adds"], entry["Set5"], entry["Set14"],
                 for_inference(model, entry["arch"]).to(memory_format=torch.channels_last),
                 published=entry.get("published", False))


def time_all(points: list[Point], lq_size: int, repeats: int) -> None:
    lq = torch.rand(1, 3, lq_size, lq_size).contiguous(memory_format=torch.channels_last)
    fns = {p.label: (lambda m=p.model: m(lq)) for p in points}
    with torch.inference_mode():
        for label, seconds in interleaved(fns, repeats, warmup=1).items():
            next(p for p in points if p.label == label).latency_ms = 1e3 * seconds


def figure(points: list[Point], x: str, xlabel: str, title: str) -> Figure:
    fig, ax = new_axes(title, xlabel, "Set5 x2 PSNR (dB, Y)", size=(8, 5))
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    shown = [p for p in points if getattr(p, x) is not None]
    for p in points:
        if getattr(p, x) is None:  # bicubic has no parameters: a line at its PSNR
            ax.axhline(p.set5, color=FAMILY_COLORS["bicubic"], ls="--", lw=1)
            ax.annotate("bicubic", (0.01, p.set5), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", fontsize=8)
    for published in (False, True):  # published figures hollow, ours filled
        group = [p for p in shown if p.published == published]
        colors = [FAMILY_COLORS.get(p.family, "k") for p in group]
        ax.scatter([getattr(p, x) for p in group], [p.set5 for p in group], zorder=3,
                   facecolors="none" if published else colors, edgecolors=colors)
    fig.canvas.draw()  # fix the limits, so label boxes in pixels hold
    renderer = fig.canvas.get_renderer()
    radius = 4 * fig.dpi / 72  # a default marker's half-width (3 pt) and 1 pt spare, in pixels
    markers = {id(p): Bbox.from_bounds(*(ax.transData.transform((getattr(p, x), p.set5))
                                         - radius), 2 * radius, 2 * radius) for p in shown}
    # a label goes right of its marker, then left of it, each stepping down from just above
    # it, at the first spot that covers no drawn label and no other point's marker (else the last)
    spots = [(dx, dy, ha) for dy in range(3, -64, -9) for dx, ha in ((4, "left"), (-4, "right"))]
    placed: list[Any] = []  # the drawn labels' boxes
    for p in sorted(shown, key=lambda p: (getattr(p, x), -p.set5)):
        obstacles = placed + [b for key, b in markers.items() if key != id(p)]
        for dx, dy, ha in spots:
            label = ax.annotate(p.label, (getattr(p, x), p.set5), xytext=(dx, dy),
                                textcoords="offset points", fontsize=7, ha=ha)
            box = label.get_window_extent(renderer)
            if (dx, dy, ha) == spots[-1] or not any(box.overlaps(b) for b in obstacles):
                break
            label.remove()
        placed.append(box)
    return fig


def table(points: list[Point], lq_size: int) -> str:
    lines = [f"| model | nonzero params | Mult-Adds (1280x720) | CPU latency, {lq_size}x"
             f"{lq_size} LR (ms) | Set5 x2 | Set14 x2 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {p.label} | {human(p.params)} | {human(p.mult_adds)} | "
              f"{p.latency_ms:,.1f} | {p.set5:.2f} | {p.set14:.2f} |" for p in points]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="[LABEL=]folder of a nas-sr evaluate run")
    parser.add_argument("--extra", type=Path, nargs="+", default=[],
                        help="JSON lists of models evaluated elsewhere")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNGs")
    parser.add_argument("--lq-size", type=int, default=128, help="side of the timed LR image")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    points = [from_run(r) for r in args.runs]
    for extra in args.extra:
        points += [from_extra(e) for e in json.loads(extra.read_text())]
    time_all(points, args.lq_size, args.repeats)
    points.sort(key=lambda p: p.latency_ms)
    args.out.mkdir(parents=True, exist_ok=True)
    for x, xlabel, stem in (
            ("params", "parameters (nonzero)", "tradeoff_params"),
            ("latency_ms", f"CPU latency, {args.lq_size}x{args.lq_size} LR -> x2 (ms)",
             "tradeoff_latency")):
        figure(points, x, xlabel, f"PSNR against {xlabel.split(',')[0]}").savefig(
            args.out / f"{stem}.png")
    print(f"{machine()}\n\n{table(points, args.lq_size)}")


if __name__ == "__main__":
    main()
