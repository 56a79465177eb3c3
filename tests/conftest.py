import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image

from nas_sr.archs.baselines import SRCNN
from nas_sr.checkpoint import save_atomic
from nas_sr.cli import main, run_job
from nas_sr.data.images import downscale, load_image
from nas_sr.schema.jobs import SCHEMAS, Sized
from search_spaces.genotypes import Genotype, choices_per_decision

os.environ.setdefault("WANDB_MODE", "offline")  # never reach the network from a test
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core: a torch thread each, since two 2-thread jobs on 2 cores run far
    # slower than two 1-thread ones (subprocesses inherit the variable)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
needs_datasets = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real image data not found at {SHARED} (../shared/datasets)"
)


QUIET = ["preset=smoke", "logger.progress=false", "logger.plots=false", "device=cpu"]


def quiet(job: str) -> list[str]:
    """QUIET, less the preset for a job that no preset sizes."""
    return QUIET if issubclass(SCHEMAS[job], Sized) else QUIET[1:]


def make_cfg(job: str = "search", *overrides: str) -> DictConfig:
    """A composed job config, tiny by default (the smoke preset, no progress bars, no plots)."""
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        return compose(job, overrides=[*quiet(job), *overrides])


@pytest.fixture(scope="session")
def smoke_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real smoke search (2 epochs x 10 controller steps, with plots), shared by every
    test that only reads a finished search run: do not write into it."""
    run_dir = tmp_path_factory.mktemp("smoke_search")
    run_job("search", make_cfg("search", "logger.plots=true"), run_dir)
    return run_dir


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """``nas-sr ARGS`` in this process; returns the one-line error it exits with, or None."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() sets it for Hydra

    def run(*args: str) -> str | None:
        try:
            main(list(args))
        except SystemExit as e:
            return None if e.code in (None, 0) else str(e.code)
        return None

    return run


def write_image(path: Path, size: tuple[int, int] = (80, 96), seed: int = 0) -> Path:
    """A smooth random RGB image (smooth, so SR has something to learn)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size[1], size[0]), Image.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def make_set(root: Path, name: str = "Tiny", scale: int = 2, count: int = 2) -> Path:
    """A benchmark set laid out like ../shared/datasets/benchmark, from synthetic images."""
    for i in range(count):
        gt = write_image(root / name / f"X{scale}" / "HR" / f"img_{i}.png", (48, 60), seed=i)
        lq = gt.parent.parent / "LR" / gt.name
        lq.parent.mkdir(exist_ok=True)
        Image.fromarray(downscale(load_image(gt), scale)).save(lq)
    return root


def srcnn_checkpoint(path: Path, scale: int, seed: int = 0) -> Path:
    """An untrained SRCNN checkpoint (seeded): a real model file for the jobs that load one."""
    torch.manual_seed(seed)
    save_atomic({"arch": {"name": "srcnn", "scale": scale}, "model": SRCNN(scale).state_dict()},
                path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "hr"
    for i in range(6):
        write_image(folder / f"img{i}.png", seed=i)
    return folder


def write_run(folder: Path, controller: str = "enas", steps: int = 40, per_epoch: int = 10,
              seed: int = 0) -> Path:
    """A search run folder as the search job leaves it mid-way: config and metrics log."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"controller:\n  name: {controller}\n")
    records, baseline = [{"kind": "start", "device": "cpu"}], None
    for step in range(1, steps + 1):
        reward = 28 + 4 * (1 - np.exp(-step / 30)) + rng.normal(0, 0.3)
        baseline = reward if baseline is None else 0.95 * baseline + 0.05 * reward
        decisions = [int(rng.integers(c)) for c in choices_per_decision(5)]
        records.append({
            "kind": "controller", "controller_step": step, "epoch": (step - 1) // per_epoch + 1,
            "genotype": Genotype.from_decisions(decisions).to_dict()["nodes"],
            "reward": reward, "baseline": baseline, "advantage": reward - baseline,
            "entropy": 27.0 - step / steps, "log_prob": -27.0})
        if step % per_epoch == 0:
            records.append({"kind": "epoch", "epoch": step // per_epoch, "loss": 0.1 / step,
                            "lr": 1e-3, "reward_mean": reward, "shared_time_s": 1.0,
                            "controller_time_s": 1.0})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def write_clip(path: Path, frames: int = 12, size: tuple[int, int] = (48, 64), fps: int = 12,
               audio: str | None = "aac", rotation: int = 0, video: bool = True,
               codec: str | None = None, pix_fmt: str = "yuv420p",
               audio_rate: int = 16000) -> Path:
    """A small H.264 (MPEG-4 Part 2 in AVI, or ``codec``) clip: frame i is a smooth picture
    at brightness 10 + 15 i, with a 440 Hz tone in ``audio`` (a codec name, at
    ``audio_rate`` Hz) when given."""
    import av  # only the video tests need it

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = np.asarray(Image.fromarray(rng.integers(0, 120, (7, 9, 3), dtype=np.uint8))
                      .resize((size[1], size[0]), Image.BICUBIC), dtype=np.int16)
    with av.open(str(path), "w") as out:
        if video:
            codec = codec or ("mpeg4" if path.suffix == ".avi" else "libx264")
            vs = out.add_stream(codec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = size[1], size[0], pix_fmt
            if rotation:
                vs.set_display_rotation(rotation)
        if audio:
            rate = audio_rate
            aus = out.add_stream(audio, rate=rate, layout="mono")
            t = np.arange(rate * frames // fps) / rate
            tone = (0.3 * np.sin(2 * np.pi * 440 * t))[None]
            fmt = aus.codec_context.format.name
            samples = (tone * 32767).astype(np.int16) if fmt.startswith("s16") else \
                tone.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
            frame.sample_rate = rate
            out.mux(aus.encode(frame))
            out.mux(aus.encode(None))
        for i in range(frames if video else 0):
            img = np.clip(base + 10 + 15 * i, 0, 255).astype(np.uint8)
            out.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        if video:
            out.mux(vs.encode(None))
    return path
