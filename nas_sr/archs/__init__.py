"""Every model the toolkit trains: the baselines, the ``arch`` spec that builds any of them,
lighter forms, and their size."""
