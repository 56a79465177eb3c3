"""SR-NAS tables and strategies replayed on them: a planted signal found, paired seeds,
determinism, and a table made from real trial searches."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import make_cfg
from controllers import RandomController
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.search.replay import front_score, nearest, replay, search
from nas_sr.search.stats import hypervolume
from nas_sr.search.table import KIND, VERSION, Table, read_table, write_table
from search_spaces.operations import OP_NAMES

SIGNAL = 0.05  # dB per conv_3x3 of the cell: what the strategies have to find


def synthetic_table(path, cells=300, noise=0.02, seed=0):
    """A table whose PSNR grows with the cell's conv_3x3 count, plus per-seed noise."""
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    draw = RandomController(5)
    rows, seen = [], set()
    while len(rows) < cells:
        g = draw.sample(gen).genotype
        d = tuple(g.to_decisions(OP_NAMES))
        if d in seen:
            continue
        seen.add(d)
        truth = 30 + SIGNAL * sum(op == "conv_3x3" for n in g.nodes for op in (n.op1, n.op2))
        runs = {str(s): {"reward": list(truth + rng.normal(0, noise, 4)),
                         "final": list(truth + rng.normal(0, noise, 8))} for s in (0, 1)}
        rows.append({"decisions": list(d), "genotype": g.to_dict()["nodes"],
                     "params": 1000 + len(rows), "mult_adds": 1, "runs": runs})
    write_table(path, {"kind": KIND, "version": VERSION, "ops": list(OP_NAMES)}, rows)
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return Table.load(synthetic_table(tmp_path_factory.mktemp("table") / "t.jsonl"))


SETTINGS = {"evolution": {"population": 8, "tournament": 3},
            "predictor": {"warmup": 6, "candidates": 64, "trees": 16}}


def test_the_predictor_finds_a_planted_signal_that_random_search_does_not(table):
    result = replay(table, SETTINGS, [32], seeds=60, final_top=4, batch=4)
    gain = result["budgets"][32]["predictor"]["gain"]
    assert gain["ci_low"] > 0, gain  # beats random by more than its 95% interval
    assert gain["mean"] > SIGNAL  # a conv_3x3 more than random's choice, or better
    assert gain["pairs_needed"] < 60
    front = result["budgets"][32]["predictor"]["front_gain"]
    assert front["pairs"] == 60 and front["ci_low"] <= front["mean"] <= front["ci_high"]


def test_the_hypervolume_is_the_area_a_front_dominates_up_to_the_reference():
    # rectangles [1,4]x[0,3] and [2,4]x[0,5]; (3, 4) is dominated; (5, 9) lies past the
    # reference's cost and (0.5, -1) under its PSNR: neither counts
    assert hypervolume([1, 2, 3, 5, 0.5], [3, 5, 4, 9, -1], 4, 0) == pytest.approx(13)
    assert hypervolume([], [], 4, 0) == 0


def test_a_searchs_front_score_grows_with_what_it_trained_and_not_with_dominated_cells(table):
    cheapest_best = int(np.argmax(table.final / table.costs["params"]))
    some = [0, 1, 2, cheapest_best]
    assert front_score(table, some, "params") <= front_score(table, list(range(40)) + some,
                                                             "params")
    worse = [i for i in range(len(table.cells)) if table.final[i] < table.final[cheapest_best]
             and table.costs["params"][i] > table.costs["params"][cheapest_best]]
    assert front_score(table, [cheapest_best], "params") == pytest.approx(
        front_score(table, [cheapest_best, *worse], "params"))


def test_replay_is_deterministic_for_a_seed_and_pairs_share_their_first_cells(table):
    a = [search(table, "predictor", SETTINGS["predictor"], 16, s, 4, 4) for s in range(5)]
    b = [search(table, "predictor", SETTINGS["predictor"], 16, s, 4, 4) for s in range(5)]
    assert a == b
    # with more warm-up than trials, the predictor's draws are random search's: same choice
    late = {"warmup": 100, "candidates": 8, "trees": 2}
    assert ([search(table, "predictor", late, 12, s, 4, 4) for s in range(5)]
            == [search(table, "random", {}, 12, s, 4, 4) for s in range(5)])


