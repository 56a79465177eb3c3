"""The latency table: a prediction is the sum of its entries, a table from elsewhere or out
of shape is refused in one line, and a tiny real profile writes a table that loads."""

import copy
import json
import math

import pytest

from conftest import make_cfg
from nas_sr.archs.build import build_model
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.search import latency
from search_spaces.genotypes import Genotype
from search_spaces.operations import OP_NAMES, REGISTRY

# node 0 reads h(k-1) and h(k-2); node 1 reads node 0 and h(k-1): one loose end, node 1
CELL = Genotype.from_dict({"nodes": [[1, "conv_3x3", 0, "identity"],
                                     [2, "sep_conv_3x3", 1, "conv_3x3"]]})


def hand_made(threads: int = 1, width: int = 8) -> dict:
    """A valid table for this machine: every part at one width, its own round time."""
    names = [*(f"op:{op}" for op in REGISTRY), "add", "combine:1", "combine:2", "head",
             "tail:2"]
    times = {name: float(2 ** i) for i, name in enumerate(names)}
    return {"machine": latency.machine(), "reference_lr": [16, 16], "threads": [threads],
            "widths": [width], "scales": [2], "nodes": 2,
            "entries": {str(threads): {n: {str(width): ms} for n, ms in times.items()}}}


def test_the_prediction_is_the_sum_of_the_tables_entries_scaled_by_pixels():
    table = hand_made()
    ms = {name: row["8"] for name, row in table["entries"]["1"].items()}
    cell = (2 * ms["op:conv_3x3"] + ms["op:identity"] + ms["op:sep_conv_3x3"] + 2 * ms["add"]
            + ms["combine:1"])
    # searched: two 3x3 convs (9C^2 each), a sep (9C + C^2) and the combine (C^2) a pixel;
    # served: the same but the combine, folded into node 1's ops (the identity is an add)
    share = (2 * 9 * 64 + (9 * 8 + 64)) / (2 * 9 * 64 + (9 * 8 + 64) + 64)
    assert latency.served_share(CELL, 8) == pytest.approx(share)
    expected = ms["head"] + 3 * cell * latency.served_share(CELL, 8) + ms["tail:2"]
    assert latency.predict_latency(CELL, 8, 3, 2, table, 1, (16, 16)) == expected
    assert latency.predict_latency(CELL, 8, 3, 2, table, 1, (32, 48)) == expected * 6
    calibrated = {**table, "calibration": {"1": 0.75}}
    assert latency.predict_latency(CELL, 8, 3, 2, calibrated, 1, (16, 16)) == 0.75 * expected
    # what was never timed needs a new profile, naming what to time; a part added to the
    # toolkit since, a profile that reuses the table
    with pytest.raises(ConfigError, match=r"no op:conv_3x3 at width 16.*widths=\[...,16\]"):
        latency.predict_latency(CELL, 16, 3, 2, table, 1, (16, 16))
    with pytest.raises(ConfigError, match=r"no tail:3 at width 8.*profile.scales=\[...,3\]`"):
        latency.predict_latency(CELL, 8, 3, 3, table, 1, (16, 16))
    without = copy.deepcopy(table)
    del without["entries"]["1"]["head"]
    with pytest.raises(ConfigError, match="no head at width 8.*profile.reuse=true"):
        latency.predict_latency(CELL, 8, 3, 2, without, 1, (16, 16))
    with pytest.raises(ConfigError, match="no entries for 2 thread"):
        latency.predict_latency(CELL, 8, 3, 2, table, 2, (16, 16))


def test_a_network_on_y_is_priced_with_the_one_channel_head_and_tail():
    table = hand_made()
    with pytest.raises(ConfigError, match="no head:y at width 8.*nas-sr profile"):
        latency.predict_latency(CELL, 8, 3, 2, table, 1, (16, 16), colors=1)
    rows = table["entries"]["1"]
    rows["head:y"], rows["tail:2:y"] = {"8": 0.5}, {"8": 0.25}
    rgb = latency.predict_latency(CELL, 8, 3, 2, table, 1, (16, 16))
    luma = latency.predict_latency(CELL, 8, 3, 2, table, 1, (16, 16), colors=1)
    assert luma == pytest.approx(rgb - rows["head"]["8"] - rows["tail:2"]["8"] + 0.75)
    rows["tail:2:y:conv1"] = {"8": 0.125}
    assert latency.predict_latency(CELL, 8, 3, 2, table, 1, (16, 16), 1, "conv1") == \
        pytest.approx(luma - 0.25 + 0.125)
    with pytest.raises(ConfigError, match="no tail:2:conv1 at width 8"):
        latency.predict_latency(CELL, 8, 3, 2, table, 1, (16, 16), 3, "conv1")
    rows["tail:2:y"] = {"8": -1.0}  # present, so checked as every entry is
    assert "tail:2:y" in latency._bad_entries(table)


def test_the_table_round_trips(tmp_path):
    table = hand_made()
    latency.save_table(table, tmp_path / "t.json")
    assert latency.load_table(tmp_path / "t.json") == table


