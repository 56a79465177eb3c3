"""The network's size as a searched decision (``space.macro``): width against depth, carried
by the genotype through proposals, costs, the proxy, the table and the retrain."""

import json
import logging

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import nas_sr.search.proxy as proxy_module
from conftest import make_cfg
from controllers import EvolutionController, PredictorController, RandomController
from controllers.evolution import mutate
from controllers.predictor import features
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.jobs.retrain import model_spec
from nas_sr.options import check_options
from nas_sr.search.band import Band
from nas_sr.search.proxy import ProxySetting, proxy_run
from nas_sr.search.replay import nearest, replay
from nas_sr.search.sizes import MAX_CELLS, pick_sizes, probe_cells
from nas_sr.search.stats import group_means
from nas_sr.search.table import KIND, SAME, VERSION, Table, read_table, row_cell, write_table
from search_spaces.cost import genotype_cost
from search_spaces.genotypes import Genotype, GenotypeError, Node, space_size
from search_spaces.operations import OP_NAMES

MACROS = ((16, 10), (32, 4), (48, 2), (64, 1))
CELL = Genotype((Node(0, "conv_3x3", 1, "identity"), Node(2, "sep_conv_3x3", 0, "conv_3x3")))


def test_a_genotypes_macro_survives_decisions_and_json_and_keys_it_apart():
    g = Genotype(CELL.nodes, (48, 2))
    d = g.to_decisions(OP_NAMES, MACROS)
    assert d[-1] == 2 and Genotype.from_decisions(d, OP_NAMES, MACROS) == g
    assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert g != CELL and len({g, CELL, Genotype(CELL.nodes, (32, 4))}) == 3
    assert g.width((32, 4)) == (48, 2) and CELL.width((32, 4)) == (32, 4)
    assert str(g).endswith("48 channels x 2 cells")
    assert space_size(2, OP_NAMES, MACROS)["distinct_cells"] == \
        4 * space_size(2, OP_NAMES)["distinct_cells"]
    with pytest.raises(GenotypeError, match="not among the space's"):
        Genotype(CELL.nodes, (24, 6)).to_decisions(OP_NAMES, MACROS)
    with pytest.raises(GenotypeError, match="not among the space's"):
        g.to_decisions(OP_NAMES)  # a space of one size has no decision for it
    with pytest.raises(GenotypeError, match="expected \\[channels, cells\\]"):
        Genotype.from_dict({"nodes": g.to_dict()["nodes"], "macro": [32, 0]})


def test_evolutions_macro_mutation_moves_one_step_along_the_list_and_keeps_the_cell():
    gen = torch.Generator().manual_seed(0)
    parent = Genotype(CELL.nodes, (32, 4))
    moved = [c for c in (mutate(parent, OP_NAMES, gen, MACROS) for _ in range(400))
             if c.nodes == parent.nodes and c != parent]  # (a swap of alike ops is neither)
    assert {c.macro for c in moved} == {(16, 10), (48, 2)}  # neighbours only
    children = [mutate(parent, OP_NAMES, gen, MACROS) for _ in range(400)]
    assert all(c.macro == parent.macro for c in children if c.nodes != parent.nodes)
    # a space of one size mutates as before: the same draws, the same children
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert [mutate(CELL, OP_NAMES, a) for _ in range(20)] == \
        [mutate(CELL, OP_NAMES, b, ()) for _ in range(20)]


