"""Bad options and damaged files: one line naming the option or file and the fix, before any
data is read; and inputs that used to go silently wrong."""

import errno
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.nodes import BooleanNode
from PIL import Image

from conftest import make_cfg, srcnn_checkpoint, write_image
from nas_sr import checkpoint
from nas_sr.checkpoint import TEMP_SUFFIX, save_atomic, write_json
from nas_sr.cli import run_job
from nas_sr.data import pairs as data_pairs
from nas_sr.data.cache import open_store
from nas_sr.data.crops import RandomCrops
from nas_sr.data.images import ImageError, list_images, load_image
from nas_sr.data.pairs import ImageSource
from nas_sr.errors import ConfigError
from nas_sr.options import AUTO_SWITCHES, check_options
from nas_sr.runs.folder import LOCK
from nas_sr.schema.fields import fields
from nas_sr.schema.jobs import SCHEMAS
from search_spaces.cost import cheapest_cost
from search_spaces.genotypes import GenotypeError, load_genotype


@pytest.fixture
def no_data(monkeypatch):
    """Any image read fails the test: the check must come before data loading."""
    def read(path):
        raise AssertionError(f"data was read ({path}) before the options were checked")
    monkeypatch.setattr(data_pairs, "load_image", read)


@pytest.mark.parametrize("job, overrides, message", [
    ("retrain", ["train.iters_per_epoch=0"], "train.iters_per_epoch=0: must be a whole number"),
    ("retrain", ["train.batch_size=0"], "train.batch_size=0: must be a whole number >= 1"),
    ("search", ["search.batch_size=0"], "search.batch_size=0: must be a whole number >= 1"),
    ("search", ["data.patch_size=1"], r"data.patch_size=1: must be a whole number >= 6 \(3 x "),
    ("retrain", ["train.patch_size=0"], "train.patch_size=0: must be a whole number >= 6"),
    ("search", ["search.reward_crops=0"], "search.reward_crops=0: must be a whole number >= 1"),
    ("retrain", ["train.val_crops=0"], r"train.val_crops=0: must be .* >= 1 \(or null\)"),
    ("search", ["search.lr=-1"], "search.lr=-1: must be > 0"),
    ("retrain", ["train.lr=-0.001"], "train.lr=-0.001: must be > 0"),
    ("search", ["controller.lr=0"], "controller.lr=0: must be > 0"),
    ("search", ["device=tpu"], "device=tpu: not a device; use auto, cpu, cuda or cuda:N"),
    ("search", ["device=gpu"], r"device=gpu: not a device; .* \(or mps on Apple silicon\)"),
    ("retrain", ["threads=-1"], r"threads=-1: must be a whole number >= 1 \(or null\)"),
    ("retrain", ["train.epochs=0"], "train.epochs=0: must be a whole number >= 1"),
    ("search", ["search.epochs=0"], "search.epochs=0: must be a whole number >= 1"),
    ("search", ["search.warmup=1.5"], "search.warmup=1.5: must be a share between 0 and 1"),
    ("search", ["search.sampler=greedy"], "search.sampler='greedy': use fair or uniform"),
    ("search", ["search.budget.params=0"], r"search.budget.params=0: must be .* \(or null\)"),
    ("search", ["controller.samples_per_update=0"], "controller.samples_per_update=0: must"),
    ("upscale", ["model=bicubic", "scale=0", "input=x.png"], "scale must be 2, 3 or 4, got 0"),
    ("upscale", ["model=bicubic", "scale=2", "input=x.png", "tile=1"],
     "tile=1: use a tile of at least 16 LR pixels, or tile=null"),
    ("evaluate", ["tile=4"], "tile=4: use a tile of at least 16"),
    ("upscale", ["model=bicubic", "scale=2", "input=x.mp4", "video.batch=0"],
     "video.batch=0: must be a whole number >= 1"),
    ("upscale", ["model=bicubic", "scale=2", "input=x.mp4", "video.container=flv"],
     "video.container='flv': use one of mp4, mov, mkv, avi, webm"),
    ("serve", ["video.crf=-1"], r"video.crf=-1: must be a whole number >= 0 \(or null\)"),
    ("serve", ["tile=8"], "tile=8: use a tile of at least 16"),
    ("serve", ["port=70000"], "port=70000: must be a whole number in 1..65535"),
    ("serve", ["workers=0"], "workers=0: must be a whole number >= 1"),
    ("serve", ["keep_minutes=0"], "keep_minutes=0: must be > 0"),
    ("serve", ["limits.upload_mb=-5"], "limits.upload_mb=-5: must be > 0"),
    ("serve", ["limits.frames=0"], "limits.frames=0: must be a whole number >= 1"),
    ("serve", ["limits.queued=0"], "limits.queued=0: must be a whole number >= 1"),
    ("serve", ["device=tpu"], "device=tpu: not a device"),
    ("compress", ["method=quantize"], "method='quantize': use one of prune, separable"),
    ("compress", ["rounds=0"], "rounds=0: must be a whole number >= 1"),
    ("compress", ["prune.criterion=magnitude", "prune.amount=1"],
     "prune.amount=1: must be a share between 0 and 1, both excluded"),
    ("compress", ["train.epochs=-1"], "train.epochs=-1: must be a whole number >= 0"),
    ("compress", ["train.lr=0"], "train.lr=0: must be > 0"),
    ("search", ["data.val_fraction=-3"], "data.val_fraction=-3: must be a share between 0"),
    ("retrain", ["data.cache=foo"], "data.cache='foo': use none or h5"),
    ("search", ["controller.hidden=0"], "controller.hidden=0: must be a whole number >= 1"),
    ("search", ["controller.layers=0"], "controller.layers=0: must be a whole number >= 1"),
    ("search", ["controller.temperature=0"], r"controller.temperature=0: must be > 0 \(or null"),
    ("search", ["controller.temperature=-5"], "controller.temperature=-5: must be > 0"),
    ("search", ["controller.tanh_constant=-1"], r"controller.tanh_constant=-1: must be > 0 \(or"),
    ("search", ["controller.op_tanh_reduce=0"], "controller.op_tanh_reduce=0: must be > 0"),
    ("search", ["controller.entropy_weight=-100"],
     "controller.entropy_weight=-100: must be a number >= 0"),
    ("search", ["controller.baseline_decay=5"],
     r"controller.baseline_decay=5: must be a number in \[0, 1\)"),
    ("search", ["controller=random", "controller.baseline_decay=1"],
     r"controller.baseline_decay=1: must be a number in \[0, 1\)"),
    ("search", ["archs.cell.cells=0"], "archs.cell.cells=0: must be a whole number >= 1"),
    ("search", ["archs.cell.channels=0"], "archs.cell.channels=0: must be a whole number >= 1"),
    ("retrain", ["genotype=searched_x2", "archs.cell.channels=0"], "archs.cell.channels=0: must"),
    ("retrain", ["genotype=searched_x2", "train.cell.cells=0"], "train.cell.cells=0: must be a"),
    ("search", ["seed=-1"], "seed=-1: must be a whole number >= 0"),
    ("upscale", ["video.crf=99"], r"video.crf=99: libx264 takes 0-51 \(lower = better"),
    ("upscale", ["video.codec=libvpx-vp9", "video.container=webm", "video.crf=64"],
     "video.crf=64: libvpx-vp9 takes 0-63"),
    ("rank", ["rank.proxy_seeds=[-1]"], r"rank.proxy_seeds=\[-1\]: give a list of at least"),
    ("rank", ["rank.seed=-2"], "rank.seed=-2: must be a whole number >= 0"),
])
def test_bad_options_are_refused_before_any_data_is_read(tmp_path, no_data, job, overrides,
                                                         message):
    with pytest.raises(ConfigError, match=message):
        run_job(job, make_cfg(job, *overrides), tmp_path)


