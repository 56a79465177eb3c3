"""A run folder belongs to one live process, and remembers every command run in it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nas_sr.errors import ConfigError

LOCK = ".nas-sr.lock"  # also marks the folder as a run folder (data listings skip it)
HISTORY = "history.jsonl"
CHECKPOINTS = {"search": "checkpoint.pt", "retrain": "last.pt"}  # what a resume continues


class RunFolderBusy(ConfigError):
    """Another live process owns the run folder."""


def is_main_process() -> bool:
    """Under torchrun, rank 0 owns the folder for the whole process group."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def owned(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for the block; refuse if another live process holds it.

    An advisory ``flock`` on ``run_dir/.nas-sr.lock``: the kernel drops it when its
    process ends, however it ends, so the lock of a killed run is simply taken over.
    The file says who holds it, for the refusal message.
    """
    if not is_main_process():
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            raise RunFolderBusy(
                f"{run_dir} is in use by {owner}; a run folder belongs to one live process: "
                f"wait for it to end, or pick another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({_command()})".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def append_history(run_dir: Path, job: str, overrides: list[str], resume: bool) -> None:
    """One JSON line per command run in ``run_dir``, refused ones included (but for one
    refused because another live process owns the folder: not this command's to write)."""
    if not is_main_process():
        return
    record = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "job": job, "resume": resume,
              "overrides": overrides, "command": _command(), "pid": os.getpid()}
    with open(run_dir / HISTORY, "a") as f:
        f.write(json.dumps(record) + "\n")


def history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / HISTORY
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line of a killed write tells nothing
    return records


def job_of(run_dir: Path, checkpoints: dict[str, str]) -> str | None:
    """Which job made ``run_dir``: its history's first command, else its checkpoint's name."""
    for record in history(run_dir):
        if isinstance(record, dict) and record.get("job"):
            return str(record["job"])
    found = [job for job, name in checkpoints.items() if (run_dir / name).is_file()]
    return found[0] if len(found) == 1 else None
