"""The run's metrics log: JSON lines on disk, mirrored to wandb and TensorBoard when enabled.

Every record of every job passes through :meth:`RunLog.log`, so the mirrors are fed here
and nowhere else: a job that logs a new number gets it plotted without a line of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nas_sr.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"


def step_key(kind: str) -> str:
    """The field a record of ``kind`` is counted by: controller steps, else epochs."""
    return "controller_step" if kind == "controller" else "epoch"


def scalars(kind: str, fields: dict[str, Any]) -> dict[str, float]:
    """A record's numbers as ``KIND/NAME`` scalars, its step and flags (bools) left out."""
    return {f"{kind}/{k}": v for k, v in fields.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in ("controller_step", "epoch")}


def summary_writer() -> type:
    """torch's ``SummaryWriter``; tensorboard is an optional extra, named when missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415
    except ImportError:
        raise ConfigError("logger.tensorboard=true needs tensorboard: "
                          "pip install nas-sr[tensorboard]") from None
    return SummaryWriter


class RunLog:
    """Appends one JSON object per event to ``metrics.jsonl``.

    ``offset`` is the file size after the last checkpointed event; a resumed run
    truncates back to it so no event of a killed epoch is kept twice. With
    ``logger.tensorboard`` on in ``config``, each record's numbers also go to
    ``RUN_DIR/tensorboard`` at their step (records without one, start and final, are
    summaries and stay in the log only).
    """

    def __init__(self, run_dir: Path, resume_offset: int | None = None,
                 wandb_cfg: Any = None, config: dict | None = None):
        self.path = run_dir / "metrics.jsonl"
        if resume_offset is not None and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(resume_offset)
        logger = (config or {}).get("logger") or {}
        # before the log is opened: a missing extra costs nothing
        self.tensorboard = (summary_writer()(log_dir=str(run_dir / TENSORBOARD_DIR))
                            if logger.get("tensorboard") else None)
        self._file = open(self.path, "a")
        self.wandb = None
        if wandb_cfg is not None and wandb_cfg.enabled:
            import wandb

            self.wandb = wandb.init(
                project=wandb_cfg.project, mode=wandb_cfg.mode, dir=str(run_dir),
                config=config, name=run_dir.name, id=_wandb_id(run_dir), resume="allow",
            )

    @property
    def offset(self) -> int:
        self._file.flush()
        return self._file.tell()

    def log(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, **fields}
        self._file.write(json.dumps(record) + "\n")
        key = step_key(kind)
        if self.wandb is not None:
            numbers = {f"{kind}/{k}": v for k, v in fields.items()
                       if isinstance(v, (int, float)) and k != key}
            numbers[key] = fields.get(key)
            self.wandb.log(numbers)
        step = fields.get(key)
        if self.tensorboard is not None and isinstance(step, int):
            for tag, value in scalars(kind, fields).items():
                self.tensorboard.add_scalar(tag, value, step)

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        self._file.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _wandb_id(run_dir: Path) -> str:
    """A stable id per run folder, so a resumed run continues the same wandb run."""
    import hashlib

    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's records. A running job may be caught mid-write: a torn last line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics log; is {run_dir} a run folder?")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; the log is damaged") from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                break
            raise ConfigError(f"{path}:{i}: not a JSON record; the log is damaged") from None
        if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            raise ConfigError(f"{path}:{i}: not a nas-sr record (an object with a \"kind\"); "
                              f"the log is damaged or another tool's")
        records.append(record)
    return records
