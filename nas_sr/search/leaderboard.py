"""leaderboard.md: the best cells a search has scored so far, rewritten each epoch, so a
running search can be watched (``watch cat RUN/leaderboard.md``) without reading its log.

A reward was measured on the shared weights of its own epoch: the table says when, and
the final choice re-scores every cell on the last weights (docs/search.md)."""

from __future__ import annotations

from pathlib import Path

from nas_sr import checkpoint
from nas_sr.runs.log import read_metrics
from search_spaces.genotypes import Genotype

LEADERBOARD = "leaderboard.md"


def write_leaderboard(run_dir: Path, top: int = 10) -> list[dict]:
    """Rank every cell the log holds by its best reward; write the ``top`` as a table."""
    best: dict[str, dict] = {}
    for r in read_metrics(run_dir):
        if r.get("kind") != "controller":
            continue
        cell = str(Genotype.from_dict({"nodes": r["genotype"], "macro": r.get("macro")}))
        if cell not in best or r["reward"] > best[cell]["reward"]:
            best[cell] = {**r, "cell": cell}
    rows = sorted(best.values(), key=lambda r: -r["reward"])[:top]
    lines = [f"# Best {len(rows)} of {len(best)} cells scored\n",
             "| # | reward (dB) | PSNR (dB) | params | epoch | step | cell |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {i} | {r['reward']:.3f} | {r['psnr']:.3f} | {r.get('params', 0):,} | "
              f"{r['epoch']} | {r['controller_step']} | `{r['cell']}` |"
              for i, r in enumerate(rows, 1)]
    with checkpoint.atomic_path(run_dir / LEADERBOARD) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return rows
