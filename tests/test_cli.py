"""Run folders: what a resume may change, and runs that must not mix."""

import importlib.metadata
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

import nas_sr
from conftest import QUIET, make_cfg
from nas_sr.cli import check_added_keys, check_run_folder, main, resumed_config, run_job
from nas_sr.errors import ConfigError
from nas_sr.runs import folder as runfolder
from nas_sr.runs.folder import RunFolderBusy


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


def test_an_option_added_since_the_run_started_takes_the_commands_value(run_dir):
    old = OmegaConf.load(run_dir / "config.yaml")
    del old.train["clock"]  # as a run saved before train.clock existed
    OmegaConf.save(old, run_dir / "config.yaml")
    command = make_cfg("retrain", "train.clock=cpu", "train.lr=0.5")
    cfg = resumed_config(run_dir, ["train.clock=cpu"], command)
    assert cfg.train.clock == "cpu"
    assert cfg.train.lr == old.train.lr  # what the run saved wins where it has a value
    assert resumed_config(run_dir, [], make_cfg("retrain")).train.clock == "wall"


def test_a_section_added_since_the_run_started_is_taken_whole_and_takes_list_overrides(
        tmp_path):
    old = OmegaConf.create(OmegaConf.to_container(make_cfg("search")))  # as saved: untyped
    del old.search["proxy"]  # as a search saved before the proxy reward existed
    OmegaConf.save(old, tmp_path / "config.yaml")
    overrides = ["search.proxy.steps=7", "search.proxy.seeds=[3,4]"]
    cfg = resumed_config(tmp_path, overrides, make_cfg("search", *overrides))
    assert cfg.search.proxy.steps == 7 and list(cfg.search.proxy.seeds) == [3, 4]
    assert cfg.search.proxy.channels == make_cfg("search").search.proxy.channels
    assert "proxy" not in cfg.data  # only the job's own sections


@pytest.mark.parametrize("override", ["preset=cpu", "data=folder", "train.no_such_key=1"])
def test_resume_refuses_what_it_cannot_apply(run_dir, override):
    with pytest.raises(ConfigError, match="cannot change a resumed run"):
        resumed_config(run_dir, [override])


@pytest.mark.parametrize("override", ["scale=3", "archs.cell.channels=16", "model=vdsr",
                                      "seed=4", "train.cell.recursions=2"])
def test_resume_refuses_to_change_what_the_checkpoint_holds(run_dir, override, cli):
    before = (run_dir / "config.yaml").read_text()
    error = cli("retrain", f"resume={run_dir}", override)
    assert f"resume: '{override}' would change what the run trains" in error, error
    assert (run_dir / "config.yaml").read_text() == before  # the run folder is untouched


@pytest.mark.parametrize("override", ["space.macro=[[32,1],[16,2]]", "space.ops=[identity]"])
def test_a_resumed_search_keeps_the_space_its_trials_index(tmp_path, override):
    # a trial stores its ops and size as positions in these lists: others would relabel it
    OmegaConf.save(make_cfg("search", "space.macro=[[16,2],[32,1]]"), tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="would change what the run trains"):
        resumed_config(tmp_path, [override])


def test_a_plus_override_that_adds_an_unknown_key_is_refused(tmp_path, cli):
    error = cli("search", *QUIET, "+search.epoch=5", f"hydra.run.dir={tmp_path / 'run'}")
    assert "search's config has no search.epoch (did you mean search.epochs?)" in error, error
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the run


@pytest.mark.parametrize("typo, meant", [("search.epoch=5", "search.epochs"),
                                         ("search.budget.param=9", "search.budget.params"),
                                         ("data.train_dri=x", "data.train_dir")])
def test_an_unknown_key_names_the_nearest_real_option_not_a_plus(tmp_path, cli, typo, meant):
    error = cli("search", *QUIET, "data=folder", typo, f"hydra.run.dir={tmp_path / 'run'}")
    key = typo.partition("=")[0]
    assert error == (f"nas-sr search: error: {typo!r}: search's config has no {key}; did you "
                     f"mean {meant}? (`nas-sr search --help` lists every option)"), error
    assert not (tmp_path / "run").exists()


def test_version_prints_the_package_version(capsys):
    main(["--version"])
    assert capsys.readouterr().out == f"nas-sr {nas_sr.__version__}\n"
    assert importlib.metadata.version("nas-sr") == nas_sr.__version__  # one place for both


