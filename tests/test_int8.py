"""int8 inference: a quantized model close to fp32 on a real image, run by runtime=auto only
where its export check verified it."""

import json

import numpy as np
import pytest
import torch

from conftest import make_cfg
from nas_sr.data.images import downscale, load_image, mod_crop, to_tensor
from nas_sr.data.sources import builtin_dir
from nas_sr.deploy.onnx_model import OnnxModel, read_onnx, with_metadata
from nas_sr.deploy.predictor import load_predictor
from nas_sr.deploy.quantize import INT8_FILE, int8_check
from nas_sr.errors import ConfigError
from nas_sr.jobs import export
from nas_sr.metrics import quantize
from nas_sr.options import check_options


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained x2 model (the shipped cell_x2) exported with format=[pt2, onnx, int8]."""
    root = tmp_path_factory.mktemp("int8")
    export.run(make_cfg("export", "checkpoint=nas_sr/models/cell_x2/model.pt2",
                        "format=[pt2,onnx,int8]", f"output={root / 'model'}"), root / "run")
    return root / "model"


def test_int8_output_is_within_a_few_levels_of_fp32_on_a_real_image(exported):
    fp32, _, _ = read_onnx(exported / "model.onnx")
    int8, _, facts = read_onnx(exported / INT8_FILE)
    check = int8_check(OnnxModel(fp32), OnnxModel(int8), 2)
    assert facts["int8_check"] == json.loads(json.dumps(check))  # what export recorded
    lq = to_tensor(downscale(mod_crop(load_image(builtin_dir() / "astronaut.png"), 2), 2))
    with torch.inference_mode():
        gap = (quantize(OnnxModel(int8)(lq[None])) - quantize(OnnxModel(fp32)(lq[None]))).abs()
    assert float((gap > 3).float().mean()) < 0.01  # 99% of values within 3 levels
    assert float(gap.mean()) < 1.0 and 0 < check["psnr_loss"] < 0.5


def test_auto_runs_int8_only_with_a_verified_check_and_int8_always(exported, tmp_path):
    data, arch, facts = read_onnx(exported / INT8_FILE)
    for verified in (True, False):
        folder = tmp_path / str(verified)
        folder.mkdir()
        for name in ("model.pt2", "model.onnx"):
            (folder / name).write_bytes((exported / name).read_bytes())
        check = {**facts["int8_check"], "verified": verified}
        (folder / INT8_FILE).write_bytes(with_metadata(data, {"int8_check": check}))
        auto = load_predictor(str(folder / "model.pt2"), runtime="auto")
        assert auto.runtime == ("int8" if verified else "onnx")
        assert load_predictor(str(folder / "model.pt2"), runtime="int8").runtime == "int8"
        with torch.inference_mode():
            x = torch.rand(1, 3, 20, 24)
            assert np.isfinite(auto.net(x).numpy()).all()


def test_runtime_int8_without_an_int8_file_says_how_to_make_one(exported):
    with pytest.raises(ConfigError, match=r"format=\[pt2,onnx,int8\]"):
        load_predictor("nas_sr/models/searched_x2/model.pt2", runtime="int8")


def test_int8_needs_onnx_in_the_formats():
    with pytest.raises(ConfigError, match="int8 quantizes model.onnx; add onnx"):
        check_options("export", make_cfg("export", "checkpoint=x.pt", "format=[pt2,int8]"))
