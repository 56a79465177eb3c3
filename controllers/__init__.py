"""Search controllers: the ENAS LSTM policy and the random-search baseline."""

from controllers.base import Controller, Sample
from controllers.lstm import LSTMController
from controllers.uniform import RandomController


def build_controller(name: str, num_nodes: int, **kwargs) -> Controller:
    """Build a controller by config name (``enas`` or ``random``); ``ops=`` names the
    space's ops (the default space's if not given)."""
    kinds = {"enas": LSTMController, "random": RandomController}
    if name not in kinds:
        raise ValueError(f"unknown controller {name!r}; choose one of {sorted(kinds)}")
    return kinds[name](num_nodes=num_nodes, **kwargs)


__all__ = ["Controller", "LSTMController", "RandomController", "Sample", "build_controller"]
