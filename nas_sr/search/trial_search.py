"""``nas-sr search search.trials.count=K``: the proxy search on the trial engine
(``nas_sr.search.trials``), from its first trial (or a resume) to the chosen cell.

The study is the run's record: ``metrics.jsonl`` (one controller record per trial, in the
order they finished, for the plots and ``leaderboard.md``) is written anew from it, so a
resumed search logs each trial once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial

from nas_sr.device import set_threads
from nas_sr.errors import ConfigError
from nas_sr.runs.log import RunLog
from nas_sr.search.band import Band
from nas_sr.search.choice import nan_last, write_choice
from nas_sr.search.leaderboard import write_leaderboard
from nas_sr.search.proxy import ProxyReward
from nas_sr.search.trials import (
    Decisions,
    TrialWorker,
    check_strategy,
    first_trials,
    mean_final,
    run_workers,
    work,
    worker_threads,
)
from search_spaces.cost import within_budget


def run_trial_search(cfg: DictConfig, run_dir: Path, space: dict[str, Any]
                     ) -> dict[str, Any] | None:
    """Run (or resume) the search's trials, then choose; with ``trials.join`` only work on
    the study and return None."""
    check_strategy(cfg)
    t = cfg.search.trials
    if t.join:
        cfg = cfg.copy()
        cfg.threads = worker_threads(cfg)
        work(cfg, run_dir)
        print(f"the study at {t.storage or run_dir} holds {t.count} finished trials; this "
              "worker is done")
        return None
    study = run_workers(cfg, run_dir)
    set_threads(cfg.threads)
    trials = first_trials(study, t.count)
    log = RunLog(run_dir, 0, cfg.logger.wandb, OmegaConf.to_container(cfg, resolve=True))
    try:
        band, decisions = Band(cfg), Decisions(cfg)
        scored = [scored_trial(step, trial, band, decisions, log)
                  for step, trial in enumerate(trials, 1)]
        log.flush()
        write_leaderboard(run_dir)
        best = choose(cfg, run_dir, study, trials, scored, band, decisions)
        span = trials[-1].datetime_complete - min(x.datetime_start for x in trials)
        facts = {"search_time_s": span.total_seconds(),
                 "trial_time_s": sum(x.user_attrs["seconds"] for x in trials),
                 "trials": len(trials), "workers": t.workers, "controller_steps": len(trials),
                 "space_size": space}
        return write_choice(cfg, run_dir, log, decisions.genotype(trials[best].params),
                            scored[best]["final_psnr"], scored, band, facts,
                            "proxy training", True)
    finally:
        log.close()


def scored_trial(step: int, trial: FrozenTrial, band: Band, decisions: Decisions,
                 log: RunLog) -> dict[str, Any]:
    """A trial as the log's controller record and as a row of ``pareto.json``."""
    genotype = decisions.genotype(trial.params)
    cost = band.cost(genotype)
    penalty = band.penalty(cost)
    nodes = genotype.to_dict()["nodes"]
    macro = {"macro": list(genotype.macro)} if genotype.macro else {}
    log.log("controller", controller_step=step, epoch=1, genotype=nodes, **macro,
            psnr=trial.value + penalty, reward=trial.value, trial=trial.number,
            seconds=trial.user_attrs["seconds"], **cost)
    return {"genotype": nodes, **macro, **cost, "within_budget": within_budget(cost, band.limits),
            "penalty": penalty, "psnr": trial.value + penalty, "trial": trial.number}


def choose(cfg: DictConfig, run_dir: Path, study: optuna.Study, trials: list[FrozenTrial],
           scored: list[dict[str, Any]], band: Band, decisions: Decisions) -> int:
    """The ``final_top`` best rewards within budget, scored on the final crops over the proxy
    seeds and ``final_seeds`` (those runs kept in the study); the index of the best."""
    eligible = [i for i, c in enumerate(scored) if c["within_budget"]]
    if not eligible:
        raise ConfigError(f"no trial is within search.budget {band.limits}")
    top = sorted(eligible, key=lambda i: -trials[i].value)[:cfg.search.final_top]
    extra = list(cfg.search.proxy.final_seeds)
    proxy = None
    for i in top:
        trial, row = trials[i], scored[i]
        finals = [mean_final(trial)] * len(trial.user_attrs["runs"])
        for seed in extra:
            key = f"final {trial.number} seed {seed}"
            if key not in study.user_attrs:  # run once, kept across a resume
                if proxy is None:
                    w = TrialWorker(cfg, run_dir)
                    proxy = ProxyReward(w.setting, w.batches, w.crops, cfg.scale, w.device,
                                        w.fmt)
                study.set_user_attr(key, proxy.psnr(decisions.genotype(trial.params), [seed],
                                                    "final"))
            finals.append(study.user_attrs[key])
        row["final_psnr"] = sum(finals) / len(finals)
    best = max(top, key=lambda i: nan_last(scored[i]["final_psnr"] - scored[i]["penalty"]))
    scored[best]["chosen"] = True
    return best