@pytest.mark.parametrize("job, override, kind", [
    ("retrain", "data.val_fraction=abc", "Float"), ("retrain", "seed=1.5", "Integer"),
    ("search", "search.epochs=ten", "Integer"), ("serve", "limits.frames=[1]", "Integer"),
])
def test_a_value_of_the_wrong_type_is_one_line_from_the_cli(tmp_path, no_data, cli, job,
                                                           override, kind):
    error = cli(job, override, f"hydra.run.dir={tmp_path}")
    assert error is not None and "\n" not in error
    assert error.startswith(f"nas-sr {job}: error: {override}: ") and kind in error, error
    assert not any(tmp_path.iterdir())  # refused before the run folder was written


@pytest.mark.parametrize("override", ["seed=-1", "controller.hidden=0", "archs.cell.cells=0",
                                      "controller.baseline_decay=5"])
def test_options_that_mean_nothing_get_one_line_from_the_cli(tmp_path, no_data, cli, override):
    error = cli("search", "preset=smoke", "logger.progress=false", "logger.plots=false",
                override, f"hydra.run.dir={tmp_path}")
    assert error is not None and "\n" not in error
    assert error.startswith(f"nas-sr search: error: {override}: "), error


def test_an_encoder_option_the_encoder_lacks_is_refused_and_its_own_are_taken(no_data):
    with pytest.raises(ConfigError, match=r"video.options.tuen: libx264 has no such option; "
                                          r"its own are preset, tune, .*e.g. b, "):
        check_options("upscale", make_cfg("upscale", "+video.options.tuen=film"))
    check_options("upscale", make_cfg("upscale", "+video.options.tune=film",
                                      "+video.options.g=24", "video.crf=51"))
    check_options("upscale", make_cfg("upscale", "video.codec=mpeg4", "video.container=avi",
                                      "+video.options.mpeg_quant=1"))


