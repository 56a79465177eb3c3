"""Named op classes: readable parameter names, the same numbers, and old files still load.

Before, each op was an anonymous ``nn.Sequential(ReLU, conv[, conv])`` and a cell's ops
sat in ``Cell.edges``: ``cells.0.edges.1.0.conv_3x3.1.weight`` is now
``cells.0.node_ops.1.0.conv_3x3.conv.weight``.
"""

import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from controllers import RandomController
from nas_sr.archs.build import build_model, load_model
from nas_sr.checkpoint import save_atomic
from nas_sr.train.trainer import init_from
from search_spaces.cell import current_name
from search_spaces.genotypes import Genotype, Node
from search_spaces.network import CellSRNet
from search_spaces.operations import REGISTRY

CELL_X2 = Path(__file__).resolve().parents[1] / "nas_sr" / "models" / "cell_x2" / "model.pt2"
# the registry as it was, word for word
SEQUENTIAL_OPS = {
    "conv_3x3": lambda c: nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)),
    "sep_conv_3x3": lambda c: nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
        nn.Conv2d(c, c, 1),
    ),
    "dil_conv_3x3": lambda c: nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=3, dilation=3)),
    "identity": lambda c: nn.Identity(),
}
EVERY_OP = Genotype((Node(0, "conv_3x3", 1, "sep_conv_3x3"), Node(2, "dil_conv_3x3", 1, "identity"),
                     Node(2, "sep_conv_3x3", 3, "conv_3x3")))


def old_style(monkeypatch, build):
    """What ``build()`` made before the change: built with the Sequential ops, its state dict
    under the old names (``edges``, Sequential indices)."""
    with monkeypatch.context() as m:
        for name, build_op in SEQUENTIAL_OPS.items():  # the registry cells build their ops from
            m.setitem(REGISTRY, name, replace(REGISTRY[name], build=build_op))
        model = build()
    state = {k.replace(".node_ops.", ".edges."): v for k, v in model.state_dict().items()}
    return model, state


@pytest.mark.parametrize("genotype", [None, EVERY_OP], ids=["supernet", "standalone"])
def test_a_seed_gives_the_same_weights_in_the_same_order(monkeypatch, genotype):
    def build():
        torch.manual_seed(3)
        return CellSRNet(2, channels=6, num_cells=2, num_nodes=3, genotype=genotype)

    old, old_state = old_style(monkeypatch, build)
    new = build()
    assert [current_name(k) for k in old_state] == list(new.state_dict())
    for a, b in zip(old.parameters(), new.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(".sep_conv_3x3.pointwise.bias" in k for k in new.state_dict())


def test_an_old_supernet_state_loads_with_the_same_outputs(monkeypatch):
    torch.manual_seed(0)
    old, state = old_style(monkeypatch, lambda: CellSRNet(2, channels=6, num_cells=2,
                                                          num_nodes=5).eval())
    new = CellSRNet(2, channels=6, num_cells=2, num_nodes=5).eval()
    new.load_state_dict(state)  # strict: every name found its place
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 9, 10)
    with torch.no_grad():
        for g in (RandomController(5).sample(rng).genotype for _ in range(6)):
            assert torch.equal(new(x, g), old(x, g))


@pytest.mark.parametrize("lightening", [{}, {"prune": {"criterion": "std", "k": 0.5}},
                                        {"separable": {"fit": False, "keep_ends": True}}],
                         ids=["plain", "pruned", "separable"])
def test_an_old_retrain_checkpoint_loads_and_starts_a_run(monkeypatch, tmp_path, lightening):
    arch = {"name": "cell", "scale": 2, "channels": 6, "cells": 2, "nodes": 3,
            "genotype": EVERY_OP.to_dict(), **lightening}
    torch.manual_seed(0)
    old, state = old_style(monkeypatch, lambda: build_model(arch).eval())
    assert any(".edges." in k and k.endswith((".1.weight", ".1.weight_orig")) for k in state)
    save_atomic({"arch": arch, "model": state, "epoch": 3}, tmp_path / "best.pt")
    model, _ = load_model(tmp_path / "best.pt")
    x = torch.rand(1, 3, 8, 9)
    with torch.no_grad():
        assert torch.equal(model(x), old(x))
    fresh = build_model(arch).eval()
    assert init_from(fresh, tmp_path / "best.pt") == []  # every tensor found by name...
    with torch.no_grad():
        assert torch.equal(fresh(x), old(x))  # ...and in its place: a run starts from it


def test_the_cell_x2_export_holds_old_names_and_still_evaluates():
    from nas_sr.deploy.predictor import load_predictor

    with zipfile.ZipFile(CELL_X2) as archive:
        assert b"cells.0.edges.0.0.sep_conv_3x3.1.weight" in archive.read(
            "model/data/weights/model_weights_config.json")
    predictor = load_predictor(str(CELL_X2), 2)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert (predictor.model(x) - torch.export.load(CELL_X2).module()(x)).abs().max() < 1e-5
