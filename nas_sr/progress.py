"""Progress bars: tqdm, redrawn ten times a second on a terminal and twice a minute in a log.

A run in the background with its output sent to a file would otherwise write a redraw
every 0.1 s: megabytes of one-line updates an hour, and a log nobody can `tail`.
"""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between a bar's redraws when it writes to a file or pipe


class Bar(tqdm):
    """tqdm whose postfix (a loss, a reward) waits for the next redraw instead of forcing one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = False, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)


def duration(seconds: float) -> str:
    """``45s``, ``3m 20s``, ``1h 02m``."""
    s = max(0, round(seconds))
    hours, minutes = divmod(s // 60, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {s % 60:02d}s" if minutes \
        else f"{s}s"


def epoch_line(epoch: int, planned: str, facts: str, took: str, left_s: float) -> str:
    """One epoch's line, the same for a search and a retrain: what it measured, what it
    took, and how long the run's epochs left will take at its pace so far."""
    where = f"{epoch}/{planned}" if planned.isdigit() else f"{epoch} ({planned})"
    left = f", {duration(left_s)} left" if round(left_s) > 0 else ""
    return f"epoch {where}: {facts}; {took}{left}"


def progress_bar(iterable: Any = None, **kwargs: Any) -> Bar:
    """A `Bar(iterable, **kwargs)`, redrawn at most every `LOG_INTERVAL_S` off a terminal."""
    stream = kwargs.get("file") or sys.stderr
    on_terminal = bool(getattr(stream, "isatty", lambda: False)())
    kwargs.setdefault("mininterval", 0.1 if on_terminal else LOG_INTERVAL_S)
    if not on_terminal:
        # tqdm's monitor thread redraws a bar silent for maxinterval (10 s), and inside a
        # loop it draws a stale count: let it step in only when a loop has really slowed
        kwargs.setdefault("maxinterval", 2 * kwargs["mininterval"])
        # a bar erased at its end leaves a log only its 0% line: keep each bar's last state
        kwargs["leave"] = True
    return Bar(iterable, **kwargs)
