"""Files written by earlier versions keep loading: they hold state dicts and JSON specs,
never module paths, so moving code between modules must not break them."""

from pathlib import Path

import numpy as np
import pytest
import torch

from nas_sr.archs.build import load_model
from nas_sr.archs.luma import as_rgb
from nas_sr.deploy.predictor import load_predictor

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "nas_sr" / "models").glob("*/model.pt2"))
OLD = ROOT / "tests" / "data" / "checkpoint_v0"  # a smoke retrain's, from the flat layout


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
@torch.inference_mode()
def test_each_shipped_model_loads_and_computes_what_its_exported_program_does(path):
    predictor = load_predictor(str(path), runtime="eager", channels_last=False)
    program = torch.export.load(str(path)).module()  # our own file: its graph is the truth
    program = as_rgb(program, predictor.arch)  # a Y-only model's file holds the Y network
    x = torch.rand(1, 3, 20, 17, generator=torch.Generator().manual_seed(0))
    out = predictor.model(x)
    assert out.shape == (1, 3, 20 * predictor.scale, 17 * predictor.scale)
    torch.testing.assert_close(out, program(x), atol=1e-5, rtol=0)


@torch.inference_mode()
def test_a_checkpoint_written_before_the_move_gives_the_output_it_gave_then():
    model, state = load_model(OLD / "best.pt")
    x = torch.from_numpy(np.load(OLD / "input.npy"))
    np.testing.assert_allclose(model(x).numpy(), np.load(OLD / "output.npy"), atol=1e-6)
    predictor = load_predictor(str(OLD / "best.pt"), runtime="eager", channels_last=False)
    assert predictor.scale == state["arch"]["scale"] == 2
