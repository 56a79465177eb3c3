"""The replay job: ``nas-sr replay replay.table=FILE`` runs every strategy against random
search on an SR-NAS table, paired by seed, each trial a lookup (``nas_sr.search.replay``);
prints and writes (``replay.md``, ``replay.json``) each strategy's mean gain over random
with its 95% interval and the pairs a live comparison would need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas_sr.checkpoint import write_json
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar
from nas_sr.search.replay import REPLAYED, markdown, replay
from nas_sr.search.table import Table


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    r = cfg.replay
    if not r.table:
        raise ConfigError("replay.table= is required: a table file nas-sr table wrote")
    if unknown := [s for s in r.strategies if s not in REPLAYED]:
        raise ConfigError(f"replay.strategies: {unknown} cannot be replayed; use "
                          f"{' | '.join(REPLAYED)} (enas proposes cells no table holds)")
    if (r.band is None) != (r.cost is None) or (r.band is not None and (
            len(r.band) != 2 or r.band[0] > r.band[1])):
        raise ConfigError(f"replay.band={r.band} with replay.cost={r.cost}: give both, the "
                          "band as [low, high]")
    table = Table.load(r.table, r.proxy_seeds).where(r.cost, r.band)
    settings = {name: OmegaConf.to_container(r[name]) if name in r else {}
                for name in r.strategies}
    bar = progress_bar(total=len(r.budgets), desc="budgets", disable=not cfg.logger.progress)
    result = replay(table, settings, list(r.budgets), r.seeds, r.final_top, r.batch, bar,
                    r.cost or "params")
    bar.close()
    result |= {"table": r.table, "cost": r.cost, "band": r.band,
               "settings": settings}
    text = markdown(result)
    (run_dir / "replay.md").write_text(text + "\n")
    write_json(run_dir / "replay.json", result)
    print(text)
    return result
