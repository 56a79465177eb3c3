"""The jobs: one module each with ``run(cfg, run_dir)`` (``report``: ``main(argv)``).

A job reads its config and drives the parts in ``nas_sr/``; no job imports another.
"""
