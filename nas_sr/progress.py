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


def progress_bar(iterable: Any = None, **kwargs: Any) -> Bar:
    """A `Bar(iterable, **kwargs)`, redrawn at most every `LOG_INTERVAL_S` off a terminal."""
    stream = kwargs.get("file") or sys.stderr
    on_terminal = bool(getattr(stream, "isatty", lambda: False)())
    kwargs.setdefault("mininterval", 0.1 if on_terminal else LOG_INTERVAL_S)
    if not on_terminal:
        # tqdm's monitor thread redraws a bar silent for maxinterval (10 s), and inside a
        # loop it draws a stale count: let it step in only when a loop has really slowed
        kwargs.setdefault("maxinterval", 2 * kwargs["mininterval"])
    return Bar(iterable, **kwargs)