def test_each_strategy_proposes_only_in_band_networks_priced_at_their_own_size():
    cfg = make_cfg("search", "controller=random", "search.trials.count=4",
                   "space.macro=[[8,1],[16,2],[24,3]]", "search.budget.params=60000",
                   "search.budget.floor=0.5")
    band, gen = Band(cfg), torch.Generator().manual_seed(0)
    macros = ((8, 1), (16, 2), (24, 3))
    strategies = [RandomController(5, macros=macros),
                  EvolutionController(5, population=4, tournament=2, macros=macros),
                  PredictorController(5, warmup=4, candidates=16, trees=4, macros=macros)]
    for ctrl in strategies:
        band.constrain(ctrl)
        for _ in range(12):
            s = band.propose(ctrl, gen)
            g = s.genotype
            assert g in band and g.macro in macros
            assert band.cost(g)["params"] == genotype_cost(g, *g.macro, cfg.scale)["params"]
            ctrl.update([s], [float(g.macro[0])])
    drawn = {band.propose(strategies[0], gen).genotype.macro for _ in range(60)}
    assert drawn == {(16, 2), (24, 3)}  # 8 x 1 cannot reach half the budget
    assert features(Genotype(CELL.nodes, (24, 3)), OP_NAMES)[-2:].tolist() == [24, 3]


def test_the_proxy_trains_a_network_at_its_genotypes_size(monkeypatch):
    built = []

    class Spy(proxy_module.CellSRNet):
        def __init__(self, scale, channels, cells, *args, **kwargs):
            built.append((channels, cells))
            super().__init__(scale, channels, cells, *args, **kwargs)

    monkeypatch.setattr(proxy_module, "CellSRNet", Spy)
    setting = ProxySetting(channels=4, cells=1, steps=1, batch_size=1, patch_size=8, lr=1e-3)
    pair = (torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 8))
    proxy_run(Genotype(CELL.nodes, (6, 2)), pair, {"reward": pair}, 2, setting, 0)
    proxy_run(CELL, pair, {"reward": pair}, 2, setting, 0)
    assert built == [(6, 2), (4, 1)]


@pytest.mark.parametrize("overrides, message", [
    (["space.macro=[[16]]"], "give distinct \\[channels, cells\\] pairs"),
    (["space.macro=[[16,2],[16,2]]"], "give distinct"),
    (["space.macro=[[16,2],[32,1]]", "controller=enas"], "on the trial engine"),
    (["space.macro=[[16,2],[32,1]]", "controller=random"], "on the trial engine"),
    (["space.macro=[[16,2],[32,1]]", "controller=random", "search.trials.count=4",
      "search.proxy.channels=8"], "leave them null"),
    # no size of the space fits: the cheapest size is named, not the unsearched width
    (["space.macro=[[64,1],[48,2]]", "controller=random", "search.trials.count=4",
      "search.budget.params=10000"], "11,244 at 48 channels x 2 cells.*space.macro"),
])
def test_a_macro_the_search_cannot_use_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_options("search", make_cfg("search", *overrides))


@pytest.mark.parametrize("overrides", [
    ["space.macro=[[16,1],[24,2]]", "controller=random", "search.trials.count=4"],
    ["train.cell.colors=1"],  # a network on Y is cheaper than the RGB one
])
def test_a_budget_only_the_searched_sizes_or_form_reach_is_accepted(overrides):
    cfg = make_cfg("search", "train.cell.channels=32", "train.cell.cells=4",
                   "search.budget.params=6000", *overrides)
    check_options("search", cfg)  # 32 x 4 on RGB costs 8,588 at least


def test_the_band_checks_the_latency_table_at_each_searched_width(tmp_path):
    from test_latency import hand_made
    path = tmp_path / "table.json"
    path.write_text(json.dumps(hand_made(width=8)))
    base = ["controller=random", "search.trials.count=4", "search.budget.latency_ms=1e6",
            f"search.budget.latency_table={path}", "search.budget.latency_lr=[16,16]",
            "search.budget.latency_threads=1",
            "train.cell.channels=8", "archs.cell.nodes=2"]
    band = Band(make_cfg("search", *base))
    with pytest.raises(ConfigError, match="width 16"):  # refused at once, not in a worker
        Band(make_cfg("search", *base, "space.macro=[[8,1],[16,1]]"))
    fastest = band.cost(Genotype((Node(1, "identity", 1, "identity"),)))["latency_ms"]
    Band(make_cfg("search", *base, f"search.budget.latency_ms={fastest}"))  # just reached
    with pytest.raises(ConfigError, match=rf"latency_ms={fastest / 2}: below the fastest "
                                          rf"network the space builds, {fastest:.1f} ms"):
        Band(make_cfg("search", *base, f"search.budget.latency_ms={fastest / 2}"))
    # sizes still to be picked for the budget: smaller depths may reach it (search.sizes)
    Band(make_cfg("search", *base, f"search.budget.latency_ms={fastest / 2}",
                  "space.macro_widths=[8]"))


