"""Learning curves of standalone training runs (retrain, compress rounds): validation PSNR
against steps and against training time, several runs overlaid. ``nas-sr plot`` draws
them for the run folders it is given that hold a training run, and for the curves it saved
before (``curve_<run>.json``), so a run can be drawn beside one whose folder is gone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from nas_sr.plots.search import DPI, PlotError
from nas_sr.runs.folder import CHECKPOINTS, job_of
from nas_sr.runs.log import read_metrics

CURVE_PREFIX = "curve_"


@dataclass
class TrainingLog:
    path: Path  # the run folder, or the saved curve it was read from
    name: str  # the run folder's name, also for a saved curve of it
    label: str
    steps: np.ndarray  # optimizer steps at the end of each epoch
    hours: np.ndarray  # training time by train.clock (validation excluded) per epoch end
    val_psnr: np.ndarray  # of the kept weights: the moving average under train.ema
    val_psnr_trained: np.ndarray  # of the stepped weights where train.ema was on, else NaN
    epochs: np.ndarray  # the epoch numbers logged
    lr: np.ndarray  # learning rate at each epoch's end (NaN in logs that lack it)

    def curve(self) -> list[dict[str, float]]:
        """The per-epoch curve as plain rows (``nas-sr plot`` writes it as
        ``curve_<run>.json``): epoch, steps, val_psnr[, val_psnr_trained], train_s, lr."""
        rows = []
        for i, epoch in enumerate(self.epochs):
            row = {"epoch": int(epoch), "steps": int(self.steps[i]),
                   "val_psnr": float(self.val_psnr[i])}
            if not np.isnan(self.val_psnr_trained[i]):
                row["val_psnr_trained"] = float(self.val_psnr_trained[i])
            row["train_s"] = float(self.hours[i] * 3600)
            if not np.isnan(self.lr[i]):
                row["lr"] = float(self.lr[i])
            rows.append(row)
        return rows


def is_saved_curve(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix == ".json" and path.name.startswith(CURVE_PREFIX)


def is_training_run(path: str | Path) -> bool:
    """A folder that retrain made (its history says so, or its ``last.pt`` does), or a
    learning curve ``nas-sr plot`` saved."""
    return is_saved_curve(path) or job_of(Path(path).expanduser(), CHECKPOINTS) == "retrain"


def load_training_run(path: str | Path) -> TrainingLog:
    """A training run's curve, from its folder's metrics or from a saved ``curve_*.json``."""
    if is_saved_curve(path):
        return load_curve(Path(path).expanduser().resolve())
    run_dir = Path(path).expanduser().resolve()
    per_epoch = int(OmegaConf.load(run_dir / "config.yaml").train.iters_per_epoch)
    records = read_metrics(run_dir)
    epochs = [r for r in records if r["kind"] == "epoch"]
    start = next((r for r in records if r["kind"] == "start"), {})
    label = f"{run_dir.name} ({start['params'] / 1e3:.0f}K)" if "params" in start else run_dir.name
    # logs from before the trainer counted steps and its training clock: whole epochs, and
    # each epoch's wall time
    steps = [r.get("steps", r["epoch"] * per_epoch) for r in epochs]
    seconds = ([r["train_s"] for r in epochs] if all("train_s" in r for r in epochs)
               else np.cumsum([r["train_time_s"] for r in epochs]))
    return from_rows(run_dir, run_dir.name, label, epochs, steps, seconds)


def load_curve(path: Path) -> TrainingLog:
    """A curve ``TrainingLog.curve`` wrote, read back."""
    try:
        rows = json.loads(path.read_text())
        name = path.stem.removeprefix(CURVE_PREFIX)
        return from_rows(path, name, name, rows, [r["steps"] for r in rows],
                         [r["train_s"] for r in rows])
    except (ValueError, TypeError, KeyError) as e:  # JSON, or not a list of curve rows
        raise PlotError(f"{path} is not a learning curve that nas-sr plot wrote "
                        f"(rows of epoch, steps, val_psnr, train_s): {e!r}") from e


def from_rows(path: Path, name: str, label: str, epochs: list[dict], steps: list[int],
              seconds: list[float] | np.ndarray) -> TrainingLog:
    return TrainingLog(path, name, label, np.array(steps, dtype=float),
                       np.asarray(seconds, dtype=float) / 3600,
                       np.array([r["val_psnr"] for r in epochs], dtype=float),
                       np.array([r.get("val_psnr_trained", np.nan) for r in epochs], dtype=float),
                       np.array([r["epoch"] for r in epochs]),
                       np.array([r.get("lr", np.nan) for r in epochs], dtype=float))


def training_curves_figure(runs: list[TrainingLog]) -> Figure:
    """Validation PSNR against steps (left) and training hours (right), one line a run;
    under ``train.ema`` the trained weights' PSNR dotted beside the average's."""
    fig = Figure(figsize=(11, 4.2), dpi=DPI, layout="constrained")
    by_steps, by_time = fig.subplots(1, 2, sharey=True)
    for run in runs:
        line, = by_steps.plot(run.steps, run.val_psnr, label=run.label, lw=1.2)
        by_time.plot(run.hours, run.val_psnr, color=line.get_color(), lw=1.2)
        if not np.isnan(run.val_psnr_trained).all():
            by_steps.plot(run.steps, run.val_psnr_trained, color=line.get_color(), lw=0.8,
                          ls=":", label=f"{run.name}: trained weights (EMA above)")
            by_time.plot(run.hours, run.val_psnr_trained, color=line.get_color(), lw=0.8, ls=":")
    by_steps.set(xlabel="optimizer steps", ylabel="validation PSNR (dB, Y)",
                 title="against steps")
    by_time.set(xlabel="training time (h, train.clock; validation excluded)", title="against time")
    for ax in (by_steps, by_time):
        ax.grid(alpha=0.3)
    by_steps.legend(fontsize=7, loc="lower right")
    fig.suptitle("Learning curves (each run on its own validation images)")
    return fig
