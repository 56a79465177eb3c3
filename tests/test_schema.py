"""One typed place for every option: the YAML holds presets and groups only, each option
has a description, and code defaults agree with the schema's."""

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import make_cfg
from controllers import KINDS
from nas_sr.cli import JOBS
from nas_sr.errors import ConfigError
from nas_sr.schema import check_fields
from nas_sr.schema.fields import fields
from nas_sr.schema.jobs import SCHEMAS, Sized
from nas_sr.schema.search import STRATEGIES
from nas_sr.schema.train import retrain_width
from nas_sr.search.proxy import ProxySetting
from nas_sr.search.supernet import reward_crops

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_every_job_has_a_schema():
    assert set(SCHEMAS) == set(JOBS)


@pytest.mark.parametrize("job", sorted(SCHEMAS))
def test_help_of_every_job_describes_every_option(job, cli, capsys):
    assert cli(job, "--help") is None
    out = capsys.readouterr().out
    assert out.startswith(f"usage: nas-sr {job} ")
    options = list(fields(make_cfg(job)))
    assert len(options) >= 10
    for key, _, meta in options:
        assert meta.get("help"), f"{job}: {key} has no description"
        assert f"  {key}=" in out, f"{job} --help does not list {key}"


def test_help_shows_the_command_s_own_values(cli, capsys):
    assert cli("search", "controller=evolution", "search.epochs=3", "--help") is None
    out = capsys.readouterr().out
    assert "  search.epochs=3 " in out and "  controller.tournament=5 " in out
    assert "controller.hidden" not in out  # the LSTM's options belong to controller=enas


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_a_job_yaml_holds_no_option_values(path):
    """Defaults live in nas_sr/schema only: a job's YAML lists its defaults, and Hydra's."""
    assert set(OmegaConf.load(path)) <= {"defaults", "hydra"}


@pytest.mark.parametrize("job", [j for j, s in SCHEMAS.items() if issubclass(s, Sized)])
def test_every_preset_and_group_composes_against_the_schema(job):
    """A preset or group that set an option the schema lacks, or a value of the wrong type,
    would fail here rather than in a user's command."""
    presets = sorted(p.stem for p in (EXPERIMENTS / "preset").glob("*.yaml"))
    sources = sorted(p.stem for p in (EXPERIMENTS / "data").glob("*.yaml"))
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        for preset in presets:
            for source in sources:
                cfg = compose(job, overrides=[f"preset={preset}", f"data={source}"])
                assert cfg.data.name == source
        for strategy in STRATEGIES:
            assert compose(job, overrides=[f"controller={strategy}"]).controller.name \
                == strategy


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_each_strategy_s_code_defaults_equal_the_schema_s(name):
    """A strategy built from Python with its defaults runs as ``controller=NAME`` does."""
    schema = {f.name: f for f in dataclasses.fields(STRATEGIES[name])}
    params = inspect.signature(KINDS[name]).parameters
    shared = [p for p in params.values() if p.name in schema
              and p.default is not inspect.Parameter.empty]
    assert shared or name == "random"
    for p in shared:
        default = schema[p.name].default
        assert p.default == default, f"{name}: {p.name}={p.default} in code, {default} in schema"


def test_a_bound_is_refused_where_the_field_declares_it():
    with pytest.raises(ConfigError, match=r"^search.proxy.steps=0: must be a whole number >= 1$"):
        check_fields(make_cfg("search", "search.proxy.steps=0"))
    with pytest.raises(ConfigError, match=r"^search.budget.floor=1.5: must be a share between "):
        check_fields(make_cfg("search", "search.budget.floor=1.5"))
    check_fields(make_cfg("search", "search.budget.params=null"))  # optional: null is fine


def test_a_resumed_run_s_plain_config_is_held_to_the_same_bounds():
    """resume= reads config.yaml untyped: the schema still gives each value's bounds."""
    saved = OmegaConf.create(OmegaConf.to_container(make_cfg("retrain")))
    check_fields(saved, SCHEMAS["retrain"])
    for override, says in (("train.batch_size=0", "must be a whole number >= 1"),
                           ("train.lr=abc", "must be a number"),
                           ("data.val_fraction=2", "must be a share between 0 and 1")):
        bad = saved.copy()
        key, value = override.split("=")
        OmegaConf.update(bad, key, OmegaConf.from_dotlist([f"v={value}"]).v)
        with pytest.raises(ConfigError, match=f"^{key}="):
            check_fields(bad, SCHEMAS["retrain"])
        with pytest.raises(ConfigError, match=says):
            check_fields(bad, SCHEMAS["retrain"])


def test_the_retrain_width_is_one_option_for_the_budget_the_proxy_and_retrain(cli):
    cfg = make_cfg("search", "archs.cell.channels=16", "train.cell.cells=6")
    assert retrain_width(cfg) == (16, 6)
    assert ProxySetting.from_config(cfg).channels == 16
    assert ProxySetting.from_config(cfg).cells == 6
    narrow = make_cfg("search", "train.cell.cells=6", "search.proxy.cells=2")
    assert ProxySetting.from_config(narrow).cells == 2  # a proxy may still be its own size
    old = OmegaConf.create(OmegaConf.to_container(cfg))  # a search saved with its own width
    old.search.budget.channels, old.search.budget.cells = 48, None
    assert retrain_width(old) == (48, cfg.archs.cell.cells)  # as it ran: archs.cell
    assert cli("search", "data.val_crops=8").endswith(
        "data.val_crops is now search.reward_crops, the search's reward crops "
        "(train.val_crops is retrain's validation)")
    error = cli("search", "search.budget.channels=48")
    assert error == ("nas-sr search: error: 'search.budget.channels=48': search.budget.channels "
                     "is now train.cell.channels, the one retrain width that the budget prices, "
                     "the proxy trains and retrain builds")


def test_a_search_saved_with_data_val_crops_scores_the_crops_it_ran_with():
    saved = OmegaConf.create(OmegaConf.to_container(make_cfg("search")))
    del saved.search["reward_crops"], saved.search["final_crops"]
    saved.data.val_crops, saved.data.final_crops = 3, 5
    reward, final = reward_crops(saved, torch.device("cpu"), torch.contiguous_format)
    assert len(reward[0]) == 3 and len(final[0]) == 5
    new = make_cfg("search", "search.reward_crops=2", "search.final_crops=4")
    reward, final = reward_crops(new, torch.device("cpu"), torch.contiguous_format)
    assert len(reward[0]) == 2 and len(final[0]) == 4
