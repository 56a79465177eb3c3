"""4. Inference: output megapixels per second of the exported cell model vs SRCNN and
VDSR built in this harness, on one real image on CPU, with PSNR (Y, shaved) beside.

Trained weights are used where they exist (nas_sr/models/, runs/retrain/baseline_*); a model
without them is timed untrained, and its PSNR is left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.timing import BENCH_CELL, Row, interleaved
from nas_sr.archs.build import build_model
from nas_sr.data.images import downscale, load_image, mod_crop, to_tensor
from nas_sr.data.sources import builtin_dir
from nas_sr.deploy.predictor import load_predictor
from nas_sr.deploy.pt2 import export_model
from nas_sr.metrics import psnr_y, quantize
from search_spaces.genotypes import load_genotype

ROOT = Path(__file__).resolve().parents[1]
SET5_X2 = ROOT.parent / "shared" / "datasets" / "benchmark" / "Set5" / "X2"
TRAINED = {"cell (exported)": ROOT / "nas_sr" / "models" / "cell_x2" / "model.pt2",
           "SRCNN": ROOT / "runs" / "retrain" / "baseline_srcnn" / "best.pt",
           "VDSR": ROOT / "runs" / "retrain" / "baseline_vdsr" / "best.pt"}
FALLBACK_GENOTYPE = ROOT / "nas_sr" / "models" / "cell_x2" / "genotype.json"


def test_image() -> tuple[torch.Tensor, torch.Tensor, str]:
    """(LR, HR) of Set5's first image (baby) x2, or a scikit-image photo without benchmarks."""
    if (SET5_X2 / "HR" / "img_001.png").is_file():
        gt = load_image(SET5_X2 / "HR" / "img_001.png")
        lq = load_image(SET5_X2 / "LR" / "img_001.png")
        name = "Set5 img_001 (baby) x2"
    else:
        gt = mod_crop(load_image(builtin_dir() / "astronaut.png"), 2)
        lq, name = downscale(gt, 2), "scikit-image astronaut x2"
    return (to_tensor(lq)[None], to_tensor(gt)[None],
            f"{name}, {lq.shape[1]}x{lq.shape[0]} LR")


def models() -> dict[str, tuple[torch.nn.Module, bool]]:
    """name -> (model, trained?)"""
    out = {}
    for name, path in TRAINED.items():
        if path.is_file() and path.suffix == ".pt2":
            # the shipped file, trusted: time the program a plain-torch user runs (nas-sr's own
            # loader rebuilds the eager network instead, see nas_sr/deploy/pt2.py)
            out[name] = (torch.export.load(path).module(), True)
            continue
        if path.is_file():
            out[name] = (load_predictor(str(path)).model, True)
            continue
        if name.startswith("cell"):
            arch = dict(BENCH_CELL)
            if FALLBACK_GENOTYPE.is_file():
                arch["genotype"] = load_genotype(FALLBACK_GENOTYPE).to_dict()
            out[name] = (export_model(build_model(arch).eval()).module(), False)
        else:
            key = {"SRCNN": "srcnn", "VDSR": "vdsr"}[name]
            out[name] = (build_model({"name": key, "scale": 2}).eval(), False)
    return out


def run(quick: bool) -> list[Row]:
    lq, gt, image = test_image()
    lq_last = lq.contiguous(memory_format=torch.channels_last)  # what super_resolve feeds
    nets = models()
    for net, _ in nets.values():
        net.to(memory_format=torch.channels_last)
    fns = {k: (lambda m=m: m(lq_last)) for k, (m, _) in nets.items()}
    # before/after of the layout: the exported cell fed NCHW, and an eager cell both ways
    exported = nets["cell (exported)"][0]
    fns["cell (exported), NCHW input"] = lambda: exported(lq)
    eager = build_model(BENCH_CELL).eval()
    last = build_model(BENCH_CELL).eval().to(memory_format=torch.channels_last)
    fns["cell eager, NCHW"] = lambda: eager(lq)
    fns["cell eager, channels_last"] = lambda: last(lq_last)
    with torch.inference_mode():
        times = interleaved(fns, repeats=3 if quick else 10, warmup=1)
        rows = []
        megapixels = gt.shape[-1] * gt.shape[-2] / 1e6
        for name, (net, trained) in nets.items():
            psnr = float(psnr_y(quantize(net(lq_last)), quantize(gt), 2)) if trained else np.nan
            note = f"{image}; " + (f"PSNR {psnr:.2f} dB" if trained else "untrained weights")
            rows.append(Row("inference", name, megapixels / times[name], "MP/s", note))
    trained = "trained" if nets["cell (exported)"][1] else "untrained"
    extra = {"cell (exported), NCHW input": f"{image}; the {trained} exported cell",
             "cell eager, NCHW": f"{image}; untrained C=32 N=6 conv/sep cell",
             "cell eager, channels_last": f"{image}; untrained C=32 N=6 conv/sep cell"}
    rows += [Row("inference", name, megapixels / times[name], "MP/s", note)
             for name, note in extra.items()]
    return rows