@pytest.mark.parametrize("device, gone", [("mps", "MPS (Apple silicon)"), ("cuda:1", "CUDA")])
def test_a_device_the_machine_lacks_is_refused_in_one_line(tmp_path, no_data, monkeypatch,
                                                           device, gone):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=rf"device={device} asked for, but {re.escape(gone)} "
                                          r"is not available; use device=cpu"):
        run_job("search", make_cfg("search", f"device={device}"), tmp_path)


@pytest.mark.parametrize("key", ["params", "mult_adds"])
def test_a_budget_no_cell_can_meet_is_refused_before_the_search_trains(tmp_path, no_data, key):
    cfg = make_cfg("search")
    least = cheapest_cost(cfg.archs.cell.nodes, cfg.archs.cell.channels, cfg.archs.cell.cells,
                          cfg.scale)[key]
    with pytest.raises(ConfigError, match=rf"search.budget.{key}={least - 1}: below the "
                                          rf"cheapest network the space builds, {least:,} at"):
        run_job("search", make_cfg("search", f"search.budget.{key}={least - 1}"), tmp_path)
    check_options("search", make_cfg("search", f"search.budget.{key}={least}"))  # reachable


def test_a_genotype_given_to_a_baseline_is_said_unused_and_every_baseline_is_named(
        tmp_path, no_data, caplog):
    check_options("retrain", make_cfg("retrain", "model=vdsr", "genotype=searched_x2"))
    assert "genotype=searched_x2 is not used: model=vdsr is a baseline" in caplog.text
    caplog.clear()
    check_options("retrain", make_cfg("retrain", "genotype=searched_x2"))
    assert "not used" not in caplog.text
    with pytest.raises(ConfigError, match="model=cell needs genotype=PATH") as e:
        run_job("retrain", make_cfg("retrain"), tmp_path)
    named = str(e.value).rpartition("model=")[2].split("|")
    assert sorted(named) == sorted(set(make_cfg("retrain").archs) - {"cell"})


@pytest.mark.parametrize("job", ["export", "compress"])
def test_export_and_compress_name_their_own_option_and_refuse_bicubic(tmp_path, no_data, job):
    with pytest.raises(FileNotFoundError, match=r"checkpoint=/nope.pt: no such model file; "
                                                r"checkpoint= takes a retrain checkpoint"):
        run_job(job, make_cfg(job, "checkpoint=/nope.pt"), tmp_path)
    with pytest.raises(ConfigError, match=f"checkpoint=bicubic: bicubic has no weights to {job}"):
        run_job(job, make_cfg(job, "checkpoint=bicubic"), tmp_path)


