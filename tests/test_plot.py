import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

from conftest import make_cfg, write_run
from nas_sr.cli import run_job
from nas_sr.errors import ConfigError
from nas_sr.jobs import plot
from nas_sr.plots import search as search_plots
from nas_sr.plots import training as training_plots
from nas_sr.runs.log import read_metrics
from search_spaces.genotypes import Genotype
from search_spaces.operations import OP_NAMES, REGISTRY

ALL_PLOTS = {"reward", "entropy", "best_reward", "loss", "op_frequencies", "best_cell"}


def plot_cfg(*overrides: str):
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        return compose("plot", overrides=["logger.progress=false", *overrides])


@pytest.fixture
def search_run(smoke_search, tmp_path) -> Path:
    """A copy of a real (smoke) search, so the plots read exactly what the search job
    writes, and can write their own plots/ without touching the shared run."""
    run_dir = tmp_path / "search"
    shutil.copytree(smoke_search, run_dir, ignore=shutil.ignore_patterns("plots"))
    return run_dir


def assert_real_image(path: Path) -> None:
    with Image.open(path) as img:
        assert img.width >= 400 and img.height >= 250, path
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 20, f"{path}: nearly a single colour"


def test_plot_run_writes_every_plot_as_a_real_png(search_run):
    paths = search_plots.plot_run(search_run)
    assert {p.stem for p in paths} == ALL_PLOTS
    for p in paths:
        assert p.parent == search_run / "plots" and p.suffix == ".png"
        assert_real_image(p)


def test_figures_have_the_expected_axes(search_run):
    figs = search_plots.run_figures(search_plots.load_run(search_run))
    reward = figs["reward"].axes[0]
    assert (reward.get_xlabel(), reward.get_ylabel()) == ("controller step", "reward (dB)")
    legend = {t.get_text() for t in reward.get_legend().get_texts()}
    assert "EMA baseline" in legend and any("moving average" in t for t in legend)
    assert figs["entropy"].axes[0].get_ylabel().startswith("entropy")
    assert figs["best_reward"].axes[0].get_ylabel() == "reward (dB)"
    assert figs["loss"].axes[0].get_xlabel() == "epoch"
    ops = figs["op_frequencies"].axes[0]
    assert {t.get_text() for t in ops.get_legend().get_texts()} == set(OP_NAMES)
    assert "controller step" in ops.get_xlabel()

    cell = figs["best_cell"]
    assert "chosen cell (genotype.json" in cell.get_suptitle()
    texts = [t.get_text() for t in cell.axes[0].texts]
    for name in ("h(k-2)", "h(k-1)", "h(k)", "n0", "n1", "n2", "n3", "n4"):
        assert name in texts
    labels = {op.label for op in REGISTRY.values()}
    assert sum(t in labels for t in texts) == 10  # one label per op edge


def test_op_shares_sum_to_one_per_window(tmp_path):
    run = search_plots.load_run(write_run(tmp_path / "r", steps=25))
    edges, shares = search_plots.op_shares(run, window=10)
    assert edges.tolist() == [0, 10, 20, 25]  # the last window is the partial one
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_overlay_averages_over_the_runs_that_reached_each_step(tmp_path):
    runs = [search_plots.load_run(write_run(tmp_path / name, ctrl, steps, seed=i))
            for i, (name, ctrl, steps) in enumerate(
                [("e1", "enas", 30), ("e2", "enas", 50), ("r1", "random", 40)])]
    fig = search_plots.overlay_figure(runs, smooth_window=5)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("controller step", "reward (dB)")
    means = {line.get_label(): line for line in ax.get_lines()}
    enas = means["enas: mean of 2 runs"]
    assert "random: mean of 1 run" in means
    x, y = enas.get_data()
    assert x.tolist() == list(range(1, 51))  # as long as the longest enas run
    short, long = (search_plots.smooth(r.column("reward"), 5) for r in runs[:2])
    np.testing.assert_allclose(y[:30], (short + long[:30]) / 2)
    np.testing.assert_allclose(y[30:], long[30:])  # only the longer run is left
    assert any(line.get_xdata()[0] == 30 for line in ax.get_lines()
               if line.get_linestyle() == ":")  # where the short run ends
    assert_real_image(search_plots.save({"overlay": fig}, tmp_path / "out")[0])


