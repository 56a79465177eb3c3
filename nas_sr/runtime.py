"""Device choice, seeding and thread settings shared by every job."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(str(name))
    except RuntimeError:
        raise ConfigError(f"device={name}: not a device; use auto, cpu, cuda or cuda:N"
                          ) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name}: nas-sr runs on cpu, cuda or mps; use device=auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asked for, but CUDA is not available; use device=cpu")
    return device


# cpu: this process's CPU time, which other jobs on a shared box do not inflate (a fair
# budget for 1-thread runs; n threads count n times)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def memory_format(channels_last: bool) -> torch.memory_format:
    """NHWC (``channels_last``) or NCHW: the layout models and their inputs are kept in."""
    return torch.channels_last if channels_last else torch.contiguous_format


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads={threads}: must be a whole number >= 1, or null for "
                          "torch's default")
    torch.set_num_threads(threads)


def cosine_lr(base: float, final: float, epoch: int, epochs: int) -> float:
    """Cosine decay from ``base`` (epoch 0) to ``final`` (epoch ``epochs``)."""
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * epoch / max(1, epochs)))


class ConfigError(ValueError):
    """A setting or input the user has to change; the CLI prints it in one line."""


class TrainingDiverged(RuntimeError):
    """A loss or reward went NaN/inf or blew up; the last checkpoint is left untouched."""


# Images live in [0, 1], so an L1 loss above 1 means outputs further from the target, on
# average, than the whole pixel range: no training recovers from there (lr=10 gives 1e23).
MAX_L1_LOSS = 1.0


def not_finite(value: float) -> str | None:
    """``became nan`` (or inf) for the divergence message, None for a finite value."""
    return None if math.isfinite(value) else f"became {value}"


def blow_up(loss: float) -> str | None:
    """What is wrong with a mean L1 training loss, or None when it is a sane value."""
    if math.isfinite(loss) and loss > MAX_L1_LOSS:
        return (f"blew up to {loss:.3g} (an L1 loss above {MAX_L1_LOSS} on [0, 1] images "
                "means the weights diverged)")
    return not_finite(loss)
