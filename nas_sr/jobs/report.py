"""``python -m nas_sr.jobs.report SEARCH_RUN [...]``: a markdown summary of search runs.

Per run: the mean reward of the first and last 10% of controller steps, the reward of
the last epoch, the chosen cell's validation PSNR and, in the ``preset=compare``
layout (``ROOT/search/NAME``, ``ROOT/retrain/NAME``, ``ROOT/evaluate/NAME``), the
retrained cell's validation and benchmark PSNR. Then mean, std and range per controller.
``--policy-vs-uniform K`` scores K cells of the final policy against K uniform ones on the
run's final shared weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from controllers import RandomController
from nas_sr.errors import ConfigError
from nas_sr.plots.search import controller_type
from nas_sr.runs.log import read_metrics
from nas_sr.search.supernet import load_search_run, space_ops

COLUMNS = ("first10", "last10", "last_epoch", "search_val", "params", "retrain_val", "Set5",
           "Set14")


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def summary_row(search_dir: Path) -> dict[str, Any]:
    """One search run's figures as a table row (rewards, chosen cell, retrained PSNRs)."""
    records = read_metrics(search_dir)
    steps = [r for r in records if r["kind"] == "controller"]
    if not steps:
        raise ConfigError(f"{search_dir}: no controller steps logged yet")
    rewards = [r["reward"] for r in steps]
    tenth = max(1, len(rewards) // 10)
    last_epoch = max(r["epoch"] for r in steps)
    row: dict[str, Any] = {
        "run": search_dir.name,
        "controller": controller_type(search_dir),
        "steps": len(rewards),
        "first10": statistics.mean(rewards[:tenth]),
        "last10": statistics.mean(rewards[-tenth:]),
        "last_epoch": statistics.mean(r["reward"] for r in steps if r["epoch"] == last_epoch),
    }
    summary = _json(search_dir / "summary.json")
    if summary:
        row.update(search_val=summary["val_psnr"],
                   genotype=summary["genotype_str"], params=summary["params"])
    root = search_dir.parent.parent
    retrain = _json(root / "retrain" / search_dir.name / "summary.json")
    if retrain:
        row["retrain_val"] = retrain["best_val_psnr"]
    evaluation = _json(root / "evaluate" / search_dir.name / "results.json")
    for name, figures in (evaluation or {}).get("sets", {}).items():
        row[name] = figures["psnr"]
    return row


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    out = ["| run | controller | steps | " + " | ".join(cols) + " |",
           "| --- | --- | ---: | " + " | ".join("---:" for _ in cols) + " |"]
    out += [f"| {r['run']} | {r['controller']} | {r['steps']} | "
            + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["controller"]].append(r)
    out += ["", "| controller | runs | " + " | ".join(cols) + " |",
            "| --- | ---: | " + " | ".join("---" for _ in cols) + " |"]
    for name, members in groups.items():
        cells = []
        for c in cols:
            values = [m[c] for m in members if c in m]
            if not values:
                cells.append("-")
                continue
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            fmt = ",.0f" if c == "params" else ".2f"
            cells.append(f"{statistics.mean(values):{fmt}} +- {std:{fmt}} "
                         f"[{min(values):{fmt}}, {max(values):{fmt}}]")
        out.append(f"| {name} | {len(members)} | " + " | ".join(cells) + " |")
    cells = [f"- {r['run']}: `{r['genotype']}`" for r in rows if "genotype" in r]
    return "\n".join(out + paired(rows) + (["", "Cells found:", *cells] if cells else []))


def _dp(column: str) -> int:
    return 0 if column == "params" else 2


def paired(rows: list[dict[str, Any]]) -> list[str]:
    """Per-seed differences of the first controller minus the second, for runs named
    ``CONTROLLER_seedN`` (the compare layout): the spread that a paired comparison sees."""
    by_seed: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        name, _, seed = r["run"].rpartition("_seed")
        if name and seed:
            by_seed[seed][r["controller"]] = r
    names = list(dict.fromkeys(r["controller"] for r in rows))
    pairs = {s: c for s, c in by_seed.items() if len(names) == 2 and set(c) == set(names)}
    cols = [c for c in ("params", "retrain_val", "Set5", "Set14")
            if all(c in run for runs in pairs.values() for run in runs.values())]
    if not pairs or not cols:
        return []
    a, b = names
    out = ["", f"Paired by seed, {a} minus {b}:", "", "| seed | " + " | ".join(cols) + " |",
           "| --- | " + " | ".join("---:" for _ in cols) + " |"]
    diffs: dict[str, list[float]] = defaultdict(list)
    for seed in sorted(pairs):
        for c in cols:
            diffs[c].append(pairs[seed][a][c] - pairs[seed][b][c])
        out.append(f"| {seed} | " + " | ".join(f"{diffs[c][-1]:+,.{_dp(c)}f}" for c in cols)
                   + " |")
    out.append("| mean +- std | " + " | ".join(
        f"{statistics.mean(diffs[c]):+,.{_dp(c)}f} +- "
        f"{statistics.stdev(diffs[c]) if len(diffs[c]) > 1 else 0.0:,.{_dp(c)}f}" for c in cols)
        + " |")
    return out


def policy_vs_uniform(search_dir: Path, samples: int) -> dict[str, float]:
    """Mean reward on the final crops of ``samples`` cells drawn from the run's final policy
    vs as many uniform draws, all through the same final shared weights: the controller's
    contribution with the supernet held fixed."""
    search = load_search_run(search_dir)
    uniform = RandomController(search.cfg.archs.cell.nodes, ops=space_ops(search.cfg))
    rng = torch.Generator().manual_seed(12345)
    out = {}
    for name, ctrl in (("policy", search.controller), ("uniform", uniform)):
        with torch.no_grad():
            cells = [ctrl.sample(rng).genotype for _ in range(samples)]
        rewards = [search.score(g) for g in cells]
        out[f"{name}_mean"] = statistics.mean(rewards)
        out[f"{name}_std"] = statistics.stdev(rewards) if samples > 1 else 0.0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="search run folders")
    parser.add_argument("--policy-vs-uniform", type=int, default=0, metavar="K",
                        help="also score K final-policy and K uniform cells on the final "
                             "shared weights of each run (needs its checkpoint and data)")
    args = parser.parse_args(argv)
    runs = sorted(args.runs)
    print(markdown([summary_row(d) for d in runs]))
    if args.policy_vs_uniform:
        print(f"\n| run | final policy ({args.policy_vs_uniform} cells) | uniform | gap |")
        print("| --- | ---: | ---: | ---: |")
        for d in runs:
            f = policy_vs_uniform(d, args.policy_vs_uniform)
            print(f"| {d.name} | {f['policy_mean']:.2f} +- {f['policy_std']:.2f} | "
                  f"{f['uniform_mean']:.2f} +- {f['uniform_std']:.2f} | "
                  f"{f['policy_mean'] - f['uniform_mean']:+.2f} |")


if __name__ == "__main__":
    main()
