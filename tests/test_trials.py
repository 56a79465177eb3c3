"""The proxy search on Optuna's trial engine: parallel workers, a killed worker's trial run
again once, a resume that proposes what an unbroken run would."""

import json
import multiprocessing
import os
import signal
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import make_cfg
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.options import check_options
from nas_sr.runs.log import read_metrics
from nas_sr.search.band import Band
from nas_sr.search.trials import (
    RETRIED,
    STUDY,
    Decisions,
    _work_in_process,
    open_study,
    storage_url,
)
from search_spaces.genotypes import Genotype

TRIALS = ["search.proxy.channels=4", "search.proxy.cells=1", "search.proxy.steps=4",
          "search.proxy.batch_size=2", "search.proxy.patch_size=16", "threads=1",
          "search.trials.heartbeat_s=1", "search.trials.grace_s=2"]


BUDGET = 8000  # params at the smoke retrain width: about half of uniform cells are within


def trial_cfg(*overrides):
    return make_cfg("search", *TRIALS, *overrides)


def study_of(cfg, run_dir):
    return optuna.load_study(study_name=STUDY, storage=storage_url(cfg, run_dir))


def completed(study):
    return [t for t in study.get_trials() if t.state == TrialState.COMPLETE]


def test_two_workers_run_a_trial_search_to_its_choice(tmp_path):
    cfg = trial_cfg("controller=evolution", "controller.population=2",
                    "controller.tournament=2", "search.trials.count=4",
                    "search.trials.workers=2", "search.final_top=2",
                    f"search.budget.params={BUDGET}")
    summary = run_job("search", cfg, tmp_path)
    trials = completed(study_of(cfg, tmp_path))
    assert len(trials) >= 4
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials
    band = Band(cfg)
    pareto = json.loads((tmp_path / "pareto.json").read_text())["cells"]
    assert len(pareto) == summary["trials"] == 4
    assert all(c["within_budget"] and c["params"] <= BUDGET for c in pareto)
    assert all(c["params"] == band.cost(Genotype.from_dict({"nodes": c["genotype"]}))["params"]
               for c in pareto)
    chosen = [c for c in pareto if c.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["genotype"] == summary["genotype"]["nodes"]
    steps = [r for r in read_metrics(tmp_path) if r["kind"] == "controller"]
    assert [r["controller_step"] for r in steps] == [1, 2, 3, 4]
    # each trial kept every seed's per-crop PSNRs on both crop sets
    runs = trials[0].user_attrs["runs"]["0"]
    assert len(runs["reward"]) == cfg.search.reward_crops
    assert len(runs["final"]) == cfg.search.final_crops
    assert (tmp_path / "leaderboard.md").is_file() and (tmp_path / "genotype.json").is_file()


def run_worker_until_killed(cfg, run_dir, after_complete: int) -> int:
    """Start one worker process, SIGKILL it while it trains a trial once ``after_complete``
    trials are finished; the number of the trial it was running."""
    run_dir.mkdir(exist_ok=True)
    proc = multiprocessing.get_context("spawn").Process(
        target=_work_in_process, args=(OmegaConf.to_yaml(cfg, resolve=True), str(run_dir)))
    proc.start()
    deadline = time.time() + 300
    study = None  # opened once: opening a study per poll is slower than a short trial
    try:
        while time.time() < deadline:
            try:
                study = study or study_of(cfg, run_dir)
                trials = study.get_trials()
            except KeyError:  # the study is not created yet
                trials = []
            # a trial that holds its whole cell: it is training
            running = [t for t in trials if t.state == TrialState.RUNNING
                       and len(t.params) == len(Decisions(cfg).space)]
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            if running and len(done) >= after_complete:
                os.kill(proc.pid, signal.SIGKILL)
                proc.join()
                return running[0].number
            time.sleep(0.05)
        raise AssertionError("the worker never ran a trial")
    finally:
        if proc.is_alive():
            proc.kill()


def test_a_killed_workers_trial_is_run_again_once_by_another(tmp_path):
    cfg = trial_cfg("controller=random", "search.trials.count=3", "search.trials.workers=2",
                    "search.proxy.steps=40")
    killed = run_worker_until_killed(cfg, tmp_path, after_complete=0)
    run_job("search", cfg, tmp_path)
    trials = study_of(cfg, tmp_path).get_trials()
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get(RETRIED) == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[killed].params
    assert len(completed(study_of(cfg, tmp_path))) >= 3


@pytest.mark.slow
def test_a_killed_and_resumed_search_proposes_what_an_unbroken_one_does(tmp_path):
    cfg = trial_cfg("controller=predictor", "controller.warmup=2", "controller.candidates=16",
                    "controller.trees=4", "search.trials.count=5", "search.proxy.steps=60")
    whole = run_job("search", cfg, tmp_path / "whole")
    run_worker_until_killed(cfg, tmp_path / "broken", after_complete=3)
    resumed = run_job("search", cfg, tmp_path / "broken")

    def cells(run):
        return [r["genotype"] for r in read_metrics(run) if r["kind"] == "controller"]

    assert cells(tmp_path / "broken") == cells(tmp_path / "whole")
    assert resumed["genotype"] == whole["genotype"]
    assert len(completed(study_of(cfg, tmp_path / "broken"))) == 5  # one worker: no extra


def test_a_worker_of_another_space_is_refused_by_the_study(tmp_path):
    base = ["controller=random", "search.trials.count=4", "space.macro=[[16,10],[32,4]]"]
    open_study(make_cfg("search", *base), tmp_path)
    open_study(make_cfg("search", *base), tmp_path)  # the same space: a worker joins
    for other, named in (
            ("space.macro=[[16,9],[32,4]]",
             r"space.macro=\[\[16, 10\], \[32, 4\]\] \(here \[\[16, 9\], \[32, 4\]\]\)"),
            ("archs.cell.nodes=4", r"archs.cell.nodes=5 \(here 4\)")):
        with pytest.raises(ConfigError, match=named + ".*not space.macro_widths"):
            open_study(make_cfg("search", *base, other), tmp_path)


def test_an_on_policy_strategy_is_refused_by_the_engine(tmp_path):
    with pytest.raises(ConfigError, match="on-policy"):
        run_job("search", trial_cfg("controller=enas", "search.trials.count=2"), tmp_path)


@pytest.mark.parametrize("override, message", [
    ("search.trials.workers=2", "set search.trials.count"),
    ("search.trials.join=true", "set search.trials.count"),
    ("search.trials.grace_s=5", "longer than heartbeat_s"),
])
def test_engine_options_that_mean_nothing_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        check_options("search", make_cfg("search", override))
