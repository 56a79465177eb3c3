"""The recipe's pieces that the search and standalone training share: the learning-rate
schedule, losses, clocks, and the guard that calls a run diverged."""

from __future__ import annotations

import math
import time

# cpu: this process's CPU time, which other jobs on a shared box do not inflate (a fair
# budget for 1-thread runs; n threads count n times)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# train.loss -> its torch.nn.functional name, looked up when a run starts (tests patch F)
LOSSES = {"l1": "l1_loss", "mse": "mse_loss"}


def cosine_lr(base: float, final: float, epoch: int, epochs: int) -> float:
    """Cosine decay from ``base`` (epoch 0) to ``final`` (epoch ``epochs``)."""
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * epoch / max(1, epochs)))


# Images live in [0, 1], so an L1 loss above 1 puts outputs further from the target, on
# average, than the whole pixel range. A deep net's first Adam steps may overshoot that and
# recover (VDSR's second step at lr 1e-3: 1.55), so it takes PATIENCE such steps in a row,
# or one above HOPELESS_L1_LOSS (lr=10 gives 1e23), to call the weights diverged.
MAX_L1_LOSS = 1.0


HOPELESS_L1_LOSS = 100.0


PATIENCE = 20


def not_finite(value: float) -> str | None:
    """``became nan`` (or inf) for the divergence message, None for a finite value."""
    return None if math.isfinite(value) else f"became {value}"


class BlowUpGuard:
    """Watches a run's mean L1 training losses, step by step."""

    def __init__(self) -> None:
        self.streak = 0  # steps in a row above MAX_L1_LOSS

    def __call__(self, loss: float) -> str | None:
        """What is wrong with this step's loss, or None while training is sane."""
        if not math.isfinite(loss):
            return not_finite(loss)
        self.streak = self.streak + 1 if loss > MAX_L1_LOSS else 0
        if loss > HOPELESS_L1_LOSS or self.streak >= PATIENCE:
            return (f"blew up to {loss:.3g} (an L1 loss above {MAX_L1_LOSS} on [0, 1] images, "
                    f"{self.streak} step(s) in a row: the weights diverged)")
        return None