@pytest.mark.parametrize("key", ["cpu", "onnxruntime"])
def test_a_table_from_another_cpu_or_onnxruntime_is_refused_in_one_line(tmp_path, key):
    table = hand_made()
    table["machine"][key] = "Some Other 9000"
    latency.save_table(table, tmp_path / "t.json")
    with pytest.raises(ConfigError, match="stale or foreign") as e:
        latency.load_table(tmp_path / "t.json")
    assert "Some Other 9000" in str(e.value) and "nas-sr profile" in str(e.value)
    assert "\n" not in str(e.value)


def _drop_entry(t: dict) -> None:
    del t["entries"]["1"]["op:conv_3x3"]["8"]


def _set_entry(value: object):
    def change(t: dict) -> None:
        t["entries"]["1"]["add"]["8"] = value
    return change


@pytest.mark.parametrize(("change", "says"), [
    (_drop_entry, "no entry op:conv_3x3 at width 8"),
    (_set_entry("0.5"), "entry add at width 8, 1 thread(s) is '0.5', not a time"),
    (_set_entry(-1.0), "is -1.0, not a time"),
    (_set_entry(math.inf), "is inf, not a time"),
    (lambda t: t.pop("entries"), "no entries"),
    (lambda t: t["machine"].pop("cpu"), "machine needs cpu"),
    (lambda t: t.update(reference_lr=[16]), "reference_lr must be"),
    (lambda t: t.update(calibration={"1": -0.5}), "calibration must map"),
])
def test_a_malformed_table_is_refused_naming_what_is_wrong(tmp_path, change, says):
    table = copy.deepcopy(hand_made())
    change(table)
    (tmp_path / "t.json").write_text(json.dumps(table))
    with pytest.raises(ConfigError, match="malformed latency table") as e:
        latency.load_table(tmp_path / "t.json")
    assert says in str(e.value) and "nas-sr profile" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_table_without_an_op_registered_since_is_refused(tmp_path):
    table = hand_made()
    for row in table["entries"].values():
        del row["op:conv_3x3"]
    latency.save_table(table, tmp_path / "t.json")
    with pytest.raises(ConfigError, match="no entry op:conv_3x3.*profile.reuse=true"):
        latency.load_table(tmp_path / "t.json")  # what adds it, not a remake


@pytest.mark.parametrize(("override", "says"), [
    ("profile.validate_cells=[3,1]", "low <= high"),
    ("profile.scales=[5]", "scales are 2, 3 and 4"),
    ("profile.widths=[]", "widths"),
    ("profile.repeats=0", "profile.repeats=0"),
    ("profile.clock=cpu", "clock=cpu times 1 thread only"),
    ("profile.clock=sundial", "use wall or cpu"),
])
def test_bad_options_are_refused(tmp_path, override, says):
    with pytest.raises(ConfigError, match=says):
        run_job("profile", make_cfg("profile", override), tmp_path / "run")


def test_a_tiny_profile_writes_a_table_that_loads_and_a_validation(tmp_path, monkeypatch):
    # the cell's own ops only (every registered op would triple the exports)
    monkeypatch.setattr(latency, "REGISTRY", {name: REGISTRY[name] for name in OP_NAMES})
    path = tmp_path / "cache" / "table.json"
    summary = run_job("profile", make_cfg(
        "profile", "profile.widths=[4,8]", "profile.lr_size=[16,16]", "profile.threads=[1]",
        "profile.scales=[2]", "profile.nodes=2", "profile.warmup=1", "profile.repeats=3",
        "profile.validate=3", "profile.validate_cells=[1,2]", f"profile.table={path}"),
        tmp_path / "run")
    table = latency.load_table(path)
    assert table["widths"] == [4, 8] and set(table["entries"]["1"]) >= {
        "head", "tail:2", "head:y", "tail:2:y", "tail:2:conv1", "tail:2:y:conv1"}
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    agree = written["validation"]["per_threads"]["1"]
    assert agree["mape"] >= 0 and -1 <= agree["kendall_tau"] <= 1
    assert latency.load_table(path)["calibration"] == {"1": agree["calibration"]}
    assert summary["table"] == str(path)
    arch = latency.cell_arch(CELL, 4, 1, 2)
    assert latency.measure_latency(build_model(arch).eval(), (16, 16), 1, arch, 1, 3) > 0
    # a table made before the Y parts and an op existed: reuse times those alone and keeps
    # the rest
    older = json.loads(path.read_text())
    for rows in older["entries"].values():
        del rows["head:y"], rows["tail:2:y"], rows["tail:2:y:conv1"], rows["op:conv_3x3"]
    latency.save_table(older, path)
    summary = run_job("profile", make_cfg(
        "profile", "profile.reuse=true", "profile.threads=[1]", f"profile.table={path}"),
        tmp_path / "run2")
    assert summary["added"] == ["head:y", "op:conv_3x3", "tail:2:y", "tail:2:y:conv1"]
    again = latency.load_table(path)
    assert again["entries"]["1"]["head"] == older["entries"]["1"]["head"]
    assert set(again["entries"]["1"]["head:y"]) == {"4", "8"}
