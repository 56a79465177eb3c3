import math

import pytest
import torch
from scipy import stats

from controllers import RandomController
from nas_sr.archs.complexity import mult_adds
from nas_sr.archs.luma import LumaSR
from nas_sr.search.stats import rank_correlation
from search_spaces.cost import (
    budget_penalty,
    cheapest_cost,
    genotype_cost,
    pareto_front,
    within_budget,
)
from search_spaces.genotypes import Genotype, Node
from search_spaces.network import CellSRNet, count_params


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_closed_form_cost_equals_the_built_networks(scale):
    rng = torch.Generator().manual_seed(scale)
    ctrl = RandomController(5)
    for _ in range(4):
        g = ctrl.sample(rng).genotype
        net = CellSRNet(scale, 16, 3, 5, g)
        cost = genotype_cost(g, 16, 3, scale)
        assert cost == {"params": count_params(net), "mult_adds": mult_adds(net, scale)}
        on_y = LumaSR(CellSRNet(scale, 16, 3, 5, g, colors=1))  # one channel in and out
        assert genotype_cost(g, 16, 3, scale, colors=1) == {
            "params": count_params(on_y), "mult_adds": mult_adds(on_y, scale)}
        tail1 = CellSRNet(scale, 16, 3, 5, g, upsampler="conv1")  # a 1x1 sub-pixel conv
        assert genotype_cost(g, 16, 3, scale, upsampler="conv1") == {
            "params": count_params(tail1), "mult_adds": mult_adds(tail1, scale)}
        assert count_params(tail1) < cost["params"]


@pytest.mark.parametrize("nodes, scale", [(1, 2), (3, 3), (5, 4)])
def test_cheapest_cost_is_a_floor_no_cell_goes_under_and_one_reaches(nodes, scale):
    least = cheapest_cost(nodes, 16, 3, scale)
    rng = torch.Generator().manual_seed(nodes)
    ctrl = RandomController(nodes)
    for _ in range(200):
        cost = genotype_cost(ctrl.sample(rng).genotype, 16, 3, scale)
        assert cost["params"] >= least["params"] and cost["mult_adds"] >= least["mult_adds"]
    # the floor is a real network's (a chain of identities), counted on the built net
    chain = CellSRNet(scale, 16, 3, nodes, Genotype(tuple(
        Node(j + 1, "identity", j + 1, "identity") for j in range(nodes))))
    assert least == {"params": count_params(chain), "mult_adds": mult_adds(chain, scale)}


def test_budget_penalty_is_zero_within_and_grows_monotonically_over():
    budget = {"params": 1000, "mult_adds": None}
    costs = [500, 1000, 1001, 1500, 2000, 4000]
    pens = [budget_penalty({"params": c, "mult_adds": 1}, budget, beta=1.0)
            for c in costs]
    assert pens[:2] == [0.0, 0.0]
    assert all(b > a for a, b in zip(pens[1:], pens[2:], strict=False))
    assert pens[4] == pytest.approx(10 * math.log10(2))  # twice over: error must halve
    both = {"params": 1000, "mult_adds": 10}
    assert budget_penalty({"params": 2000, "mult_adds": 20}, both, 1.0) == pytest.approx(
        2 * pens[4])
    assert within_budget({"params": 1000, "mult_adds": 5}, both)
    assert not within_budget({"params": 1000, "mult_adds": 11}, both)
    assert within_budget({"params": 10**9, "mult_adds": 10**9}, {"params": None})


def test_target_mode_charges_the_distance_from_the_budget_on_both_sides():
    budget = {"params": 1000, "mult_adds": None}

    def pen(c, mode):
        return budget_penalty({"params": c, "mult_adds": 1}, budget, 0.5, mode)

    assert pen(1000, "target") == 0.0
    assert pen(500, "target") == pytest.approx(pen(2000, "target")) == pytest.approx(
        5 * math.log10(2))  # half the budget pays as much as twice it
    assert pen(2000, "target") == pen(2000, "max") and pen(500, "max") == 0.0
    under = [pen(c, "target") for c in (100, 250, 500, 900, 1000)]
    assert all(b < a for a, b in zip(under, under[1:], strict=False))  # nearer pays less
    with pytest.raises(ValueError, match="budget mode 'min'"):
        pen(10, "min")


def test_pareto_front_on_a_hand_made_set():
    #         0          1          2         3          4          5 (ties 1)  6
    points = [(1, 30.0), (2, 31.0), (3, 30.5), (4, 32.0), (5, 31.9), (2, 31.0), (0.5, 29.0)]
    front = pareto_front(points)
    assert front == [6, 0, 1, 3]  # by cost; 2 and 4 are dominated, 5 duplicates 1
    assert pareto_front([]) == []


def test_rank_correlation_matches_hand_counts_and_scipy():
    x = [1, 2, 3, 4, 5]
    y = [1, 3, 2, 5, 4]  # 8 concordant, 2 discordant pairs of 10
    out = rank_correlation(x, y, resamples=200)
    assert out["kendall_tau"] == pytest.approx(0.6)
    assert out["spearman_rho"] == pytest.approx(1 - 6 * 4 / (5 * 24))
    rng = torch.Generator().manual_seed(0)
    a, b = torch.rand(30, generator=rng).tolist(), torch.rand(30, generator=rng).tolist()
    out = rank_correlation(a, b, resamples=500)
    assert out["kendall_tau"] == pytest.approx(stats.kendalltau(a, b).statistic)
    assert out["spearman_rho"] == pytest.approx(stats.spearmanr(a, b).statistic)
    lo, hi = out["kendall_tau_ci"]
    assert lo < out["kendall_tau"] < hi and -1 <= lo and hi <= 1
    assert rank_correlation(x, x, resamples=50)["kendall_tau_ci"] == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="at least 3"):
        rank_correlation([1, 2], [2, 1])
