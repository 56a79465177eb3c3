"""What a Y-only score leaves out: PSNR on Y and on the chroma planes (Cb, Cr) together.

    python -m bench.colour [LABEL=]MODEL ... [--sets Set5 Set14] [--scale 2]
        [--root ../shared/datasets/benchmark] [--holdout ../shared/datasets/train]

The benchmarks score Y alone, so a model trained with more of its loss on Y
(``train.luma``) can gain there and lose colour unseen; this prints both, per set, for
each model (``bicubic``, a ``model.pt2`` or a retrain checkpoint), run eagerly in fp32.
``--holdout DIR`` adds retraining's hold-out images of that training folder (the split
of ``data=folder``), to weigh a candidate without reading a benchmark; ``--sets`` with no
name leaves the benchmarks out. It measures; it steers nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_module

from nas_sr.data.pairs import ImageSource
from nas_sr.data.sources import benchmark_sources, resolve_sources
from nas_sr.deploy.predictor import load_predictor
from nas_sr.deploy.scoring import restore
from nas_sr.metrics import mean, psnr_cbcr, psnr_y

DEFAULT_ROOT = Path("../shared/datasets/benchmark")  # as evaluate's benchmark_root, from the root


def scores(model: str, sets: dict[str, list[ImageSource]], scale: int
           ) -> dict[str, tuple[float, float]]:
    """``{set: (PSNR on Y, PSNR on Cb and Cr)}``, each the mean over the set's images."""
    predictor = load_predictor(model, scale)
    out = {}
    for name, sources in sets.items():
        y, c = [], []
        for source in sources:
            sr, gt_t = restore(predictor, source)
            y.append(float(psnr_y(sr, gt_t, scale)))
            c.append(float(psnr_cbcr(sr, gt_t, scale)))
        out[name] = (mean(y), mean(c))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="[LABEL=]bicubic|MODEL.pt2|CHECKPOINT.pt")
    parser.add_argument("--sets", nargs="*", default=["Set5", "Set14"])
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--holdout", type=Path, help="a training folder: its hold-out images")
    args = parser.parse_args()
    sets = {name: benchmark_sources(args.root, name, args.scale) for name in args.sets}
    if args.holdout:
        with initialize_config_module("experiments", version_base="1.3"):
            cfg = compose("retrain", ["data=folder", f"data.train_dir={args.holdout}"])
        sets["hold-out"] = resolve_sources(cfg.data, args.scale).holdout
    print(f"| model | {' | '.join(f'{s} Y | {s} CbCr' for s in sets)} |")
    print(f"| --- |{' ---: | ---: |' * len(sets)}")
    for spec in args.models:
        label, _, model = spec.rpartition("=")
        result = scores(model, sets, args.scale)
        cells = " | ".join(f"{y:.2f} | {c:.2f}" for y, c in result.values())
        print(f"| {label or model} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
