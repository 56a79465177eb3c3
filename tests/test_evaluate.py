import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as photos
from skimage.metrics import structural_similarity
from torch import nn

from conftest import (
    SHARED,
    make_cfg,
    make_set,
    needs_datasets,
    quiet,
    srcnn_checkpoint,
    write_image,
)
from nas_sr.archs.baselines import SRCNN
from nas_sr.archs.complexity import count_params, lq_size, mult_adds
from nas_sr.data.images import ImageError, to_tensor
from nas_sr.data.sources import benchmark_sources
from nas_sr.deploy import scoring
from nas_sr.deploy.predictor import ModelError, amp_and_runtime, load_predictor, super_resolve
from nas_sr.device import native_bf16
from nas_sr.errors import ConfigError
from nas_sr.jobs import evaluate
from nas_sr.metrics import psnr_y, quantize, ssim_y
from nas_sr.options import check_options

# the datasets README's figures for PIL bicubic upsampling of the given LR images
REFERENCE = {("Set5", 2): 33.67, ("Set14", 2): 30.33, ("Set5", 3): 30.40,
             ("Set14", 3): 27.63, ("Set5", 4): 28.43, ("Set14", 4): 26.09}
TOLERANCE = {"Set5": 0.02, "Set14": 0.05}


@needs_datasets
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_reproduces_reference_figures(tmp_path, scale):
    cfg = make_cfg("evaluate", "model=bicubic", f"benchmark_root={SHARED / 'benchmark'}",
                   f"scale={scale}")
    results = evaluate.run(cfg, tmp_path)
    for name in ("Set5", "Set14"):
        assert results["sets"][name]["psnr"] == pytest.approx(REFERENCE[name, scale],
                                                              abs=TOLERANCE[name])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [i["image"] for i in saved["sets"]["Set5"]["images"]] == [
        f"img_00{i}" for i in range(1, 6)]


