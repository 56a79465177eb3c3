"""Search controllers: the ENAS LSTM policy, regularized evolution, a predictor-guided
search and the random-search baseline."""

from controllers.base import Controller, Sample
from controllers.evolution import EvolutionController
from controllers.lstm import LSTMController
from controllers.predictor import PredictorController
from controllers.uniform import RandomController

KINDS = {"enas": LSTMController, "random": RandomController, "evolution": EvolutionController,
         "predictor": PredictorController}


def build_controller(name: str, num_nodes: int, **kwargs) -> Controller:
    """Build a controller by config name (:data:`KINDS`); ``ops=`` names the space's ops
    (the default space's if not given)."""
    if name not in KINDS:
        raise ValueError(f"unknown controller {name!r}; choose one of {sorted(KINDS)}")
    return KINDS[name](num_nodes=num_nodes, **kwargs)


__all__ = ["KINDS", "Controller", "EvolutionController", "LSTMController",
           "PredictorController", "RandomController", "Sample", "build_controller"]