def test_a_running_search_with_a_torn_last_line(tmp_path):
    run_dir = write_run(tmp_path / "running", steps=8, per_epoch=10)  # no epoch finished
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"kind": "controller", "controller_step": 9, "rew')
    paths = search_plots.plot_run(run_dir)
    assert {p.stem for p in paths} == ALL_PLOTS - {"loss"}
    run = search_plots.load_run(run_dir)
    assert len(run.steps) == 8
    genotype, note = search_plots.best_cell(run)
    top = max(run.steps, key=lambda r: r["reward"])
    assert genotype == Genotype.from_dict({"nodes": top["genotype"]})
    assert "highest-reward sample" in note


def test_a_damaged_line_mid_log_is_an_error(tmp_path):
    run_dir = write_run(tmp_path / "r", steps=3)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"metrics.jsonl:2"):
        search_plots.load_run(run_dir)


def test_job_plots_each_run_and_the_overlay(tmp_path):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", "random", steps=20, seed=1)
    cfg = plot_cfg(f"runs=[{a},{b}]", f"overlay_dir={tmp_path / 'cmp'}", "band=std")
    out = run_job("plot", cfg, tmp_path / "job")
    assert out["overlay"] == [str(tmp_path / "cmp" / "overlay_reward.png")]
    for run_dir in (a, b):
        assert len(out["runs"][str(run_dir)]) == len(ALL_PLOTS)


def test_training_runs_get_their_learning_curves_overlaid(image_folder, tmp_path):
    runs = []
    for model, epochs, ema in (("srcnn", 3, 0.9), ("fsrcnn", 2, 0)):
        runs.append(tmp_path / model)
        run_job("retrain", make_cfg("retrain", "data=folder", f"data.train_dir={image_folder}",
                                    f"model={model}", f"train.epochs={epochs}",
                                    "train.iters_per_epoch=2", f"train.ema={ema}"), runs[-1])
    search = write_run(tmp_path / "search")
    out = run_job("plot", plot_cfg(f"runs=[{runs[0]},{search},{runs[1]}]"), tmp_path / "job")
    assert out["overlay"] == [str(tmp_path / "job" / f"overlay_{k}.png")
                              for k in ("reward", "training")]
    assert list(out["runs"]) == [str(search)]  # the search's own plots; none for retrains
    assert_real_image(tmp_path / "job" / "overlay_training.png")
    logs = [training_plots.load_training_run(r) for r in runs]
    by_steps, by_time = training_plots.training_curves_figure(logs).axes
    # srcnn's average, then its trained weights dotted (train.ema), then fsrcnn
    assert [list(line.get_xdata()) for line in by_steps.lines] == [[2, 4, 6], [2, 4, 6], [2, 4]]
    assert [line.get_linestyle() for line in by_steps.lines] == ["-", ":", "-"]
    assert list(by_steps.lines[1].get_ydata()) == list(logs[0].val_psnr_trained)
    assert np.isfinite(logs[0].val_psnr_trained).all() and np.isnan(logs[1].val_psnr_trained).all()
    assert all(np.all(np.diff(line.get_xdata()) > 0) for line in by_time.lines)
    # each training run's curve, as drawn, beside the figure
    assert out["curves"] == [str(tmp_path / "job" / f"curve_{r.name}.json") for r in runs]
    curve = json.loads((tmp_path / "job" / "curve_srcnn.json").read_text())
    assert [row["steps"] for row in curve] == [2, 4, 6] and [r["epoch"] for r in curve] == [1, 2, 3]
    assert [row["val_psnr_trained"] for row in curve] == list(logs[0].val_psnr_trained)
    assert all(row["lr"] > 0 and row["train_s"] > 0 for row in curve)
    no_ema = json.loads((tmp_path / "job" / "curve_fsrcnn.json").read_text())
    assert "val_psnr_trained" not in no_ema[0]
    trained_s = [r["train_s"] for r in read_metrics(runs[0]) if r["kind"] == "epoch"]
    assert list(by_time.lines[0].get_xdata()) == pytest.approx([x / 3600 for x in trained_s])
    assert list(by_steps.lines[0].get_ydata()) == list(logs[0].val_psnr)
    # a saved curve stands in for its run folder: drawn the same, and not written again
    saved = tmp_path / "job" / "curve_srcnn.json"
    again = run_job("plot", plot_cfg(f"runs=[{saved},{runs[1]}]"), tmp_path / "again")
    assert again["curves"] == [str(tmp_path / "again" / "curve_fsrcnn.json")]
    assert_real_image(tmp_path / "again" / "overlay_training.png")
    from_curve = training_plots.load_training_run(saved)
    assert from_curve.name == "srcnn"
    rows = from_curve.curve()
    assert all(row == pytest.approx(ref) for row, ref in zip(rows, curve, strict=True))
    lines = training_plots.training_curves_figure([from_curve, logs[1]]).axes[0].lines
    assert [list(line.get_ydata()) for line in lines] == [
        list(line.get_ydata()) for line in by_steps.lines]


