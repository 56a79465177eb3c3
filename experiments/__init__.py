"""The Hydra config tree of every job (shipped as package data, found via ``pkg://``):
presets and groups over the typed options of ``nas_sr.schema``, registered on import."""

from nas_sr.schema import register

register()