def test_ssim_identity_and_perturbation_match_skimage():
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(rng.integers(0, 256, (3, 40, 50))).double()
    assert ssim_y(gt, gt, shave=2) == pytest.approx(1.0)
    sr = (gt + torch.from_numpy(rng.normal(0, 8, gt.shape))).clamp(0, 255).round()
    # the same figure computed directly: BT.601 Y, 2 px shaved, MATLAB's Gaussian window
    y = [16 + np.tensordot([65.481, 128.553, 24.966], t.numpy(), axes=1)[2:-2, 2:-2] / 255
         for t in (sr, gt)]
    expected = structural_similarity(*y, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim_y(sr, gt, shave=2) == pytest.approx(expected, abs=1e-12)
    assert 0.5 < expected < 0.999


class HandCounted(nn.Module):
    """LR-size convs (one functional, like the cell's output conv) and a sub-pixel x2."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)                             # 3*4*9 = 108
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)  # 4*9 = 36
        self.weight = nn.Parameter(torch.zeros(12, 4, 1, 1))                  # 12*4 = 48

    def forward(self, x):
        return F.pixel_shuffle(F.conv2d(self.depthwise(self.conv(x)), self.weight), 2)


def test_mult_adds_are_exact_for_hand_counted_models():
    assert mult_adds(HandCounted(), scale=2) == (108 + 36 + 48) * 640 * 360
    # SRCNN upsamples first, so its convs run at 1280x720
    per_pixel = 3 * 64 * 9 * 9 + 64 * 32 * 5 * 5 + 32 * 3 * 5 * 5
    assert mult_adds(SRCNN(2), scale=2) == per_pixel * 1280 * 720 == 63_730_483_200
    assert count_params(SRCNN(2)) == per_pixel + 64 + 32 + 3
    assert lq_size(3) == (240, 427)


def test_checkpoint_evaluation_table_json_and_tiling(tmp_path, capsys):
    root = make_set(tmp_path / "bench")
    ckpt = srcnn_checkpoint(tmp_path / "srcnn.pt", 2)
    base = ["evaluate", f"model={ckpt}", f"benchmark_root={root}", "sets=[Tiny]"]
    for sub in ("whole", "tiled"):
        (tmp_path / sub).mkdir()
    whole = evaluate.run(make_cfg(*base), tmp_path / "whole")
    assert "| Tiny | x2 |" in capsys.readouterr().out
    assert whole["params"] == count_params(SRCNN(2))
    assert whole["mult_adds"] == mult_adds(SRCNN(2), scale=2)
    assert json.loads((tmp_path / "whole" / "results.json").read_text()) == whole
    images = whole["sets"]["Tiny"]["images"]
    assert [i["image"] for i in images] == ["img_0", "img_1"]
    assert whole["sets"]["Tiny"]["psnr"] == pytest.approx(np.mean([i["psnr"] for i in images]))
    tiled = evaluate.run(make_cfg(*base, "tile=16", "overlap=8"), tmp_path / "tiled")
    # an SRCNN output pixel sees 6 LR pixels around it (bicubic's 2, then 8 HR pixels of
    # convs), inside the 8-pixel overlap: the tiles give the whole image's output, up to
    # float rounding at an 8-bit boundary
    for a, b in zip(tiled["sets"]["Tiny"]["images"], images, strict=True):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-3)


def test_amp_runs_the_shipped_model_in_bf16_close_to_fp32_on_a_real_photo():
    shipped = Path(__file__).resolve().parents[1] / "nas_sr/models" / "searched_x2" / "model.pt2"
    cpu = torch.device("cpu")
    assert amp_and_runtime(True, "auto", cpu) == (True, "eager")  # bf16 is torch's
    assert amp_and_runtime(False, "auto", cpu) == (False, "auto")
    assert amp_and_runtime("auto", "onnx", cpu) == (False, "onnx")  # an explicit runtime stays
    assert amp_and_runtime("auto", "auto", cpu) == (native_bf16(cpu), "eager" if
                                                    native_bf16(cpu) else "auto")
    predictor = load_predictor(str(shipped), 2, cpu, runtime="eager")
    dtypes = []
    conv = next(m for m in predictor.net.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    lq = to_tensor(photos.astronaut()[::4, ::4])[None]
    fp32, bf16 = (quantize(super_resolve(predictor, lq, amp=amp)) for amp in (False, True))
    assert dtypes == [torch.float32, torch.bfloat16]
    assert not torch.equal(fp32, bf16)  # not 8-bit exact: why it is not the default
    assert float(psnr_y(bf16, fp32, 2)) > 45  # but within rounding of the fp32 output
    with pytest.raises(ValueError, match="amp=true is torch's bf16 autocast"):
        check_options("evaluate", make_cfg("evaluate", "amp=true", "runtime=onnx"))


def test_layout_errors_name_the_problem(tmp_path):
    root = make_set(tmp_path / "bench")

    def run(*overrides):
        return evaluate.run(make_cfg("evaluate", f"benchmark_root={root}", "sets=[Tiny]",
                                     *overrides), tmp_path)

    with pytest.raises(FileNotFoundError, match="Nope: no such benchmark set.*holds: Tiny"):
        run("sets=[Nope]")
    with pytest.raises(FileNotFoundError, match="X3: missing.*has: X2"):
        run("scale=3")
    x3 = srcnn_checkpoint(tmp_path / "x3.pt", 3)
    with pytest.raises(ModelError, match="wrong scale"):
        run(f"model={x3}", "scale=2")
    with pytest.raises(FileNotFoundError, match="X3: missing"):  # no scale=: the model's own
        run(f"model={x3}")
    write_image(root / "Tiny" / "X2" / "HR" / "img_9.png")
    with pytest.raises(ImageError, match="do not pair up.*only in HR: img_9"):
        run()
    lq = write_image(root / "Tiny" / "X2" / "LR" / "img_9.png", (10, 10))
    with pytest.raises(ImageError, match=str(lq)):
        run()
    # a pair too small for SSIM's window once the border is shaved: named, not traced
    write_image(root / "Tiny" / "X2" / "HR" / "img_9.png", (14, 20))
    write_image(root / "Tiny" / "X2" / "LR" / "img_9.png", (7, 10))
    with pytest.raises(ImageError, match=r"img_9.png: 20x14 is too small to score: SSIM needs "
                                         r"11x11 pixels once the 2-pixel border"):
        run()
    # two HR images of one name: which one pairs with the LR image is not guessed
    write_image(root / "Tiny" / "X2" / "HR" / "img_9.jpg", (14, 20))
    with pytest.raises(ImageError, match=r"HR: img_9.jpg and img_9.png share a name"):
        run()
    with pytest.raises(ConfigError, match=r"sets=\[\] names no benchmark set"):
        run("sets=[]")
    with pytest.raises(FileNotFoundError, match=r"benchmark_root=.*bench.txt is a file"):
        (tmp_path / "bench.txt").write_text("")
        evaluate.run(make_cfg("evaluate", f"benchmark_root={tmp_path / 'bench.txt'}",
                              "sets=[Tiny]"), tmp_path)


def test_a_missing_benchmark_root_is_told_apart_from_one_without_sets(tmp_path, monkeypatch):
    """The default root is relative: run outside the repository it does not exist."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^benchmark_root=../shared/datasets/benchmark "
                                                rf"does not exist \(relative to "
                                                rf"{re.escape(str(tmp_path))}\); "
                                                r"pass benchmark_root=DIR"):
        benchmark_sources(Path("../shared/datasets/benchmark"), "Set5", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"Set5: no such benchmark set \(.*empty has no "
                                                r"sets\); check sets= and benchmark_root="):
        benchmark_sources(tmp_path / "empty", "Set5", 2)


def test_a_damaged_image_in_a_later_set_fails_before_any_set_is_scored(tmp_path, monkeypatch):
    root = make_set(make_set(tmp_path / "bench"), name="Later")
    damaged = root / "Later" / "X2" / "HR" / "img_1.png"
    damaged.write_bytes(damaged.read_bytes()[:100])  # a copy cut short

    def scored(*args, **kwargs):
        raise AssertionError("an image was super-resolved before the damaged one was found")
    monkeypatch.setattr(scoring, "super_resolve", scored)
    with pytest.raises(ImageError, match=str(damaged)):
        evaluate.run(make_cfg("evaluate", f"benchmark_root={root}", "sets=[Tiny,Later]",
                              *quiet("evaluate")), tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_cli_prints_table_and_exits_cleanly_on_user_errors(tmp_path, cli, capsys):
    root = make_set(tmp_path / "bench")
    args = ["evaluate", "model=bicubic", f"benchmark_root={root}", *quiet("evaluate")]
    # a bare set name (no brackets) is one set, not the letters T, i, n, y
    assert cli(*args, "sets=Tiny", f"hydra.run.dir={tmp_path / 'run'}") is None
    assert "| Tiny | x2 |" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert list(saved["sets"]) == ["Tiny"]
    error = cli(*args, "sets=[Set7]", f"hydra.run.dir={tmp_path / 'bad'}")
    assert error.startswith("nas-sr evaluate: error:") and "Set7: no such benchmark set" in error
