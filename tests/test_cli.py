"""Run folders: what a resume may change, and runs that must not mix."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import make_cfg
from nas_sr.cli import check_run_folder, resumed_config
from nas_sr.runtime import ConfigError


@pytest.fixture
def run_dir(tmp_path):
    OmegaConf.save(make_cfg("retrain"), tmp_path / "config.yaml", resolve=True)
    return tmp_path


def test_resume_applies_plain_overrides_even_over_null(run_dir):
    assert OmegaConf.load(run_dir / "config.yaml").train.grad_clip is None
    cfg = resumed_config(run_dir, ["train.grad_clip=1.0", "train.epochs=7", "threads=1",
                                   f"resume={run_dir}", f"hydra.run.dir={run_dir}"])
    assert (cfg.train.grad_clip, cfg.train.epochs, cfg.threads) == (1.0, 7, 1)
    assert cfg.resume == str(run_dir)


@pytest.mark.parametrize("override", ["preset=cpu", "data=folder", "train.no_such_key=1"])
def test_resume_refuses_what_it_cannot_apply(run_dir, override):
    with pytest.raises(ConfigError, match="cannot change a resumed run"):
        resumed_config(run_dir, [override])


def test_a_folder_with_checkpoints_takes_only_its_own_config(run_dir):
    check_run_folder(run_dir, make_cfg("retrain"))  # no checkpoint yet: anything goes
    torch.save({}, run_dir / "last.pt")
    check_run_folder(run_dir, make_cfg("retrain"))  # the same command again continues
    with pytest.raises(ConfigError, match=r"another config \(seed, train.lr differ\); "
                                          r"continue it with resume="):
        check_run_folder(run_dir, make_cfg("retrain", "train.lr=0.5", "seed=3"))
