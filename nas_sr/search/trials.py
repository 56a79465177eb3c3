"""The proxy search as trials of an Optuna study: parallel, asynchronous, resumable.

With ``search.trials.count=K`` a search pays for K proxy-trained cells (``search.proxy``)
and trains no supernet. Each trial is one cell: the strategy (``controller=random``,
``evolution`` or ``predictor``) proposes it through :class:`StrategySampler`, an Optuna
sampler over the cell's decisions that rebuilds the strategy from the study's finished
trials, so every worker proposes from everything scored so far, and a free worker takes
the next proposal. The study lives in a database (``search.trials.storage``; SQLite in the
run folder by default, PostgreSQL or MySQL on a cluster, where SLURM array tasks join it
with ``search.trials.join=true``):

- a finished trial is never run again: a resumed search counts it and goes on;
- a worker killed mid-trial stops its heartbeat; after ``grace_s`` Optuna fails the trial
  and :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` queues it again, and the
  next free worker runs it (at most ``retries`` times);
- proposal i is drawn from the RNG of (seed, i) given the trials finished before it, so one
  worker, killed and resumed, proposes the cells an unbroken run would (with several, the
  order trials finish in is part of the history, as in any asynchronous search).

A trial's value is the cell's reward (its mean proxy PSNR on the reward crops over
``proxy.seeds``, less any over-budget penalty); its user attributes keep the cell, its cost
and every run's per-crop PSNRs on the reward and the final crops. The choice takes the
``final_top`` best of the first K trials to finish, adds ``proxy.final_seeds`` runs, and
picks the best mean PSNR on the final crops, as the epoch loop's proxy search does.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from controllers import RandomController
from controllers.base import MemoryController
from nas_sr.device import memory_format, resolve_device, set_threads
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar
from nas_sr.search.band import Band
from nas_sr.search.proxy import ProxySetting, proxy_batches, proxy_run
from nas_sr.search.supernet import (
    build_search_controller,
    reward_crops,
    space_macros,
    space_ops,
    train_store,
)
from search_spaces.genotypes import Genotype, choices_per_decision

STUDY = "search"  # the study's name in its storage
DATABASE = "trials.db"  # the default storage, in the run folder
RETRIED = "failed_trial"  # Optuna's system attribute on a trial queued again after a kill
POLL_S = 2.0  # how often the launching process reads the study while workers run
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url(cfg: DictConfig, run_dir: Path) -> str:
    return cfg.search.trials.storage or f"sqlite:///{(run_dir / DATABASE).resolve()}"


def open_study(cfg: DictConfig, run_dir: Path,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """The search's study (created on first use) with heartbeats and the retry of killed
    trials."""
    t, url = cfg.search.trials, storage_url(cfg, run_dir)
    # SQLite: several workers wait for the file's lock rather than fail at once
    storage = RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite")
        else None, heartbeat_interval=t.heartbeat_s, grace_period=t.grace_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=t.retries))
    study = optuna.create_study(storage=storage, study_name=STUDY, direction="maximize",
                                sampler=sampler, load_if_exists=True)
    _check_space(study, cfg, url)
    return study


def _check_space(study: optuna.Study, cfg: DictConfig, url: str) -> None:
    """A trial stores its decisions as positions in the space's lists (nodes, ops, sizes),
    so every worker must search the space the study began with; the first to open it
    records that space. (A joining worker whose ``space.macro_widths`` met another latency
    table would otherwise read another network at the same positions.)"""
    space = {"archs.cell.nodes": int(cfg.archs.cell.nodes), "space.ops": list(space_ops(cfg)),
             "space.macro": [list(m) for m in space_macros(cfg)]}
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", space)
    elif recorded != space:
        differ = ", ".join(f"{k}={recorded[k]} (here {space[k]})"
                           for k in space if recorded.get(k) != space[k])
        raise ConfigError(f"the study at {url} searches {differ}: a trial stores its cell as "
                          "positions in these lists, so a worker must search the same space; "
                          "give the settings of the launching run's config.yaml (its "
                          "space.macro, not space.macro_widths)")


def finished(study: optuna.Study, trials: list[FrozenTrial] | None = None
             ) -> list[FrozenTrial]:
    """The completed trials (of ``trials``, read already, else the study's) in the order
    they finished."""
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: (t.datetime_complete, t.number))


class Decisions:
    """A cell (and its macro, where the space has them) as Optuna parameters: one
    categorical ``d{i}`` per decision of the space."""

    def __init__(self, cfg: DictConfig):
        self.ops, self.macros, nodes = space_ops(cfg), space_macros(cfg), cfg.archs.cell.nodes
        self.space = {f"d{i}": CategoricalDistribution(tuple(range(c))) for i, c in
                      enumerate(choices_per_decision(nodes, self.ops, self.macros))}

    def params(self, genotype: Genotype) -> dict[str, int]:
        return dict(zip(self.space, genotype.to_decisions(self.ops, self.macros), strict=True))

    def genotype(self, params: dict[str, Any]) -> Genotype:
        return Genotype.from_decisions([int(params[k]) for k in self.space], self.ops,
                                       self.macros)


class StrategySampler(optuna.samplers.BaseSampler):
    """Optuna's sampler for a toolkit strategy: proposal i is the strategy's in-band cell
    given the trials finished so far, drawn from the RNG of (seed, i)."""

    def __init__(self, cfg: DictConfig, band: Band):
        self.cfg, self.band, self.decisions = cfg, band, Decisions(cfg)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, CategoricalDistribution]:
        return self.decisions.space

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs or (
                RETRIED in trial.system_attrs and len(trial.params) == len(search_space)):
            return {}  # a queued trial keeps its cell
        # a retried trial killed before it held its whole cell is proposed as it was first
        number = trial.system_attrs.get(RETRIED, trial.number)
        trials = study.get_trials(deepcopy=False)
        proposal = sum(t.number < number and RETRIED not in t.system_attrs for t in trials)
        ctrl = build_search_controller(self.cfg)
        self.band.constrain(ctrl)
        if isinstance(ctrl, MemoryController):
            ctrl.memory.extend((self.decisions.genotype(t.params), t.value)
                               for t in finished(study, trials))  # one read a proposal
            ctrl.remembered()
        rng = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + proposal)
        return self.decisions.params(self.band.propose(ctrl, rng).genotype)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        raise RuntimeError(f"{param_name}: every decision is sampled with the others")


class TrialWorker:
    """Optuna's objective in one worker: train the proposed cell under each proxy seed."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.band, self.decisions = cfg, Band(cfg), Decisions(cfg)
        self.device = resolve_device(cfg.device)
        self.fmt = memory_format(cfg.get("channels_last", True))
        reward, final = reward_crops(cfg, self.device, self.fmt)
        self.crops = {"reward": reward, "final": final}
        self.setting = ProxySetting.from_config(cfg)
        self.batches = proxy_batches(train_store(cfg), cfg.scale, self.setting, cfg.seed)
        self.count = cfg.search.trials.count

    def done(self, study: optuna.Study) -> bool:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= self.count

    def stop_when_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.done(study):
            study.stop()

    def __call__(self, trial: optuna.Trial) -> float:
        if self.done(trial.study):  # the others finished the budget meanwhile
            trial.study.stop()
            raise optuna.TrialPruned("the search's trials are done")
        params = {k: trial.suggest_categorical(k, d.choices)
                  for k, d in self.decisions.space.items()}
        genotype = self.decisions.genotype(params)
        cost = self.band.cost(genotype)
        t0 = time.perf_counter()
        runs = {seed: proxy_run(genotype, self.batches, self.crops, self.cfg.scale,
                                self.setting, seed, self.device, self.fmt)
                for seed in self.cfg.search.proxy.seeds}
        trial.set_user_attr("genotype", genotype.to_dict()["nodes"])
        trial.set_user_attr("cost", cost)
        trial.set_user_attr("runs", {str(s): {k: v.tolist() for k, v in r.items()}
                                     for s, r in runs.items()})
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        trial.set_user_attr("worker", os.getpid())
        psnr = sum(float(r["reward"].mean()) for r in runs.values()) / len(runs)
        return self.band.reward(psnr, cost)  # NaN (a diverged cell) fails the trial


def work(cfg: DictConfig, run_dir: Path) -> None:
    """Be one worker: take proposals until the study holds ``trials.count`` finished ones."""
    set_threads(cfg.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    worker = TrialWorker(cfg, run_dir)
    study = open_study(cfg, run_dir, StrategySampler(cfg, worker.band))
    if not worker.done(study):
        study.optimize(worker, callbacks=[worker.stop_when_done], gc_after_trial=False)


def _work_in_process(config: str, run_dir: str) -> None:
    work(OmegaConf.create(config), Path(run_dir))


def worker_threads(cfg: DictConfig) -> int:
    """Each worker's torch threads: ``threads``, or an equal share of the cores."""
    return cfg.threads or max(1, (os.cpu_count() or 1) // cfg.search.trials.workers)


def run_workers(cfg: DictConfig, run_dir: Path) -> optuna.Study:
    """Start ``trials.workers`` worker processes on the study and wait for them, showing the
    trials as they finish; returns the study."""
    t = cfg.search.trials
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, run_dir)
    fail_orphans(study, t.grace_s)
    worker_cfg = cfg.copy()
    worker_cfg.threads = worker_threads(cfg)
    worker_cfg.logger.progress = False  # one bar, this one, for all the workers
    config = OmegaConf.to_yaml(worker_cfg, resolve=True)
    spawn = multiprocessing.get_context("spawn")  # no forked torch or database state
    procs = [spawn.Process(target=_work_in_process, args=(config, str(run_dir)),
                           name=f"nas-sr trial worker {i}") for i in range(t.workers)]
    for p in procs:
        p.start()
    bar = progress_bar(total=t.count, desc=f"trials ({t.workers} workers)",
                       disable=not cfg.logger.progress)
    try:
        while any(p.is_alive() for p in procs):
            bar.update(min(len(finished(study)), t.count) - bar.n)
            time.sleep(POLL_S)
    finally:
        for p in procs:  # an interrupted launcher takes its workers with it
            if p.is_alive():
                p.terminate()
            p.join()
        bar.close()
    done = finished(study)
    if len(done) < t.count:
        codes = sorted({p.exitcode for p in procs})
        raise ConfigError(f"the workers stopped (exit codes {codes}) after {len(done)} of "
                          f"{t.count} trials; resume with nas-sr search resume={run_dir}")
    return study


def fail_orphans(study: optuna.Study, grace_s: int) -> None:
    """Before a resumed search proposes again, let the trials a killed run left running go
    stale and queue them again, so proposals follow the history an unbroken run had."""
    if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        print(f"waiting {grace_s}s for the trials of a stopped run to go stale (or finish, "
              "where another worker still runs them)")
        time.sleep(grace_s + 1)
        fail_stale_trials(study)


def first_trials(study: optuna.Study, count: int) -> list[FrozenTrial]:
    """The search's trials: the first ``count`` to finish (more may have, when several
    workers finished at once)."""
    return finished(study)[:count]


def check_strategy(cfg: DictConfig) -> None:
    """The engine runs strategies that learn from (cell, score) pairs in any order."""
    ctrl = build_search_controller(cfg)
    if ctrl.learns and not isinstance(ctrl, MemoryController):
        raise ConfigError(f"controller={cfg.controller.name} learns on-policy from the "
                          "rewards of its own draws, in order; search.trials runs random, "
                          "evolution or predictor (or drop search.trials.count)")
    if not isinstance(ctrl, MemoryController | RandomController):
        raise ConfigError(f"controller={cfg.controller.name}: not a trial strategy")


def mean_final(trial: FrozenTrial) -> float:
    """A trial's mean PSNR on the final crops over its seeds' runs."""
    runs = trial.user_attrs["runs"].values()
    values = [sum(r["final"]) / len(r["final"]) for r in runs]
    mean = sum(values) / len(values)
    return mean if math.isfinite(mean) else float("nan")