def test_a_malformed_override_gets_hydras_message_not_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nas_sr.cli", "rank", "rank.recipe=[a.b=1]",
                           f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True)
    assert done.returncode != 0 and "no viable alternative at input" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_resume_refuses_a_plus_key_and_takes_plus_plus_over_an_existing_one(run_dir, cli):
    before = (run_dir / "config.yaml").read_text()
    error = cli("retrain", f"resume={run_dir}", "+train.foo=1")
    assert "retrain's config has no train.foo" in error, error
    assert (run_dir / "config.yaml").read_text() == before
    assert "train.foo" in cli("retrain", f"resume={run_dir}", "++train.foo=1")
    cfg = resumed_config(run_dir, ["++train.epochs=9"])  # ++ of an existing key: plain
    assert cfg.train.epochs == 9


def test_a_plus_key_is_taken_where_a_config_leaves_it_open():
    overrides = ["+video.options.tune=film", "+hydra.job.env_set.X=1"]
    cfg = make_cfg("upscale", overrides[0])
    check_added_keys("upscale", cfg, overrides)
    assert cfg.video.options.tune == "film"
    with pytest.raises(ConfigError, match="upscale's config has no video.codex"):
        check_added_keys("upscale", make_cfg("upscale", "+video.codex=x"), ["+video.codex=x"])


@pytest.mark.parametrize("resume_first", [True, False])
def test_cfg_job_with_resume_prints_the_config_the_resume_would_run(run_dir, cli, capsys,
                                                                      resume_first):
    saved = OmegaConf.load(run_dir / "config.yaml")
    saved.train.lr = 0.123  # not a default: the print must come from the run's config
    OmegaConf.save(saved, run_dir / "config.yaml")
    # ++ over an existing key applies as a plain override; --resolve takes no value
    args = [f"resume={run_dir}", "train.epochs=7", "++train.iters_per_epoch=3"]
    flags = ["--cfg", "job", "--resolve"]
    assert cli("retrain", *(args + flags if resume_first else flags + args)) is None
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.train.epochs == 7 and printed.resume == str(run_dir)
    assert printed.train.iters_per_epoch == 3
    assert printed.train.lr == 0.123
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]  # nothing written


def test_a_folder_with_checkpoints_takes_only_its_own_config(run_dir):
    check_run_folder(run_dir, make_cfg("retrain"))  # no checkpoint yet: anything goes
    torch.save({}, run_dir / "last.pt")
    check_run_folder(run_dir, make_cfg("retrain"))  # the same command again continues
    with pytest.raises(ConfigError, match=r"another config \(seed, train.lr differ\); "
                                          r"continue it with resume="):
        check_run_folder(run_dir, make_cfg("retrain", "train.lr=0.5", "seed=3"))


def test_a_run_made_before_an_arch_was_added_is_continued_by_the_same_command(run_dir):
    saved = OmegaConf.load(run_dir / "config.yaml")
    del saved.archs["msrn"]  # as written by a nas-sr without MSRN
    OmegaConf.save(saved, run_dir / "config.yaml")
    torch.save({}, run_dir / "last.pt")
    check_run_folder(run_dir, make_cfg("retrain"))
    with pytest.raises(ConfigError, match=r"another config \(model differ"):
        check_run_folder(run_dir, make_cfg("retrain", "model=msrn"))


def test_a_run_folder_belongs_to_one_live_process(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(  # a live run: holds the folder's lock, as runfolder.owned does
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, b'process 4242 (nas-sr search seed=3)')\n"
         "print('held', flush=True)\ntime.sleep(60)", str(run_dir / runfolder.LOCK)],
        stdout=subprocess.PIPE, text=True)
    try:
        run_dir.mkdir()
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=rf"{run_dir} is in use by process 4242 \(nas-sr "
                                                rf"search seed=3\); .*pick another hydra.run"):
            run_job("search", make_cfg("search", "seed=4"), run_dir)
        assert not (run_dir / "config.yaml").exists()  # the refused run wrote nothing
    finally:
        holder.kill()  # killed, as a crashed run is: its lock goes with it
        holder.wait()
    with runfolder.owned(run_dir):  # taken over
        assert f"process {os.getpid()} " in (run_dir / runfolder.LOCK).read_text()


def test_history_keeps_every_command_and_config_yaml_the_effective_config(tmp_path, cli,
                                                                          image_folder):
    run_dir = tmp_path / "run"
    first = [*QUIET, "model=srcnn", "train.epochs=1", "train.iters_per_epoch=1", "data=folder",
             f"data.train_dir={image_folder}"]
    assert cli("retrain", *first, f"hydra.run.dir={run_dir}") is None
    (run_dir / ".last.pt.k1ll3d.nas-sr.tmp").write_bytes(b"half a checkpoint")  # a killed write
    (run_dir / ".notes.tmp").write_text("a user's own temp file")
    assert cli("retrain", f"resume={run_dir}", "train.epochs=2") is None
    assert [p.name for p in run_dir.glob(".*.tmp")] == [".notes.tmp"]  # only the orphan went
    assert OmegaConf.load(run_dir / "config.yaml").train.epochs == 2  # what the resume ran
    error = cli("retrain", *first, "train.lr=0.5", f"hydra.run.dir={run_dir}")
    assert "holds a run with another config (train.epochs, train.lr differ)" in error, error
    assert OmegaConf.load(run_dir / "config.yaml").train.epochs == 2  # untouched by it
    assert not (run_dir / ".hydra").exists()
    history = runfolder.history(run_dir)
    assert [h["overrides"] for h in history] == [
        first, [f"resume={run_dir}", "train.epochs=2"], [*first, "train.lr=0.5"]]
    assert [h["resume"] for h in history] == [False, True, False]
    assert all(f"hydra.run.dir={run_dir}" in h["command"] for h in history)


