"""nas-sr: ENAS-style cell search for single-image super-resolution."""

__version__ = "0.1.0"
