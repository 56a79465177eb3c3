"""9. Trials: proxy trials per hour of the trial engine (`search.trials`) with 1 and with 2
workers, each worker one torch thread, on the bundled photographs: the same short proxy
and the same number of trials for each, measured one after the other on this machine.

`python -m bench --only trials` prints it. The figure that matters is the ratio: trials
are independent trainings, so on N free cores N workers should make ~N times as many.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from bench.timing import Row
from nas_sr.search.trials import finished, run_workers


def run(quick: bool) -> list[Row]:
    count, steps = (4, 40) if quick else (8, 200)
    rows = []
    for workers in (1, 2):
        with initialize_config_module("experiments", version_base="1.3"):
            cfg = compose("search", [
                "controller=random", f"search.trials.count={count}",
                f"search.trials.workers={workers}", "threads=1", "logger.progress=false",
                "search.proxy.channels=16", "search.proxy.cells=2",
                f"search.proxy.steps={steps}", "data.patch_size=64"])
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            study = run_workers(cfg, Path(tmp))
            wall = time.perf_counter() - t0
            trials = finished(study)[:count]
            busy = sum(t.user_attrs["seconds"] for t in trials) / len(trials)
        rows.append(Row("trials", f"{workers} worker{'s' * (workers > 1)}, 1 thread each",
                        3600 * count / wall, "trials/hour",
                        f"{count} proxy trials of {steps} steps (C=16, N=2), "
                        f"{busy:.1f} s of training each; wall time incl. start-up"))
    rows.append(Row("trials", "2 workers / 1 worker", rows[1].value / rows[0].value, "x",
                    "measured one after the other"))
    return rows
