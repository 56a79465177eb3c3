"""What the search and the standalone training share: the part of a run's state that every
resumable job checkpoints, its divergence message, and PSNR on fixed crops."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf

from nas_sr import checkpoint
from nas_sr.errors import TrainingDiverged
from nas_sr.runs.log import RunLog


class RunState(ABC):
    """Epochs done, wall time, where the metrics log ends and the torch RNG: what a resumable
    job's checkpoint holds beside its own state, so a resume continues exactly.

    A subclass names its job, the checkpoint file a resume continues and the config section
    of its ``lr`` and ``grad_clip`` (for the divergence message), and defines ``state_dict``.
    """

    job: ClassVar[str]
    checkpoint_file: ClassVar[str]
    section: ClassVar[str]

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.epoch = 0
        self.elapsed = 0.0
        self.log_offset: int | None = None  # the metrics log's length at the last checkpoint

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything the checkpoint holds: :meth:`run_state` and the job's own state."""

    def run_state(self) -> dict[str, Any]:
        return {"rng": torch.get_rng_state(), "epoch": self.epoch, "elapsed": self.elapsed,
                "log_offset": self.log_offset}

    def load_run_state(self, state: dict[str, Any]) -> None:
        # search checkpoints written before the jobs shared this call the RNG torch_rng
        torch.set_rng_state(state["rng"] if "rng" in state else state["torch_rng"])
        self.epoch, self.elapsed = state["epoch"], state["elapsed"]
        self.log_offset = state["log_offset"]

    def open_log(self, cfg: DictConfig, resumed: bool) -> RunLog:
        """The run's metrics log; a resume cuts off what was logged after its checkpoint."""
        return RunLog(self.run_dir, self.log_offset if resumed else 0, cfg.logger.wandb,
                      OmegaConf.to_container(cfg, resolve=True))

    def count_epoch(self, seconds: float) -> None:
        self.epoch += 1
        self.elapsed += seconds

    def eta_s(self, epochs: int) -> float:
        """Seconds the run's epochs left to ``epochs`` take at its pace so far."""
        return self.elapsed / max(self.epoch, 1) * max(epochs - self.epoch, 0)

    def save(self, log: RunLog, *names: str) -> None:
        """Flush the log, then write the state to each file of ``names``, in order."""
        self.log_offset = log.offset
        log.flush()
        state = self.state_dict()
        for name in names:
            checkpoint.save_atomic(state, self.run_dir / name)

    def stop_if(self, problem: str | None, what: str, where: str = "") -> None:
        """Stop the run when ``problem`` (``runtime.blow_up``/``not_finite``) says ``what``
        went wrong in the current epoch (at ``where`` in it)."""
        if problem:
            raise self.diverged(f"{what} {problem} in epoch {self.epoch + 1}{where}")

    def diverged(self, what: str) -> TrainingDiverged:
        """The error that says what diverged, what is kept and how to go on."""
        s = self.section
        if self.epoch:
            kept = (f"{self.run_dir / self.checkpoint_file} (after epoch {self.epoch}) is left "
                    "as it was")
            then = f"resume: nas-sr {self.job} resume={self.run_dir} {s}.grad_clip=1.0"
        else:
            kept, then = "no checkpoint had been written yet", "start again"
        return TrainingDiverged(f"{what}; {kept}. Lower {s}.lr or set {s}.grad_clip, then "
                                f"{then}")
