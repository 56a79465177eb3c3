import json
import statistics

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import write_run
from nas_sr.errors import ConfigError
from nas_sr.jobs import report
from nas_sr.jobs.report import main, markdown, paired, policy_vs_uniform, summary_row
from nas_sr.search.supernet import load_search_run


def test_first_and_last_tenth_and_the_compare_layout(tmp_path):
    run = write_run(tmp_path / "search" / "enas_seed0", steps=40, per_epoch=10)
    rewards = [json.loads(line)["reward"] for line in (run / "metrics.jsonl").open()
               if '"controller"' in line]
    (tmp_path / "retrain" / run.name).mkdir(parents=True)
    (tmp_path / "retrain" / run.name / "summary.json").write_text('{"best_val_psnr": 33.5}')
    (tmp_path / "evaluate" / run.name).mkdir(parents=True)
    (tmp_path / "evaluate" / run.name / "results.json").write_text(
        '{"sets": {"Set5": {"psnr": 36.1, "ssim": 0.95}}}')
    row = summary_row(run)
    assert row["controller"] == "enas" and row["steps"] == 40
    assert row["first10"] == pytest.approx(sum(rewards[:4]) / 4)
    assert row["last10"] == pytest.approx(sum(rewards[-4:]) / 4)
    assert row["last_epoch"] == pytest.approx(sum(rewards[-10:]) / 10)
    assert row["retrain_val"] == 33.5 and row["Set5"] == 36.1


def test_groups_by_controller_with_spread(tmp_path, capsys):
    runs = [write_run(tmp_path / f"{c}_seed{s}", controller=c, seed=s)
            for c in ("enas", "random") for s in range(2)]
    main([str(r) for r in runs])
    out = capsys.readouterr().out
    assert "| enas | 2 |" in out and "| random | 2 |" in out and "+-" in out
    assert markdown([summary_row(runs[0])]).count("| enas_seed0 |") == 1


def test_paired_differences_by_seed():
    rows = [{"run": f"{c}_seed{s}", "controller": c, "steps": 1, "Set5": v, "params": p}
            for c, s, v, p in (("enas", 0, 35.0, 100), ("enas", 1, 35.5, 120),
                               ("random", 0, 34.5, 90), ("random", 1, 35.5, 150))]
    lines = paired(rows)
    assert "| 0 | +10 | +0.50 |" in lines and "| 1 | -30 | +0.00 |" in lines
    assert "| mean +- std | -10 +- 28 | +0.25 +- 0.35 |" in lines
    partial = paired(rows[:3])  # seed 1 has no random run: only seed 0 pairs up
    assert partial[-3:] == ["| --- | ---: | ---: |", "| 0 | +10 | +0.50 |",
                            "| mean +- std | +10 +- 0 | +0.50 +- 0.00 |"]
    assert paired(rows[:2]) == []  # one controller: nothing to pair


def test_a_run_without_controller_steps_is_refused(tmp_path):
    run = write_run(tmp_path / "r", steps=0)
    with pytest.raises(ConfigError, match="no controller steps"):
        summary_row(run)


def test_policy_vs_uniform_scores_on_the_final_shared_weights(smoke_search, monkeypatch):
    loaded, rewards = [], []

    def watched(search_dir):
        search = load_search_run(search_dir)
        score = search.score
        search.score = lambda g: rewards.append(score(g)) or rewards[-1]
        loaded.append(search)
        return search

    monkeypatch.setattr(report, "load_search_run", watched)
    figures = policy_vs_uniform(smoke_search, samples=3)
    final = torch.load(smoke_search / "checkpoint.pt", weights_only=True)
    (search,) = loaded
    for net, state in ((search.supernet, final["supernet"]),
                       (search.controller, final["controller"]["model"])):
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert len(rewards) == 6 and all(5 < r < 60 for r in rewards)
    assert figures["policy_mean"] == pytest.approx(statistics.mean(rewards[:3]))
    assert figures["uniform_mean"] == pytest.approx(statistics.mean(rewards[3:]))
    assert figures["uniform_std"] == pytest.approx(statistics.stdev(rewards[3:]))


def test_the_compare_preset_also_trains_baselines_at_the_same_budget():
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        cells = compose("retrain", overrides=["preset=compare", "controller=enas"])
        baseline = compose("retrain", overrides=["preset=compare", "model=srcnn"])
        default = compose("retrain", overrides=["model=srcnn"])
    cells, baseline, default = (OmegaConf.to_container(c, resolve=True)  # no controller:
                                for c in (cells, baseline, default))  # still resolves
    assert baseline["train"] == cells["train"] and baseline["data"] == cells["data"]
    assert baseline["model"] == "srcnn" and cells["model"] == "cell"
    assert baseline["train"] != default["train"]  # the compare's recipe, not the default's
