"""Every registered op, the wider space's included: priced in closed form as it is built,
fused into the same function, exported to ONNX with the same outputs."""

import json

import pytest
import torch

from nas_sr.archs.complexity import mult_adds
from nas_sr.deploy.onnx_model import OnnxModel, export_onnx
from search_spaces.cost import genotype_cost
from search_spaces.fused import fused
from search_spaces.genotypes import Genotype, GenotypeError, Node
from search_spaces.network import CellSRNet, count_params
from search_spaces.operations import OP_NAMES, REGISTRY


def random_cell(nodes: int, seed: int) -> Genotype:
    """Inputs and ops drawn uniformly over the whole registry."""
    rng = torch.Generator().manual_seed(seed)
    names = list(REGISTRY)

    def pick(n: int) -> int:
        return int(torch.randint(n, (1,), generator=rng))

    return Genotype(tuple(Node(pick(j + 2), names[pick(len(names))], pick(j + 2),
                               names[pick(len(names))]) for j in range(nodes)))


def every_op_cell(op: str) -> Genotype:
    """A 3-node cell with ``op`` in four slots, some on the cell's inputs, some on nodes."""
    return Genotype((Node(0, op, 1, "identity"), Node(2, op, 1, "conv_3x3"),
                     Node(3, op, 2, op)))


@pytest.mark.parametrize("op", list(REGISTRY))
@pytest.mark.parametrize("scale", [2, 3])
def test_each_ops_closed_form_cost_equals_its_built_network(op, scale):
    g = every_op_cell(op)
    net = CellSRNet(scale, 16, 2, 3, g)
    assert genotype_cost(g, 16, 2, scale) == {"params": count_params(net),
                                              "mult_adds": mult_adds(net, scale)}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("concat", [True, False])
def test_a_cell_of_any_ops_fuses_into_the_same_function(seed, concat):
    torch.manual_seed(seed)
    net = CellSRNet(2, 12, 2, 5, random_cell(5, seed)).eval()
    for p in net.parameters():  # trained-like weights, not the init's near-zero biases
        p.data.normal_(0, 0.2)
    x = torch.rand(2, 3, 13, 11)
    with torch.no_grad():
        torch.testing.assert_close(fused(net, concat)(x), net(x), atol=2e-5, rtol=1e-4)


def test_a_wide_genotype_round_trips_through_json_and_exports_to_onnx_as_it_runs():
    g = Genotype((Node(0, "esa", 1, "conv_5x5"), Node(2, "sep_conv_5x5", 0, "conv_1x1"),
                  Node(3, "channel_attention", 2, "dil_conv_3x3_r2"),
                  Node(1, "pixel_attention", 4, "identity")))
    assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    torch.manual_seed(0)
    net = CellSRNet(2, 8, 2, 4, g).eval()
    arch = {"name": "cell", "scale": 2, "channels": 8, "cells": 2, "genotype": g.to_dict()}
    onnx = OnnxModel(export_onnx(net, arch))
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(onnx(x), net(x), atol=1e-4, rtol=1e-4)


def test_the_controller_refuses_a_cell_of_ops_outside_its_space():
    assert set(OP_NAMES) < set(REGISTRY)
    with pytest.raises(GenotypeError, match="not among the space's"):
        every_op_cell("esa").to_decisions()


class ToyGate(torch.nn.Module):
    """A made-up op: the input gated by a 1x1 conv of itself."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


@pytest.mark.slow
def test_an_op_registered_in_one_place_runs_through_search_retrain_export_and_plot(
        tmp_path, monkeypatch):
    from conftest import make_cfg
    from nas_sr.cli import run_job
    from nas_sr.jobs import export
    from search_spaces.operations import Op, opaque_terms

    toy = Op("toy_gate", ToyGate, lambda c, h, w: (c * c + c, c * c * h * w), opaque_terms,
             "tab:cyan", "toy")
    monkeypatch.setitem(REGISTRY, "toy_gate", toy)
    search = run_job("search", make_cfg("search", "space.ops=[conv_3x3,toy_gate]",
                                        "logger.plots=true"), tmp_path / "search")
    assert (tmp_path / "search" / "plots" / "best_cell.png").is_file()
    scored = json.loads((tmp_path / "search" / "pareto.json").read_text())["cells"]
    assert any("toy_gate" in json.dumps(c["genotype"]) for c in scored) and search["params"]
    cell = Genotype((Node(0, "toy_gate", 1, "conv_3x3"), Node(2, "toy_gate", 1, "identity")))
    (tmp_path / "cell.json").write_text(json.dumps(cell.to_dict()))
    trained = run_job("retrain", make_cfg("retrain", f"genotype={tmp_path / 'cell.json'}"),
                      tmp_path / "retrain")
    assert trained["params"] == genotype_cost(cell, 8, 2, 2)["params"]
    result = export.run(make_cfg("export", f"checkpoint={tmp_path / 'retrain' / 'best.pt'}",
                                 f"output={tmp_path / 'model'}"), tmp_path / "export")
    assert result["onnx"]["agrees"]  # ONNX Runtime (fused, the toy run as it is) = eager
