"""The Hydra config tree of every job (shipped as package data, found via ``pkg://``)."""
