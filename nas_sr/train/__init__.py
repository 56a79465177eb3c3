"""Standalone training: the loop, its resumable state and recipe, weight averaging, DDP and
distillation."""
