"""logger.tensorboard=true: every number of metrics.jsonl also lands in RUN_DIR/tensorboard,
as TensorBoard's own reader sees it; without the optional extra, the job names it."""

import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.nodes import BooleanNode

from conftest import make_cfg
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.options import check_options
from nas_sr.runs.log import RunLog, read_metrics


def scalars_of(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events


def test_a_smoke_search_writes_its_rewards_as_tensorboard_scalars(tmp_path):
    run_job("search", make_cfg("search", "logger.tensorboard=true"), tmp_path)
    records = read_metrics(tmp_path)
    steps = [r for r in records if r["kind"] == "controller"]
    events = scalars_of(tmp_path)
    tags = set(events.Tags()["scalars"])
    assert {"controller/reward", "controller/entropy", "epoch/reward_mean"} <= tags
    assert not {"controller/warmup", "controller/controller_step"} & tags  # flags, steps
    rewards = events.Scalars("controller/reward")
    assert [e.step for e in rewards] == [r["controller_step"] for r in steps]
    assert [e.value for e in rewards] == pytest.approx([r["reward"] for r in steps])
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [e.step for e in events.Scalars("epoch/reward_mean")] == [r["epoch"] for r in epochs]


def test_tensorboard_is_off_by_default_and_a_checked_switch(tmp_path):
    assert isinstance(make_cfg("search")._get_node("logger")._get_node("tensorboard"),
                      BooleanNode)
    assert make_cfg("search").logger.tensorboard is False
    log = RunLog(tmp_path, config={"logger": {"tensorboard": False}})
    log.log("epoch", epoch=1, loss=0.5)
    log.close()
    assert not (tmp_path / "tensorboard").exists()
    with pytest.raises(ConfigCompositionException, match="logger.tensorboard"):
        make_cfg("search", "logger.tensorboard=maybe")


def test_without_tensorboard_the_switch_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    message = r"^logger.tensorboard=true needs tensorboard: pip install nas-sr\[tensorboard\]$"
    with pytest.raises(ConfigError, match=message):
        check_options("retrain", make_cfg("retrain", "logger.tensorboard=true"))
    with pytest.raises(ConfigError, match=message):
        RunLog(tmp_path, config={"logger": {"tensorboard": True}})
    assert not (tmp_path / "metrics.jsonl").exists()