@pytest.mark.parametrize("inside", ["best.pt", None])
def test_a_run_folder_passed_as_a_model_is_named_a_folder(tmp_path, no_data, inside):
    run = tmp_path / "run"
    run.mkdir()
    if inside:
        (run / inside).write_bytes(b"")
    hint = f"pass the model in it: model={run / inside}" if inside else "model= takes a file"
    with pytest.raises(ConfigError, match=re.escape(f"model={run} is a folder; {hint}")):
        run_job("evaluate", make_cfg("evaluate", f"model={run}"), tmp_path / "eval")


@pytest.mark.parametrize("job, name", [("retrain", "last.pt"), ("search", "checkpoint.pt")])
def test_a_truncated_checkpoint_on_resume_is_named(tmp_path, no_data, job, name):
    OmegaConf.save(make_cfg(job), tmp_path / "config.yaml", resolve=True)
    save_atomic({"epoch": 1, "weights": torch.rand(1000)}, tmp_path / name)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=rf"{tmp_path / name}: damaged or not a checkpoint "
                                          r"\(.*\); restore it or pass another file \(a run's "
                                          r"own checkpoint: delete it"):
        run_job(job, make_cfg(job, f"resume={tmp_path}"))


def test_a_json_write_cut_short_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    write_json(tmp_path / "genotype.json", {"nodes": "before"})
    def disk_full(self, text):  # half the bytes land, then the write fails
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(checkpoint.WriteFailed, match="No space left on device; the earlier"):
        write_json(tmp_path / "genotype.json", {"nodes": "after, and longer than before"})
    monkeypatch.undo()
    assert (tmp_path / "genotype.json").read_text() == '{\n  "nodes": "before"\n}\n'
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_a_signal_during_a_checkpoint_write_waits_for_the_write(tmp_path, monkeypatch):
    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop
    real_save = torch.save

    def save_signalled_half_way(obj, f):  # as if SIGTERM came while torch.save wrote
        os.kill(os.getpid(), signal.SIGTERM)
        real_save(obj, f)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        monkeypatch.setattr(torch, "save", save_signalled_half_way)
        with pytest.raises(Stop):  # raised all the same, once the checkpoint has landed
            save_atomic({"w": torch.arange(5)}, tmp_path / "last.pt")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert torch.load(tmp_path / "last.pt")["w"].tolist() == [0, 1, 2, 3, 4]
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    checkpoint.umask.cache_clear()
    yield
    os.umask(old)
    checkpoint.umask.cache_clear()


def test_atomic_writes_get_the_umask_s_mode_not_a_temp_file_s(tmp_path, umask_027):
    save_atomic({"w": torch.zeros(2)}, tmp_path / "best.pt")
    write_json(tmp_path / "results.json", {"psnr": 1.0})
    assert (tmp_path / "best.pt").stat().st_mode & 0o777 == 0o640  # mkstemp's is 0o600
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o640
    (tmp_path / "results.json").chmod(0o604)  # a file that is replaced keeps its own mode
    write_json(tmp_path / "results.json", {"psnr": 2.0})
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o604
    (tmp_path / "results.json").chmod(0o444)  # read-only: kept, yet written while private
    with checkpoint.atomic_path(tmp_path / "results.json") as tmp:
        assert tmp.stat().st_mode & 0o777 == 0o600
        tmp.write_text("{}")
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o444


def test_a_corrupt_init_from_is_named(tmp_path, no_data):
    (tmp_path / "x2.pt").write_bytes(b"PK\x03\x04 not really a zip")
    cfg = make_cfg("retrain", "model=srcnn", f"init_from={tmp_path / 'x2.pt'}")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'x2.pt'}: damaged or not a checkpoint"):
        run_job("retrain", cfg, tmp_path / "run")