def test_evolutions_children_are_the_tables_nearest_cells_other_than_the_parent(table):
    gen = torch.Generator().manual_seed(0)
    parent = table.cells[0]
    for child in table.cells[1:20]:
        got = nearest(table, child, parent, gen)
        assert got in table.cells and got != parent
        assert got == child  # a child the table holds is itself


def test_a_table_made_from_two_trial_searches_replays(tmp_path, monkeypatch):
    base = ["search.proxy.channels=4", "search.proxy.cells=1", "search.proxy.steps=2",
            "search.proxy.batch_size=2", "search.proxy.patch_size=16", "threads=1",
            "controller=random", "search.trials.count=3", "search.proxy.seeds=[0,1]"]
    for i in (0, 1):
        run_job("search", make_cfg("search", *base, f"seed={i}"), tmp_path / f"s{i}")
    out = tmp_path / "table.jsonl"
    runs = f"runs=[{tmp_path / 's0'},{tmp_path / 's1'}]"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no latency table here
    with pytest.raises(ConfigError, match="no latency table .* and measure=false"):
        run_job("table", make_cfg("table", runs, f"output={out}", "latency_threads=[1]"),
                tmp_path / "t0")
    summary = run_job("table", make_cfg("table", runs, f"output={out}", "latency_threads=[1]",
                                        "measure=true", "latency_lr=[24,32]"), tmp_path / "t")
    head, rows = read_table(out)
    assert 3 <= summary["cells"] == len(rows) <= 6 and summary["seeds_per_cell"] == [2]
    assert len(head["extend"]) == 2 and head["recipe"]["steps"] == 2
    assert all(len(r["runs"]["1"]["final"]) == 16 for r in rows)  # smoke's final crops
    assert all(r["measured_ms_t1"] > 0 for r in rows) and head["latency"]["lr_size"] == [24, 32]
    result = run_job("replay", make_cfg("replay", f"replay.table={out}", "replay.seeds=4",
                                        "replay.budgets=[2]"), tmp_path / "r")
    assert set(result["budgets"][2]) == {"random", "evolution", "predictor"}
    assert (tmp_path / "r" / "replay.md").is_file()
    assert "measured_ms_t1" in Table.load(out).costs  # a band can be one of measured latency
    # a shard written before joins a study: the same table, less the machine's latency
    shard, joined = tmp_path / "shard0.jsonl", tmp_path / "joined.jsonl"
    run_job("table", make_cfg("table", f"runs=[{tmp_path / 's0'}]", f"output={shard}"),
            tmp_path / "t1")
    run_job("table", make_cfg("table", f"runs=[{shard},{tmp_path / 's1'}]", f"output={joined}"),
            tmp_path / "t2")
    joined_head, joined_rows = read_table(joined)
    assert {tuple(r["decisions"]): r["runs"] for r in joined_rows} == \
        {tuple(r["decisions"]): r["runs"] for r in rows}
    assert joined_head["extend"] == head["extend"] and "latency" not in joined_head
    assert not any(k.endswith("_t1") for r in joined_rows for k in r)


def test_a_table_from_runs_trained_otherwise_is_refused(tmp_path):
    for i, steps in enumerate((2, 3)):  # two trial searches' folders, before any trial
        (tmp_path / f"s{i}").mkdir()
        OmegaConf.save(make_cfg("search", "search.trials.count=1",
                                f"search.proxy.steps={steps}"), tmp_path / f"s{i}" / "config.yaml")
        (tmp_path / f"s{i}" / "trials.db").touch()
    with pytest.raises(ConfigError, match="trained otherwise than .*s0 \\(recipe\\)"):
        run_job("table", make_cfg("table", f"runs=[{tmp_path / 's0'},{tmp_path / 's1'}]",
                                  f"output={tmp_path / 'x.jsonl'}"), tmp_path / "t")


@pytest.mark.parametrize("text, message", [
    ("", "no 'nas-sr table' header"),
    ("not json\n", "not a nas-sr table"),
    (json.dumps({"kind": KIND, "version": 99}) + "\n", "version 99"),
    (json.dumps({"kind": KIND, "version": VERSION}) + "\n" + json.dumps({"x": 1}) + "\n",
     "line 2: a row needs"),
])
def test_a_file_that_is_not_a_table_is_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_table(path)