def test_the_retrain_warns_only_of_a_size_the_macro_overrides(tmp_path, caplog):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(Genotype(CELL.nodes, (6, 2)).to_dict()))
    for extra, warned in ((["train.cell.colors=1"], False), (["train.cell.channels=6"], False),
                          (["train.cell.channels=32"], True)):
        caplog.clear()
        spec = model_spec(make_cfg("retrain", f"genotype={path}", *extra))
        assert (spec["channels"], spec["cells"]) == (6, 2)
        assert ("is not used" in caplog.text) == warned, (extra, caplog.text)


def test_a_macro_search_chooses_a_size_retrains_at_it_and_tables_and_replays(tmp_path):
    cfg = make_cfg("search", "search.proxy.steps=2", "search.proxy.batch_size=2",
                   "search.proxy.patch_size=16", "threads=1", "controller=random",
                   "search.trials.count=4", "search.proxy.seeds=[0,1]",
                   "space.macro=[[4,1],[6,2]]")
    check_options("search", cfg)
    summary = run_job("search", cfg, tmp_path / "s")
    chosen = Genotype.from_dict(summary["genotype"])
    assert chosen.macro in ((4, 1), (6, 2))
    cost = summary["cost_at_retrain_width"]
    assert (cost["channels"], cost["cells"]) == chosen.macro
    arch = json.loads((tmp_path / "s" / "genotype.json").read_text())["arch"]
    assert (arch["channels"], arch["cells"]) == chosen.macro
    pareto = json.loads((tmp_path / "s" / "pareto.json").read_text())["cells"]
    assert all(c["params"] == genotype_cost(Genotype.from_dict({"nodes": c["genotype"]}),
                                            *c["macro"], 2)["params"]
               for c in pareto)
    # the retrain builds the searched size, whatever train.cell says
    spec = model_spec(make_cfg("retrain", f"genotype={tmp_path / 's' / 'genotype.json'}",
                               "train.cell.channels=32"))
    assert (spec["channels"], spec["cells"]) == chosen.macro
    # its table rows keep their sizes, and replay draws among them
    out = tmp_path / "table.jsonl"
    run_job("table", make_cfg("table", f"runs=[{tmp_path / 's'}]", f"output={out}"),
            tmp_path / "t")
    head, rows = read_table(out)
    assert head["macros"] == [[4, 1], [6, 2]] and all(r["macro"] in head["macros"]
                                                      for r in rows)
    table = Table.load(out)
    assert {g.macro for g in table.cells} <= {(4, 1), (6, 2)}
    result = replay(table, {"evolution": {"population": 2, "tournament": 2},
                            "predictor": {"warmup": 2, "candidates": 8, "trees": 4}},
                    [2], seeds=3, final_top=2, batch=1)
    assert set(result["budgets"][2]) == {"random", "evolution", "predictor"}


def test_group_means_finds_a_planted_lead_and_no_lead_where_there_is_none():
    rng = np.random.default_rng(0)
    planted = group_means({"a": rng.normal(31.0, 0.05, 16), "b": rng.normal(31.2, 0.05, 16),
                           "c": rng.normal(31.1, 0.05, 16)})
    assert planted["best"] == "b" and planted["worst"] == "a"
    assert 0.15 < planted["difference"] < 0.25 and planted["difference_ci"][0] > 0.1
    g = planted["groups"]["c"]
    assert g["n"] == 16 and g["ci"][0] < g["mean"] < g["ci"][1]
    same = group_means({"a": rng.normal(31.0, 0.05, 16), "b": rng.normal(31.0, 0.05, 16)})
    assert same["difference_ci"][0] < 0.03  # a lead of the best drawn, not of a planted one
    with pytest.raises(ValueError, match="two groups"):
        group_means({"a": [1.0, 2.0]})


