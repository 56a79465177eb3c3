"""The re-parameterised cell (search_spaces/fused.py) and where nas-sr runs it."""

import random
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from nas_sr.archs.build import build_model
from nas_sr.archs.complexity import mult_adds
from nas_sr.archs.lighten import prune_magnitude
from nas_sr.checkpoint import save_atomic
from nas_sr.deploy.form import for_inference
from nas_sr.deploy.onnx_model import OnnxModel, export_onnx
from nas_sr.deploy.predictor import load_predictor, super_resolve
from search_spaces.fused import FusedCell, fused
from search_spaces.genotypes import Genotype, load_genotype
from search_spaces.network import CellSRNet
from search_spaces.operations import OP_NAMES

SHIPPED = Path(__file__).resolve().parents[1] / "nas_sr/models" / "searched_x2" / "genotype.json"


def random_genotype(rng: random.Random, nodes: int = 5) -> Genotype:
    return Genotype.from_dict({"nodes": [
        [rng.randrange(j + 2), rng.choice(OP_NAMES), rng.randrange(j + 2), rng.choice(OP_NAMES)]
        for j in range(nodes)]})


def random_net(genotype: Genotype, channels: int = 8, cells: int = 2,
               recursions: int = 1) -> CellSRNet:
    net = CellSRNet(2, channels, cells, genotype.num_nodes, genotype, recursions).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)  # larger than the init, so every op matters in the output
    return net


@pytest.mark.parametrize("concat", [True, False])
def test_the_fused_cell_computes_what_the_searched_cell_computes(concat):
    rng = random.Random(0)
    genotypes = [random_genotype(rng) for _ in range(40)]
    # the cases that need their own rule: identity (no ReLU), two seps on one state, a sep
    # beside a full conv on one state, every node loose but the last
    genotypes += [Genotype.from_dict({"nodes": nodes}) for nodes in (
        [[0, "identity", 1, "identity"], [2, "identity", 0, "conv_3x3"]],
        [[1, "sep_conv_3x3", 1, "sep_conv_3x3"], [2, "sep_conv_3x3", 1, "conv_3x3"]],
        [[0, "dil_conv_3x3", 1, "sep_conv_3x3"], [1, "conv_3x3", 1, "identity"]])]
    x = torch.rand(2, 3, 13, 11, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for g in genotypes:
            net = random_net(g)
            want = net(x)
            got = fused(net, concat)(x)
            assert (got - want).abs().max() <= 1e-5 * want.abs().max(), str(g)


def test_the_shipped_cell_runs_with_fewer_convs_and_mult_adds():
    net = CellSRNet(2, 32, 6, 5, load_genotype(SHIPPED))
    fast = fused(net)
    convs = [sum(isinstance(m, nn.Conv2d) for m in cell.modules())
             for cell in (net.cells[0], fast.cells[0])]
    assert isinstance(fast.cells[0], FusedCell) and convs == [15, 8]
    assert mult_adds(fast, 2) < 0.8 * mult_adds(net, 2)
    assert net.cells[0] is not fast.cells[0] and not isinstance(net.cells[0], FusedCell)


def test_the_supernet_has_nothing_to_fuse():
    supernet = CellSRNet(2, 8, 2, 5)
    with pytest.raises(ValueError, match="supernet"):
        fused(supernet)
    assert for_inference(supernet, {"name": "cell"}) is supernet


def test_a_checkpoint_runs_fused_and_reports_its_trained_form(tmp_path):
    g = random_genotype(random.Random(1))
    arch = {"name": "cell", "scale": 2, "channels": 8, "cells": 2, "genotype": g.to_dict()}
    model = build_model(arch)
    save_atomic({"arch": arch, "model": model.state_dict()}, tmp_path / "cell.pt")
    predictor = load_predictor(str(tmp_path / "cell.pt"), runtime="eager")
    assert isinstance(predictor.eager.cells[0], FusedCell)
    assert predictor.net is predictor.eager
    assert sum(p.numel() for p in predictor.model.parameters()) == \
        sum(p.numel() for p in model.parameters())  # what it reports: the trained model
    lq = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert (super_resolve(predictor, lq) - model(lq)).abs().max() < 1e-5
    srcnn = {"name": "srcnn", "scale": 2}
    save_atomic({"arch": srcnn, "model": build_model(srcnn).state_dict()}, tmp_path / "s.pt")
    assert load_predictor(str(tmp_path / "s.pt")).eager is None  # nothing to fuse


def test_a_pruned_checkpoint_runs_fused_from_its_masked_weights(tmp_path):
    g = random_genotype(random.Random(2))
    arch = {"name": "cell", "scale": 2, "channels": 8, "cells": 2, "genotype": g.to_dict()}
    model = random_net(g)
    prune_magnitude(model, 0.5)
    arch["prune"] = {"method": "magnitude", "amount": 0.5}
    save_atomic({"arch": arch, "model": model.state_dict()}, tmp_path / "pruned.pt")
    # a loaded masked conv's ``weight`` is stale until its first forward: the fused form
    # must be built from weight_orig * weight_mask, not from it
    predictor = load_predictor(str(tmp_path / "pruned.pt"), runtime="eager")
    assert isinstance(predictor.eager.cells[0], FusedCell)
    lq = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert (super_resolve(predictor, lq) - model(lq)).abs().max() < 1e-5


@pytest.mark.parametrize("recursions", [1, 2])
def test_the_onnx_export_of_a_cell_is_fused_and_equal(recursions):
    g = load_genotype(SHIPPED)
    net = random_net(g, recursions=recursions)  # gates drawn non-zero: every pass counts
    arch = {"name": "cell", "scale": 2, "channels": 8, "cells": 2, "genotype": g.to_dict(),
            "recursions": recursions}
    data = export_onnx(net, arch)
    convs = sum(n.op_type == "Conv" for n in onnx.load_from_string(data).graph.node)
    # head and tail, then 11 convs a cell where the cell has 15; a later pass shares its
    # weights and h(k-2) with the first, so the exporter computes the 3 convs reading
    # h(k-2) alone once
    assert convs == 2 + 2 * (11 + (recursions - 1) * 8)
    session = OnnxModel(data, threads=1)
    lq = torch.rand(1, 3, 17, 15, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        assert (session(lq) - net(lq)).abs().max() < 1e-4