def test_a_file_that_is_no_checkpoint_at_all_is_named_as_such(tmp_path, no_data):
    write_image(tmp_path / "photo.png")
    for option in ("init_from", "model"):
        job = "retrain" if option == "init_from" else "upscale"
        cfg = make_cfg(job, f"{option}={tmp_path / 'photo.png'}",
                       *(["model=srcnn"] if job == "retrain" else [f"input={tmp_path}"]))
        with pytest.raises(ConfigError, match=r"photo.png: (.*: )?not a checkpoint file"):
            run_job(job, cfg, tmp_path / job)


def test_a_model_with_nan_weights_is_refused_not_saved_as_a_black_picture(tmp_path, no_data):
    from nas_sr.archs.build import build_model

    arch = {"name": "srcnn", "scale": 2}
    model = build_model(arch)
    torch.nn.init.constant_(model.body[0].weight, float("nan"))
    save_atomic({"arch": arch, "model": model.state_dict()}, tmp_path / "nan.pt")
    write_image(tmp_path / "in" / "a.png", (16, 16))
    cfg = make_cfg("upscale", f"model={tmp_path / 'nan.pt'}", f"input={tmp_path / 'in'}",
                   f"output={tmp_path / 'out'}")
    with pytest.raises(ConfigError, match="output holds NaN or infinite values: its weights"):
        run_job("upscale", cfg, tmp_path / "job")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_card_notes_that_are_not_a_text_file_are_named(tmp_path, no_data):
    write_image(tmp_path / "card.png")
    for notes, reason in ((tmp_path, "Is a directory"), (tmp_path / "card.png", "not UTF-8"),
                          (tmp_path / "gone.md", "No such file")):
        cfg = make_cfg("export", f"checkpoint={tmp_path / 'x.pt'}", f"card_notes={notes}")
        with pytest.raises(ConfigError, match=f"card_notes=.*: {reason}.*takes a Markdown"):
            run_job("export", cfg, tmp_path / "job")