def test_searches_at_two_sizes_join_as_one_table_whose_macro_is_the_size(tmp_path, capsys):
    base = ["search.proxy.steps=2", "search.proxy.batch_size=2", "search.proxy.patch_size=16",
            "threads=1", "controller=random", "search.trials.count=3", "search.proxy.seeds=[0,1]"]
    for c, n in ((4, 1), (6, 2)):
        run_job("search", make_cfg("search", *base, f"train.cell.channels={c}",
                                   f"train.cell.cells={n}"), tmp_path / f"c{c}")
    runs = f"runs=[{tmp_path / 'c4'},{tmp_path / 'c6'}]"
    out = tmp_path / "table.jsonl"
    with pytest.raises(ConfigError, match="width, recipe.*sizes_as_macro=true"):
        run_job("table", make_cfg("table", runs, f"output={out}"), tmp_path / "t0")
    run_job("table", make_cfg("table", runs, f"output={out}", "sizes_as_macro=true"),
            tmp_path / "t")
    printed = capsys.readouterr().out  # each size's mean, and the best's lead
    assert "| 4 x 1 | 3 |" in printed and "| 6 x 2 | 3 |" in printed and " leads " in printed
    head, rows = read_table(out)
    assert head["macros"] == [[6, 2], [4, 1]] and {len(r["decisions"]) for r in rows} == {21}
    assert sorted(r["macro"] for r in rows) == [[4, 1]] * 3 + [[6, 2]] * 3
    table = Table.load(out)
    assert [g.macro for g in table.cells] == [tuple(r["macro"]) for r in rows]
    # the joined table joins again, with a study of a size it has: the same table
    again = tmp_path / "again.jsonl"
    run_job("table", make_cfg("table", f"runs=[{out},{tmp_path / 'c6'}]", f"output={again}",
                              "sizes_as_macro=true"), tmp_path / "t2")
    assert read_table(again)[1] == rows
    result = replay(table, {"evolution": {"population": 2, "tournament": 2}}, [3], seeds=3,
                    final_top=2, batch=1)
    assert set(result["budgets"][3]) == {"random", "evolution"}


def shard(path, size, cells, seeds=(0,), shift=0.0, latency=False):
    """A table file of ``cells`` (one proxy per seed) trained at ``size`` = (C, N)."""
    head = {"kind": KIND, "version": VERSION, "space": "enas", "ops": list(OP_NAMES),
            "nodes": 5, "scale": 2, "width": [32, 4], "reward_crops": 4, "final_crops": 4,
            "recipe": {"steps": 400, "channels": size[0], "cells": size[1]}, "extend": []}
    assert set(SAME) <= set(head)
    rows = [{"decisions": g.to_decisions(OP_NAMES), "genotype": g.to_dict()["nodes"],
             "params": 1000 + i, "mult_adds": 1, **({"latency_ms": 5.0} if latency else {}),
             "runs": {str(s): {"reward": [30.0 + shift + i / 10] * 4,
                               "final": [30.0 + shift + i / 10] * 4} for s in seeds}}
            for i, g in enumerate(cells)]
    write_table(path, head, rows)
    return str(path)