def test_cli_takes_run_folders_with_commas_in_their_names(tmp_path, cli, capsys):
    odd = write_run(tmp_path / "controller=enas,seed=0")  # a sweep's run folder
    assert cli("plot", str(odd), "logger.progress=false", f"hydra.run.dir={tmp_path / 'j'}") is None
    assert f"{odd}: {len(ALL_PLOTS)} plots" in capsys.readouterr().out


def test_job_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(search_plots.PlotError, match="no run folders given"):
        plot.run(plot_cfg(), tmp_path)
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(FileNotFoundError, match="not_a_run"):
        plot.run(plot_cfg(f"runs=[{tmp_path / 'not_a_run'}]"), tmp_path)
    logs = {b"\xff\xfe\x00binary": "not a text file",
            b'{"step": 1}\n{"step": 2}\n': "not a nas-sr record",
            b'[1, 2]\n{"kind": "epoch"}\n': "not a nas-sr record"}
    for i, (data, message) in enumerate(logs.items()):
        bad = write_run(tmp_path / f"odd{i}", steps=5)
        (bad / "metrics.jsonl").write_bytes(data)
        with pytest.raises(ConfigError, match=f"metrics.jsonl.*: {message}"):
            plot.run(plot_cfg(f"runs=[{bad}]"), tmp_path)
    lines = (bad := write_run(tmp_path / "words", steps=5)).joinpath("metrics.jsonl").read_text()
    (bad / "metrics.jsonl").write_text(lines.replace('"reward": ', '"reward": "high", "x": ', 1))
    with pytest.raises(search_plots.PlotError, match="'reward' is not a number in every"):
        plot.run(plot_cfg(f"runs=[{bad}]"), tmp_path)
    for text in ("{not json", '{"epoch": 1}', '[{"epoch": 1, "val_psnr": 30.0}]'):
        (tmp_path / "curve_bad.json").write_text(text)
        with pytest.raises(search_plots.PlotError, match="curve_bad.json is not a learning"):
            plot.run(plot_cfg(f"runs=[{tmp_path / 'curve_bad.json'}]"), tmp_path)


def test_log_to_wandb_logs_each_png_as_an_image(tmp_path):
    import wandb

    class FakeRun:  # stands in for wandb.init(): records what would be logged
        def __init__(self) -> None:
            self.logged: dict = {}

        def log(self, data: dict) -> None:
            self.logged |= data

    run = search_plots.load_run(write_run(tmp_path / "r"))
    paths = search_plots.save(search_plots.run_figures(run), tmp_path)
    fake = FakeRun()
    search_plots.log_to_wandb(fake, paths)
    assert set(fake.logged) == {f"plots/{s}" for s in ALL_PLOTS}
    assert all(isinstance(v, wandb.Image) for v in fake.logged.values())