def test_resume_of_a_folder_that_holds_no_run_writes_nothing_into_it(tmp_path, cli,
                                                                      image_folder):
    before = sorted(p.name for p in image_folder.iterdir())
    error = cli("retrain", f"resume={image_folder}")
    assert "not a run folder (no config.yaml in it)" in error, error
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        run_job("retrain", make_cfg("retrain", f"resume={image_folder}"))
    assert sorted(p.name for p in image_folder.iterdir()) == before  # no lock, log, history
    assert "no such run folder" in cli("search", f"resume={tmp_path / 'gone'}")


@pytest.mark.parametrize("job, made_by, checkpoint", [("search", "retrain", "last.pt"),
                                                      ("retrain", "search", "checkpoint.pt")])
def test_resuming_a_run_of_the_other_job_is_refused(tmp_path, job, made_by, checkpoint):
    OmegaConf.save(make_cfg(made_by), tmp_path / "config.yaml", resolve=True)
    torch.save({}, tmp_path / checkpoint)
    with pytest.raises(ConfigError, match=rf"resume={tmp_path} is a {made_by} run; continue it "
                                          rf"with `nas-sr {made_by} resume="):
        run_job(job, make_cfg(job, f"resume={tmp_path}"))


SLOW_UPSCALE = """
import sys, time
from nas_sr.deploy import media
from nas_sr.cli import main
real = media.super_resolve
def slow(*args, **kwargs):  # a frame at a time, slowly enough to be stopped mid-file
    print("frame", flush=True)
    time.sleep(0.1)
    return real(*args, **kwargs)
media.super_resolve = slow
main(sys.argv[1:])
"""


def test_sigterm_mid_video_removes_the_partial_file_and_says_so_in_one_line(tmp_path):
    from conftest import write_clip

    clip = write_clip(tmp_path / "clip.mp4", frames=100)
    job = subprocess.Popen(
        [sys.executable, "-c", SLOW_UPSCALE, "upscale", "model=bicubic", "scale=2",
         f"input={clip}", f"output={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "frame"
        assert list((tmp_path / "out").iterdir())  # the partial file is there, being written
        job.terminate()
        _, err = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 128 + signal.SIGTERM  # as the shell reports a killed process
    assert err.strip().splitlines()[-1] == "nas-sr upscale: stopped by SIGTERM"
    assert "Traceback" not in err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local",
                                       "hydra.launcher.timeout_min=10"]],
                         ids=["joblib", "submitit_local"])
def test_a_two_job_sweep_runs_each_seed_in_its_own_folder(tmp_path, launcher):
    """Multirun through a real launcher: joblib's processes, and submitit's local executor
    (the SLURM launcher's twin, nas-sr[slurm])."""
    done = subprocess.run(
        [sys.executable, "-m", "nas_sr.cli", "search", "-m", "preset=smoke", "seed=0,1",
         "logger.progress=false", "logger.plots=false", "threads=1", *launcher,
         f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=s${seed}"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    seeds = [json.loads((tmp_path / f"s{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert [OmegaConf.load(tmp_path / f"s{s}" / "config.yaml").seed for s in (0, 1)] == [0, 1]
    assert seeds[0]["genotype"] != seeds[1]["genotype"]  # two searches, not one twice


def test_upscale_with_output_leaves_no_run_folder_behind(tmp_path):
    from conftest import write_image

    photo = write_image(tmp_path / "photo.png", (24, 32))
    done = subprocess.run([sys.executable, "-m", "nas_sr.cli", "upscale", "model=bicubic",
                           "scale=2", f"input={photo}", f"output={tmp_path / 'out'}"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "photo.png").is_file() and not (tmp_path / "runs").exists()
    done = subprocess.run([sys.executable, "-m", "nas_sr.cli", "upscale", "model=bicubic",
                           "scale=2", f"input={photo}"], cwd=tmp_path, capture_output=True,
                          text=True)  # no output=: the run folder holds the images
    assert done.returncode == 0 and list((tmp_path / "runs" / "upscale").glob("*/images"))