def test_sizes_join_as_the_size_their_proxies_trained_at_in_one_order(tmp_path, capsys,
                                                                      caplog):
    draw, gen = RandomController(5), torch.Generator().manual_seed(0)
    cells = [draw.sample(gen).genotype for _ in range(3)]
    # one proxy seed each (the default), the deep size with latency and the wide without
    deep = shard(tmp_path / "deep.jsonl", (16, 10), cells, latency=True)
    wide = shard(tmp_path / "wide.jsonl", (64, 1), cells, shift=0.5)
    tables = []
    for i, runs in enumerate(([deep, wide], [wide, deep])):
        out = tmp_path / f"t{i}.jsonl"
        run_job("table", make_cfg("table", f"runs=[{','.join(runs)}]", f"output={out}",
                                  "sizes_as_macro=true"), tmp_path / f"job{i}")
        tables.append(read_table(out))
        assert (tmp_path / f"job{i}" / "summary.json").is_file()  # the summary too
    printed = capsys.readouterr().out
    assert "1 seed(s)" in printed and "64 x 1 leads 16 x 10 by 0.500 dB" in printed
    # the size is the proxy's (the recipe's), not the retrain width both headers share,
    # and the list runs deepest first whatever order the sources came in
    (head, rows), (head2, rows2) = tables
    assert head == head2 and head["macros"] == [[16, 10], [64, 1]]
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, rows2))
    assert {r["decisions"][-1]: r["macro"] for r in rows} == {0: [16, 10], 1: [64, 1]}
    # priced at that size too (the shards priced them at the width), the budget latency
    # (priced at the width) dropped
    assert all(r["params"] == genotype_cost(row_cell(r), *r["macro"], 2)["params"]
               and "latency_ms" not in r for r in rows)
    assert Table.load(tmp_path / "t0.jsonl", 1).costs.keys() == {"params", "mult_adds"}
    # one cell's same seed scored otherwise by two sources: the first kept, and said
    clash = shard(tmp_path / "clash.jsonl", (16, 10), cells, shift=0.1)
    with caplog.at_level(logging.WARNING):
        run_job("table", make_cfg("table", f"runs=[{deep},{clash}]",
                                  f"output={tmp_path / 'x.jsonl'}"), tmp_path / "job3")
    assert "proxy seed 0 scored otherwise" in caplog.text
    assert read_table(tmp_path / "x.jsonl")[1][0]["runs"] == read_table(deep)[1][0]["runs"]


def test_replay_moves_a_mutated_size_to_a_cell_of_that_size():
    macros = ((16, 10), (64, 1))
    near = Genotype((CELL.nodes[0], Node(2, "conv_3x3", 0, "conv_3x3")), macros[0])
    far = Genotype((Node(0, "identity", 0, "identity"), Node(0, "identity", 1, "identity")),
                   macros[1])
    parent = Genotype(CELL.nodes, macros[0])
    cells = [parent, near, far]  # near: one op from the parent, at its size; far: all else
    table = Table({"ops": list(OP_NAMES), "macros": [list(m) for m in macros]}, cells,
                  np.array([g.to_decisions(OP_NAMES, macros) for g in cells]), {},
                  np.zeros((3, 1)), np.zeros(3))
    child = Genotype(parent.nodes, macros[1])  # the parent's size mutated, its cell kept
    for seed in range(5):  # counted plainly, ``near`` is 2 decisions away and ``far`` more
        assert nearest(table, child, parent, torch.Generator().manual_seed(seed)) == far


def _brute_force(cfg, widths):
    """The rule, over every depth: of the depths with a probe cell in the band, the nearest
    median (the largest gap over the limits, as a log ratio), the deepest on ties."""
    band, probe, b = Band(cfg), probe_cells(cfg), cfg.search.budget
    limits = {k: v for k, v in band.limits.items() if v}
    picks = []
    for width in widths:
        ranked = []
        for n in range(1, MAX_CELLS + 1):
            nets = [Genotype(nodes, (width, n)) for nodes in probe]
            median = {k: float(np.median([band.cost(g)[k] for g in nets])) for k in limits}
            gap = max(max(np.log(m / limits[k]), np.log(b.floor * limits[k] / m) if b.floor
                          else 0, 0)
                      for k, m in median.items())
            if any(g in band for g in nets):
                ranked.append((gap, -n))
        if ranked:
            picks.append((width, -min(ranked)[1]))
    return picks


