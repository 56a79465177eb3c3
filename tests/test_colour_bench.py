"""bench.colour scores Y exactly as the evaluate job does, and the chroma planes beside it."""
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from bench.colour import main, scores
from conftest import make_cfg, make_set, srcnn_checkpoint
from nas_sr.data.sources import benchmark_sources, resolve_sources
from nas_sr.jobs import evaluate
from nas_sr.metrics import psnr_cbcr


@pytest.mark.parametrize("model", ["bicubic", "srcnn"])
def test_colour_bench_y_matches_evaluate_and_adds_chroma(tmp_path, model):
    root = make_set(make_set(tmp_path / "bench", "A"), "B", count=3)
    spec = str(srcnn_checkpoint(tmp_path / "srcnn.pt", 2)) if model == "srcnn" else model
    got = scores(spec, {name: benchmark_sources(root, name, 2) for name in "AB"}, 2)
    cfg = make_cfg("evaluate", f"model={spec}", f"benchmark_root={root}", "sets=[A,B]",
                   "scale=2", "runtime=eager")
    (tmp_path / "eval").mkdir()
    expected = evaluate.run(cfg, tmp_path / "eval")["sets"]
    for name in ("A", "B"):
        y, chroma = got[name]
        assert y == pytest.approx(expected[name]["psnr"], abs=1e-6)
        assert 10 < chroma < 100 and chroma != pytest.approx(y, abs=0.01)
        if model == "bicubic":  # chroma by hand: PIL's bicubic x2 of each LR image
            by_hand = []
            for source in benchmark_sources(root, name, 2):
                lq = Image.open(source.lq)
                sr = np.array(lq.resize((lq.width * 2, lq.height * 2), Image.BICUBIC))
                gt = np.array(Image.open(source.gt))
                by_hand.append(float(psnr_cbcr(*(torch.from_numpy(a).permute(2, 0, 1).double()
                                                   for a in (sr, gt)), 2)))
            assert chroma == pytest.approx(np.mean(by_hand), abs=1e-6)


def test_colour_bench_scores_the_retraining_hold_out_of_a_folder(tmp_path, image_folder,
                                                                 monkeypatch, capsys):
    model = srcnn_checkpoint(tmp_path / "srcnn.pt", 2)
    monkeypatch.setattr(sys, "argv", ["colour", f"net={model}", "--sets", "--holdout",
                                      str(image_folder)])
    main()
    header, _, row = capsys.readouterr().out.strip().splitlines()
    assert header == "| model | hold-out Y | hold-out CbCr |"
    cfg = make_cfg("retrain", "data=folder", f"data.train_dir={image_folder}")
    holdout = resolve_sources(cfg.data, 2).holdout
    expected = scores(str(model), {"hold-out": holdout}, 2)["hold-out"]
    assert row == f"| net | {expected[0]:.2f} | {expected[1]:.2f} |"
