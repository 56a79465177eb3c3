"""Device choice, seeding and thread settings shared by every job."""

from __future__ import annotations

import math
import random

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asked for, but CUDA is not available; use device=cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def memory_format(channels_last: bool) -> torch.memory_format:
    """NHWC (``channels_last``) or NCHW: the layout models and their inputs are kept in."""
    return torch.channels_last if channels_last else torch.contiguous_format


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def cosine_lr(base: float, final: float, epoch: int, epochs: int) -> float:
    """Cosine decay from ``base`` (epoch 0) to ``final`` (epoch ``epochs``)."""
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * epoch / max(1, epochs)))


class ConfigError(ValueError):
    """A setting or input the user has to change; the CLI prints it in one line."""


class TrainingDiverged(RuntimeError):
    """A loss or reward went NaN/inf; the last checkpoint is left untouched."""