@pytest.mark.parametrize("limits", [
    ["search.budget.params=60000"], ["search.budget.params=60000", "search.budget.floor=0.9"],
    # two limits pulling apart: a deeper network can come nearer one band while past the
    # other's top, so the scan may not stop at the first median over a limit
    *(["search.budget.floor=0.9", f"search.budget.params={p}", f"search.budget.latency_ms={ms}"]
      for p, ms in ((20000, 130), (30000, 60), (12000, 200)))])
def test_each_width_gets_the_nearest_depth_with_cells_in_the_band(tmp_path, limits):
    from test_latency import hand_made
    table = hand_made(width=8)
    table["widths"] = [8, 16]
    for rows in table["entries"].values():  # the same time at both widths: latency follows
        for row in rows.values():           # the depth, params the width too
            row["16"] = row["8"] = 1.0
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    latency = [f"search.budget.latency_table={path}", "search.budget.latency_lr=[16,16]",
               "search.budget.latency_threads=1"]
    cfg = make_cfg("search", "controller=random", "search.trials.count=4", "archs.cell.nodes=2",
                   "train.cell.channels=8", *limits, *latency)
    picks = pick_sizes(cfg, [8, 16])
    assert [p.macro for p in picks] == _brute_force(cfg, [8, 16]) != []
    assert all(0 < p.in_band <= 1 for p in picks)
    assert probe_cells(cfg) == probe_cells(make_cfg("search", "archs.cell.nodes=2", "seed=7"))


def test_widths_no_cell_reaches_are_left_out_and_a_band_none_reaches_is_refused(caplog):
    cfg = make_cfg("search", "controller=random", "search.trials.count=4",
                   "search.budget.params=8000")
    with caplog.at_level(logging.WARNING):
        assert [p.macro[0] for p in pick_sizes(cfg, [8, 64])] == [8]
    assert "width 64 left out: at no depth up to 32 cells" in caplog.text
    with pytest.raises(ConfigError, match=r"space.macro_widths=\[64, 96\]: at no depth"):
        pick_sizes(cfg, [64, 96])
    with pytest.raises(ConfigError, match="set search.budget.latency_ms, params"):
        pick_sizes(make_cfg("search", "controller=random", "search.trials.count=4"), [8])
    for bad in ("[8,8]", "[0]", "[[8,1]]"):
        with pytest.raises(ConfigError, match="give distinct channel counts"):
            check_options("search", make_cfg("search", "controller=random",
                                             "search.trials.count=4",
                                             f"space.macro_widths={bad}"))
    with pytest.raises(ConfigError, match="on the trial engine"):
        check_options("search", make_cfg("search", "space.macro_widths=[8]"))


def test_a_search_writes_the_sizes_it_picked_into_its_config_and_keeps_them_on_resume(
        tmp_path, monkeypatch, capsys):
    import nas_sr.jobs.search as search_job
    monkeypatch.setattr(search_job, "run", lambda cfg, run_dir: None)  # the settling only
    cfg = make_cfg("search", "controller=random", "search.trials.count=4",
                   "search.budget.params=60000", "space.macro=[[4,1]]",
                   "space.macro_widths=[8,16]")
    run_job("search", cfg, tmp_path)
    saved = OmegaConf.load(tmp_path / "config.yaml").space
    picked = [p.macro for p in pick_sizes(cfg, [8, 16])]
    assert saved.macro_widths == [] and [tuple(m) for m in saved.macro] == sorted(
        [(4, 1), *picked], key=lambda m: (-m[1], m[0]))  # deepest first
    assert "16 x " in capsys.readouterr().out
    # a resumed run searches the sizes its config holds: none is picked again
    monkeypatch.setattr(search_job, "pick_sizes", None)
    run_job("search", make_cfg("search", f"resume={tmp_path}"))
    assert OmegaConf.load(tmp_path / "config.yaml").space == saved
