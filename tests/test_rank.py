import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from conftest import make_cfg
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.options import check_options
from nas_sr.search.rank import spread_draws
from nas_sr.search.stats import (
    expected_max_normal,
    pearson_from_tau,
    reliability,
    selection_gain,
    variance_components,
)
from search_spaces.cost import genotype_cost

TINY = '["preset=smoke","train.epochs=1","train.iters_per_epoch=2","train.val_crops=4"]'


def test_uniform_draws_are_distinct_and_spread_over_the_params_range():
    def cost(g):
        return genotype_cost(g, 32, 4, 2)

    cells = spread_draws(5, count=8, pool=200, seed=0, cost=cost)
    params = [cost(g)["params"] for g in cells]
    assert len(set(cells)) == 8 and params == sorted(params)
    every = sorted(cost(g)["params"] for g in spread_draws(5, 200, 200, 0, cost))
    assert params[0] == every[0] and params[-1] == every[-1]  # from the cheapest to the largest
    assert spread_draws(5, 8, 200, 0, cost) == cells  # the seed fixes them


def test_a_params_range_draws_cells_of_that_size_only():
    def cost(g):
        return genotype_cost(g, 32, 4, 2)

    cells = spread_draws(5, 6, 400, 0, cost, bands={"params": [200_000, 260_000]})
    assert len(set(cells)) == 6
    assert all(200_000 <= cost(g)["params"] <= 260_000 for g in cells)
    with pytest.raises(ConfigError, match="widen rank.params_range"):
        spread_draws(5, 6, 400, 0, cost, bands={"params": [200_000, 200_010]})
    with pytest.raises(ConfigError, match=r"rank.params_range=\[300000, 200000\]: give"):
        check_options("rank", make_cfg("rank", "rank.params_range=[300000,200000]"))


def test_variance_components_on_hand_made_psnrs():
    # cell means 2 and 6 (variance 8); each cell's two seeds differ by 2 (variance 2):
    # between = 8 - 2 / 2 = 7
    v = variance_components([[1.0, 3.0], [5.0, 7.0]], pool=2)
    assert v["within_std"] == pytest.approx(2 ** 0.5)
    assert v["between_std"] == pytest.approx(7 ** 0.5)
    assert v["random_pick_std"] == pytest.approx(3.0)
    assert reliability(v) == pytest.approx(7 / 9) and reliability(v, runs=2) == pytest.approx(7 / 8)
    assert v["oracle_gain"] == pytest.approx(7 ** 0.5 / np.pi ** 0.5)  # E[max of 2] = 1/sqrt(pi)
    low, high = v["between_std_ci"]
    assert 0.0 <= low <= v["between_std"] <= high <= 4 * 2 ** 0.5  # the cells resampled
    # seed noise alone: no cell is better than another
    assert variance_components([[1.0, 3.0], [3.0, 1.0]])["between_std"] == 0.0
    assert expected_max_normal(3) == pytest.approx(1.5 / np.pi ** 0.5)
    with pytest.raises(ValueError, match="2 seeds"):
        variance_components([[1.0], [2.0]])


def test_selection_gain_against_closed_forms():
    best = expected_max_normal(50)
    # the best of 50 by a score correlating r: E[true | top score] = r sd E[max]
    one = selection_gain(0.1, pool=50, top=1, prescreen_r=0.5, final_r=0.0)
    assert one["gain"] == pytest.approx(0.1 * 0.5 * best, abs=3 * one["gain_std"] / 100)
    perfect = selection_gain(0.1, pool=50, top=8, prescreen_r=1.0, final_r=1.0)
    assert perfect["oracle"] == 0.1 * best  # 3 Monte Carlo standard errors (10,000 trials):
    assert perfect["gain"] == pytest.approx(perfect["oracle"], abs=3 * perfect["gain_std"] / 100)
    blind = selection_gain(0.1, pool=50, top=8, prescreen_r=0.0, final_r=0.0)
    assert abs(blind["gain"]) < 3 * blind["gain_std"] / 100  # a coin: a random pick
    # a truer final score of the same 8 finalists chooses better, never above the oracle
    gains = [selection_gain(0.1, 50, 8, 0.4, r)["gain"] for r in (0.2, 0.6, 0.95)]
    assert gains == sorted(gains) and gains[-1] < perfect["oracle"]
    with pytest.raises(ValueError, match="top <= pool"):
        selection_gain(0.1, pool=5, top=6, prescreen_r=0.5, final_r=0.5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        selection_gain(0.1, pool=5, top=2, prescreen_r=1.5, final_r=0.5)


def test_pearson_from_tau_inverts_kendalls_tau_of_a_normal_pair():
    assert pearson_from_tau(1 / 3) == pytest.approx(0.5) and pearson_from_tau(0.0) == 0.0
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000)
    y = 0.7 * x + 0.51 ** 0.5 * rng.standard_normal(4000)
    assert pearson_from_tau(stats.kendalltau(x, y).statistic) == pytest.approx(0.7, abs=0.03)


