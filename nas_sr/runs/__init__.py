"""A run folder: who owns it, the commands run in it, and its metrics log."""
