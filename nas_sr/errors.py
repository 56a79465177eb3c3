"""The errors a user acts on: a bad setting or input, and a run that diverged."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting or input the user has to change; the CLI prints it in one line."""


class TrainingDiverged(RuntimeError):
    """A loss or reward went NaN/inf or blew up; the last checkpoint is left untouched."""
