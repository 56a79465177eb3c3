"""Figures of search runs, training runs and cells against each other."""