def test_rank_retrains_each_cell_once_and_reports_tau(smoke_search, tmp_path, monkeypatch):
    overrides = [f"run={smoke_search}", "rank.cells=3", "rank.pool=16", "rank.policy_cells=1",
                 f"rank.cells_dir={tmp_path / 'cells'}", f"rank.recipe={TINY}",
                 "rank.bootstrap=50"]
    result = run_job("rank", make_cfg("rank", *overrides), tmp_path / "a")
    cells = result["cells"]
    assert [c["source"] for c in cells] == ["uniform"] * 3 + ["policy"]
    assert result["n"] == 4 and not result["failed"] and result["judge"] == "last"
    shared = [c["shared_psnr"] for c in cells]
    retrained = [c["retrained_psnr"] for c in cells]
    assert result["kendall_tau"] == pytest.approx(stats.kendalltau(shared, retrained).statistic)
    for c in cells:  # each retrain validated on the hold-out images, not the reward ones
        (folder,) = c["folders"]
        summary = json.loads((tmp_path / "cells" / folder.split("/")[-1] /
                              "summary.json").read_text())
        assert summary["last_val_psnr"] == c["retrained_psnr"]  # the judge: its last epoch
    assert (tmp_path / "a" / "rank.json").is_file() and (tmp_path / "a" / "rank.png").is_file()

    def no_retrain(*args, **kwargs):
        raise AssertionError("a finished cell was retrained again")

    monkeypatch.setattr(subprocess, "run", no_retrain)  # a second rank job reuses them all
    again = run_job("rank", make_cfg("rank", *overrides), tmp_path / "b")
    assert [c["retrained_psnr"] for c in again["cells"]] == retrained


def test_two_retrain_seeds_average_each_cell_and_report_their_agreement(smoke_search, tmp_path):
    overrides = [f"run={smoke_search}", "rank.cells=3", "rank.pool=16", "rank.policy_cells=0",
                 f"rank.cells_dir={tmp_path / 'cells'}", f"rank.recipe={TINY}",
                 "rank.bootstrap=50"]
    one = run_job("rank", make_cfg("rank", *overrides), tmp_path / "a")
    two = run_job("rank", make_cfg("rank", *overrides, "rank.retrain_seeds=[0,1]"),
                  tmp_path / "b")
    assert one["retrain_seed_agreement"] is None
    for a, b in zip(one["cells"], two["cells"], strict=True):
        assert b["folders"][0] == a["folders"][0]  # seed 0's retrain is reused, not redone
        assert [OmegaConf.load(Path(f) / "config.yaml").seed for f in b["folders"]] == [0, 1]
        assert b["retrained_psnrs"][0] == a["retrained_psnr"]
        assert b["retrained_psnr"] == pytest.approx(sum(b["retrained_psnrs"]) / 2)
    agree = two["retrain_seed_agreement"]
    firsts, seconds = zip(*(c["retrained_psnrs"] for c in two["cells"]), strict=True)
    assert agree["kendall_tau"] == pytest.approx(stats.kendalltau(firsts, seconds).statistic)
    assert one["variance"] is None
    assert two["variance"] == variance_components([c["retrained_psnrs"] for c in two["cells"]],
                                                  480, 50, 0)
    assert one["early_stop_agreement"] is None
    early = two["early_stop_agreement"]  # TINY trains one epoch: seed 0's final vs seed 1's
    assert [e["epoch"] for e in early] == [1] and early[0]["steps"] == 2
    assert early[0]["kendall_tau"] == pytest.approx(agree["kendall_tau"])


def test_rank_takes_the_cells_of_a_file_instead_of_drawing_them(smoke_search, tmp_path):
    cost = lambda g: genotype_cost(g, 8, 2, 2)  # noqa: E731
    cells = spread_draws(5, 3, 50, 7, cost)
    (tmp_path / "cells.json").write_text(json.dumps([g.to_dict()["nodes"] for g in cells]))
    result = run_job("rank", make_cfg(
        "rank", f"run={smoke_search}", f"rank.cells_file={tmp_path / 'cells.json'}",
        "rank.policy_cells=0", f"rank.cells_dir={tmp_path / 'cells'}", f"rank.recipe={TINY}",
        "rank.bootstrap=50"), tmp_path / "a")
    assert [c["genotype"] for c in result["cells"]] == [g.to_dict()["nodes"] for g in cells]
    assert {c["source"] for c in result["cells"]} == {"given"}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not a JSON list of cells"):
        run_job("rank", make_cfg("rank", f"run={smoke_search}",
                                 f"rank.cells_file={tmp_path / 'bad.json'}"), tmp_path / "b")
