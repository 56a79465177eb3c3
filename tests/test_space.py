"""The search space as a choice (``space=``): the default is the cell space it always was;
the wide space searches end to end."""

import json

import numpy as np
import pytest
import torch

from conftest import make_cfg
from controllers import build_controller
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.options import check_options
from nas_sr.search import latency
from nas_sr.search.supernet import build_supernet, space_ops
from search_spaces.genotypes import Genotype, space_size
from search_spaces.operations import OP_NAMES, REGISTRY

# the first two draws of seed 0, written down before the space became a choice
BEFORE = {
    "random": [[0, 3, 1, 0, 1, 3, 1, 3, 1, 3, 1, 2, 1, 3, 3, 0, 0, 0, 2, 1],
               [0, 3, 1, 2, 2, 1, 1, 1, 1, 0, 1, 0, 3, 0, 0, 1, 4, 3, 5, 0]],
    "enas": [[1, 0, 1, 1, 2, 3, 2, 3, 1, 1, 2, 2, 1, 2, 4, 3, 3, 3, 3, 0],
             [0, 3, 1, 3, 2, 2, 1, 0, 0, 1, 0, 0, 0, 2, 0, 3, 2, 1, 3, 3]],
}


@pytest.mark.parametrize("name", ["random", "enas"])
def test_the_default_space_draws_the_cells_it_drew_before_it_was_a_choice(name):
    cfg = make_cfg("search")
    assert cfg.space.name == "enas" and space_ops(cfg) == OP_NAMES
    torch.manual_seed(0)
    controller = build_controller(name, 5, ops=space_ops(cfg))
    rng = torch.Generator().manual_seed(0)
    assert [controller.sample(rng).genotype.to_decisions() for _ in range(2)] == BEFORE[name]
    assert space_size(5, space_ops(cfg))["decision_sequences"] == 543_581_798_400


def test_the_wide_space_draws_every_registered_op():
    ops = space_ops(make_cfg("search", "space=wide"))
    assert set(ops) == set(REGISTRY)
    controller = build_controller("random", 5, ops=ops)
    rng = torch.Generator().manual_seed(0)
    drawn = {op for _ in range(100) for op in controller.sample(rng).genotype.ops()}
    assert drawn == set(ops)


@pytest.mark.parametrize("ops, message", [
    ("[conv_3x3,conv_9x9]", r"unknown op\(s\) \['conv_9x9'\]"),
    ("[conv_3x3,conv_3x3]", "a list of distinct ops"),
    ("[]", "a list of distinct ops"),
])
def test_a_space_of_unknown_or_repeated_ops_is_refused(ops, message):
    with pytest.raises(ConfigError, match=message):
        check_options("search", make_cfg("search", f"space.ops={ops}"))


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["enas", "random"])
def test_a_smoke_search_in_the_wide_space_runs_end_to_end(tmp_path, capsys, controller):
    cfg = make_cfg("search", "space=wide", f"controller={controller}", "logger.plots=true")
    check_options("search", cfg)
    summary = run_job("search", cfg, tmp_path)
    best = Genotype.from_dict(json.loads((tmp_path / "genotype.json").read_text()))
    assert set(best.ops()) <= set(REGISTRY)
    assert summary["space_size"] == space_size(cfg.archs.cell.nodes, space_ops(cfg))
    assert (tmp_path / "plots" / "op_frequencies.png").is_file()
    assert f"retrain it with: nas-sr retrain genotype={tmp_path / 'genotype.json'}" in \
        capsys.readouterr().out


def test_the_supernet_options_shape_the_shared_weights_and_a_bad_one_is_refused():
    cell = build_supernet(make_cfg("search", "search.supernet.share=input",
                                   "search.supernet.norm=true")).cells[0]
    assert cell.by_input and cell.norms is not None
    plain = build_supernet(make_cfg("search")).cells[0]  # the defaults: as before
    assert not plain.by_input and plain.norms is None
    with pytest.raises(ConfigError, match="search.supernet.share='edge': use slot or input"):
        check_options("search", make_cfg("search", "search.supernet.share=edge"))


def test_a_wide_search_under_a_latency_budget_writes_latency_into_pareto(tmp_path):
    names = [*(f"op:{op}" for op in REGISTRY), "add", *(f"combine:{k}" for k in range(1, 6)),
             "head", "tail:2"]
    table = {"machine": latency.machine(), "reference_lr": [16, 16], "threads": [2],
             "widths": [8], "scales": [2], "nodes": 5,
             "entries": {"2": {n: {"8": 1.0 + i % 7} for i, n in enumerate(names)}}}
    (tmp_path / "table.json").write_text(json.dumps(table))
    cfg = make_cfg("search", "space=wide", f"search.budget.latency_table={tmp_path / 'table.json'}")
    ops, rng = space_ops(cfg), torch.Generator().manual_seed(0)
    draws = [build_controller("random", 5, ops=ops).sample(rng).genotype for _ in range(50)]
    predicted = [latency.predict_latency(g, 8, 2, 2, table, 2, [360, 640]) for g in draws]
    budget = float(np.percentile(predicted, 70))
    cfg = make_cfg("search", "space=wide", f"search.budget.latency_table={tmp_path / 'table.json'}",
                   f"search.budget.latency_ms={budget}")
    check_options("search", cfg)
    run_job("search", cfg, tmp_path / "run")
    pareto = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert pareto["budget"]["latency_ms"] == budget and "latency_ms" in pareto["front"]
    assert all(c["latency_ms"] <= budget for c in pareto["cells"])  # proposals kept the band
