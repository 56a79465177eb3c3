import os
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image

os.environ.setdefault("WANDB_MODE", "offline")  # never reach the network from a test
os.environ.setdefault("WANDB_SILENT", "true")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
needs_datasets = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real image data not found at {SHARED} (../shared/datasets)"
)


def make_cfg(job: str = "search", *overrides: str) -> DictConfig:
    """A composed job config, tiny by default (the smoke preset, no progress bars)."""
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        return compose(job, overrides=["preset=smoke", "logger.progress=false", "device=cpu",
                                       *overrides])


def write_image(path: Path, size: tuple[int, int] = (80, 96), seed: int = 0) -> Path:
    """A smooth random RGB image (smooth, so SR has something to learn)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size[1], size[0]), Image.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "hr"
    for i in range(6):
        write_image(folder / f"img{i}.png", seed=i)
    return folder