def test_a_folder_or_binary_genotype_is_named(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(GenotypeError, match=r"folder: a folder; genotype= takes the genotype"):
        load_genotype(tmp_path / "folder")
    (tmp_path / "g.json").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(GenotypeError, match=r"g.json: not UTF-8 text; genotype= takes"):
        load_genotype(tmp_path / "g.json")


def test_a_damaged_h5_cache_is_rebuilt_or_named(image_folder, tmp_path):
    import h5py

    sources = [ImageSource(p) for p in sorted(image_folder.glob("*.png"))]
    path = open_store(sources, 2, 16, tmp_path / "train.h5", progress=False).path
    with h5py.File(path, "a") as f:  # an image's dataset lost, the fingerprint intact
        del f["lr/1"]
    store = open_store(sources, 2, 16, tmp_path / "train.h5", progress=False)  # rebuilt
    assert store.crop(1, 0, 0, 8, 2)[1].shape == (8, 8, 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # damaged after the check, while in use
    with pytest.raises(ImageError, match=rf"{path}: the HDF5 cache is damaged .*delete it"):
        RandomCrops(store, 2, 16, 4, seed=0)[0]


def test_upscale_output_naming_an_existing_file_is_never_replaced_unasked(tmp_path, no_data):
    (tmp_path / "out.png").write_bytes(b"an earlier result")
    cfg = make_cfg("upscale", "model=bicubic", "scale=2", f"input={tmp_path / 'in.png'}",
                   f"output={tmp_path / 'out.png'}")
    write_image(tmp_path / "in.png", (16, 16))
    with pytest.raises(ConfigError, match=r"output=.* already holds 1 of the 1 output file"):
        run_job("upscale", cfg, tmp_path / "run")
    assert (tmp_path / "out.png").read_bytes() == b"an earlier result"


# --- inputs that went silently wrong -----------------------------------------------------


def test_run_folders_inside_a_data_folder_are_not_data(image_folder):
    plots = image_folder / "runs" / "search" / "plots"
    write_image(plots / "reward.png")
    (plots.parent / LOCK).write_text("process 1")
    assert not any("runs" in p.parts for p in list_images(image_folder))
    assert len(list_images(image_folder)) == 6
    assert list_images(plots.parent) == [plots / "reward.png"]  # asked for by name: listed


def test_symlinked_sub_folders_are_followed_once(tmp_path, image_folder):
    root = tmp_path / "data"
    write_image(root / "own.png")
    os.symlink(image_folder, root / "linked")
    os.symlink(root, root / "linked_back")  # a loop must not recurse forever
    names = sorted(p.relative_to(root).as_posix() for p in list_images(root))
    assert names == ["linked/" + f"img{i}.png" for i in range(6)] + ["own.png"]


def test_a_postscript_file_is_never_decoded_as_an_image(tmp_path):
    from PIL import EpsImagePlugin
    from test_web_api import EPS

    (tmp_path / "page.png").write_bytes(EPS)  # the name does not decide, the content does
    assert Image.open(tmp_path / "page.png").format == "EPS"  # what Pillow would take it for
    called = []
    original = EpsImagePlugin.Ghostscript
    EpsImagePlugin.Ghostscript = lambda *a, **k: called.append(a) or original(*a, **k)
    try:
        with pytest.raises(ImageError, match=r"page.png: cannot be read as an image"):
            load_image(tmp_path / "page.png")
    finally:
        EpsImagePlugin.Ghostscript = original
    assert not called


def test_an_animation_is_refused_not_cut_to_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="a.gif: holds 3 frames"):
        load_image(tmp_path / "a.gif")
    frames[0].save(tmp_path / "still.gif")
    assert load_image(tmp_path / "still.gif").shape == (16, 16, 3)


def test_32_bit_integer_tiffs_are_scaled_by_their_depth(tmp_path):
    ramp = np.linspace(0, 2**31 - 1, 20 * 30).reshape(20, 30).astype(np.int32)
    Image.fromarray(ramp).save(tmp_path / "deep.tif")
    img = load_image(tmp_path / "deep.tif")
    expected = np.round(ramp / (2**31 - 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(img[..., 0], expected)
    assert img.min() == 0 and img.max() == 255 and len(np.unique(img)) > 200


# --- on/off options ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["no", "off", "'no'", "N", "yes_please"])
def test_overwrite_that_is_not_true_is_refused_and_the_output_kept(tmp_path, cli, value):
    """A bool option takes no, off or N as false (never as a truthy string), and any other
    word is refused in one line."""
    write_image(tmp_path / "in.png", (16, 16))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in.png").write_bytes(b"an earlier result")
    error = cli("upscale", "model=bicubic", "scale=2", f"input={tmp_path / 'in.png'}",
                f"output={tmp_path / 'out'}", f"overwrite={value}", "logger.progress=false",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert error is not None and "\n" not in error
    assert (("is not a valid bool" in error) if value == "yes_please"
            else "overwrite=true" in error), error
    assert (tmp_path / "out" / "in.png").read_bytes() == b"an earlier result"


@pytest.mark.parametrize("job, override", [
    ("evaluate", "self_ensemble=yes_please"), ("retrain", "train.compile=sometimes"),
    ("search", "controller.rebase=maybe"), ("search", "logger.plots=nope"),
    ("compress", "separable.keep_ends=both"), ("serve", "access_log=always"),
])
def test_every_switch_takes_only_a_bool(cli, job, override):
    needed = {"retrain": ["genotype=searched_x2"], "compress": ["checkpoint=x.pt"]}.get(job, [])
    key = override.split("=")[0]
    error = cli(job, override, *needed)
    assert error.startswith(f"nas-sr {job}: error: {override}: ") and "bool" in error, error
    for given, meant in (("true", True), ("false", False), ("no", False), ("on", True)):
        assert OmegaConf.select(make_cfg(job, f"{key}={given}", *needed), key) is meant


@pytest.mark.parametrize("job, override, message", [
    ("upscale", "amp=no", "amp='no': use true, false or auto"),
    ("retrain", "train.amp=1", "train.amp=1: use true, false or auto"),
])
def test_an_auto_switch_takes_true_false_or_auto(job, override, message):
    needed = {"retrain": ["genotype=searched_x2"]}.get(job, [])
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_options(job, make_cfg(job, override, *needed))
    for ok in ("true", "false", "TRUE", "auto"):
        check_options(job, make_cfg(job, override.split("=")[0] + f"={ok}", *needed))


# --- folders that cannot be written ------------------------------------------------------


def full_disk_at(monkeypatch, suffix: str) -> None:
    """A disk that fills up as a file ending in ``suffix`` is put in place."""
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)
    monkeypatch.setattr(checkpoint.os, "replace", replace)


def test_a_full_disk_keeps_the_earlier_checkpoint_and_says_so(tmp_path, monkeypatch):
    save_atomic({"epoch": 1}, tmp_path / "last.pt")
    full_disk_at(monkeypatch, "last.pt")
    with pytest.raises(checkpoint.WriteFailed, match=re.escape(
            f"cannot write {tmp_path / 'last.pt'}: No space left on device; the earlier file "
            "is kept (free some space; or write somewhere else)")):
        save_atomic({"epoch": 2}, tmp_path / "last.pt")
    assert checkpoint.load(tmp_path / "last.pt") == {"epoch": 1}
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_a_full_disk_during_upscale_is_one_line_and_the_earlier_output_survives(
        tmp_path, cli, monkeypatch):
    write_image(tmp_path / "in.png", (16, 16))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "in.png").write_bytes(b"an earlier result")
    full_disk_at(monkeypatch, "in.png")
    error = cli("upscale", "model=bicubic", "scale=2", f"input={tmp_path / 'in.png'}",
                f"output={tmp_path / 'out'}", "overwrite=true", "logger.progress=false",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert error == (f"nas-sr upscale: error: cannot write {tmp_path / 'out' / 'in.png'}: No "
                     "space left on device; the earlier file is kept (free some space; or "
                     "write somewhere else)")
    assert (tmp_path / "out" / "in.png").read_bytes() == b"an earlier result"


@pytest.mark.parametrize("job, option", [
    ("upscale", "output"), ("export", "output"), ("search", "hydra.run.dir")])
def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, cli, no_data, job, option):
    (tmp_path / "a_file").write_text("in the way")
    blocked = tmp_path / "a_file" / "out"
    args = {"upscale": ["model=bicubic", "scale=2", f"input={write_image(tmp_path / 'i.png')}"],
            "export": [f"checkpoint={srcnn_checkpoint(tmp_path / 'm.pt', 2)}"],
            "search": ["preset=smoke"]}[job]
    run_dir = [] if option == "hydra.run.dir" else [f"hydra.run.dir={tmp_path / 'run'}"]
    error = cli(job, *args, f"{option}={blocked}", *run_dir)
    where = "hydra.run.dir: " if option == "hydra.run.dir" else ""
    assert error == (f"nas-sr {job}: error: {where}cannot write {blocked}: Not a directory (a "
                     "file stands in its path; or write somewhere else)")


def test_a_full_disk_at_a_log_s_append_is_one_line(tmp_path, cli, monkeypatch):
    history = tmp_path / "run" / "history.jsonl"

    def append(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(history))
    monkeypatch.setattr("nas_sr.cli.runfolder.append_history", append)
    error = cli("export", f"checkpoint={srcnn_checkpoint(tmp_path / 'm.pt', 2)}",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert error == f"nas-sr export: error: {history}: No space left on device (free some space)"


@pytest.mark.parametrize("job", SCHEMAS)
def test_every_on_off_option_of_every_job_is_typed_as_one(job):
    """An on/off option left untyped would take ``no`` as a truthy string."""
    cfg = make_cfg(job)
    for key, node, _ in fields(cfg):
        if isinstance(node._value(), bool):
            assert isinstance(node, BooleanNode) or key in AUTO_SWITCHES, key


@pytest.mark.parametrize("override, says", [
    ("video.preset=ultrafastt", "video.preset='ultrafastt': libx264 takes ultrafast, "),
    ("video.pix_fmt=yuv420", "video.pix_fmt='yuv420': libx264 takes yuv420p, "),
])
def test_a_bad_video_preset_or_pixel_format_is_named_before_any_frame(override, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        check_options("upscale", make_cfg("upscale", override))
