"""nas-sr: ENAS-style cell search for single-image super-resolution.

From Python, ``nas_sr.run(job, ...)``, ``nas_sr.config(job, ...)`` and
``nas_sr.upscale_image(model, image)`` (``nas_sr.api``; docs/python_api.md).
"""

from typing import Any

__version__ = "0.1.0"
API = ("Result", "config", "run", "upscale_image")


def __getattr__(name: str) -> Any:
    # the API loads torch and every job: only when asked for, not on ``import nas_sr``
    if name in API:
        from nas_sr import api

        return getattr(api, name)
    raise AttributeError(f"module 'nas_sr' has no attribute {name!r}")
