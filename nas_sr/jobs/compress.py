"""The compress job: a trained model made lighter, then fine-tuned, in rounds.

``method=prune`` masks conv weights with ``torch.nn.utils.prune``: the per-filter
threshold of Bae et al. ("A Novel Lightweight Deep Network for Super Resolution using a
Weight Pruning Method") (``criterion=std``: ``|w| < k * std`` of the filter), global magnitude
(``criterion=magnitude``), or whole output channels (``criterion=channels``, the one that
shrinks Mult-Adds and CPU time: unstructured zeros are still multiplied by dense kernels).
``method=separable`` (Kim, Kang and Lee, "Lightweighting of Super-Resolution Model Using
Depth-Wise Separable Convolution") replaces every k x k conv (k > 1) by a depthwise k x k
and a pointwise 1x1, fitted to the trained weights or from scratch.

Each round is: lighten the model, write ``round_K/start.pt``, fine-tune it with retrain's
recipe (``train.*``, ``data=``, ``preset=``) in ``round_K/`` (a retrain run folder; masks held),
and go on from its best checkpoint. ``compressed.pt`` is the last round's; ``rounds.md`` and
``summary.json`` hold the per-round table.
"""

from __future__ import annotations

import io
import math
import shutil
import zlib
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.utils import prune

from nas_sr.archs import lighten
from nas_sr.archs.build import build_model, load_model
from nas_sr.archs.complexity import complexity, human
from nas_sr.checkpoint import save_atomic, write_json
from nas_sr.deploy.predictor import load_source
from nas_sr.device import memory_format, resolve_device, set_threads
from nas_sr.errors import ConfigError
from nas_sr.options import check_patch
from nas_sr.runs.log import read_metrics
from nas_sr.train import trainer
from nas_sr.train.distributed import Dist

RESULT = "compressed.pt"


def check_source(cfg: DictConfig, arch: dict[str, Any]) -> None:
    """Refuse what cannot be done to this model before any work, naming the option to change.

    The options alone are checked before the model is read (``nas_sr.options``).
    """
    check_patch(cfg, "train.patch_size", int(arch["scale"]))
    if cfg.method == "separable":
        if arch.get("separable") or arch.get("prune"):
            raise ConfigError(f"{cfg.checkpoint} is already "
                              f"{'separable' if arch.get('separable') else 'pruned'}; "
                              "convert a dense model (and prune after, if at all)")
        if not lighten.separable_candidates(build_model(arch), cfg.separable.keep_ends):
            raise ConfigError(f"{cfg.checkpoint}: no k x k conv (k > 1) to make separable"
                              + (" between the first and the last (separable.keep_ends)"
                                 if cfg.separable.keep_ends else ""))
    elif cfg.prune.criterion == "channels" and arch.get("prune"):
        raise ConfigError(f"{cfg.checkpoint} has weight masks; cut channels first, then "
                          "prune weights")


def lighten_once(model: nn.Module, arch: dict[str, Any], cfg: DictConfig
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """One round's cut or conversion; returns the lighter model and its arch spec."""
    if cfg.method == "separable":
        options = {"fit": bool(cfg.separable.fit), "keep_ends": bool(cfg.separable.keep_ends)}
        lighten.to_separable(model, **options)
        return model, {**arch, "separable": options}
    p = cfg.prune
    if p.criterion == "channels":
        shrink, state = lighten.cut_channels(model, p.amount)
        arch = {**arch, "shrink": {**arch.get("shrink", {}), **shrink}}
        model = build_model(arch)
        model.load_state_dict(state)
        return model, arch
    if p.criterion == "std":
        lighten.prune_std(model, p.k)
    else:
        lighten.prune_magnitude(model, p.amount)
    setting = {"k": p.k} if p.criterion == "std" else {"amount": p.amount}
    rounds = arch.get("prune", {}).get("rounds", 0) + 1
    return model, {**arch, "prune": {"criterion": p.criterion, **setting, "rounds": rounds}}


def measure(model: nn.Module, scale: int) -> dict[str, Any]:
    """Size figures of ``model`` (whose masks this folds: pass a copy you can spare).

    ``file_bytes`` is the weights as torch stores them (dense: masks folded, zeros
    written), ``deflated_bytes`` that file through zlib, and ``bitmask_bytes`` what a
    bitmask-plus-nonzero-values layout of the masked weights would take (an estimate).
    """
    figures: dict[str, Any] = {**complexity(model, scale), **lighten.sparsity(model)}
    masked = [lighten.effective_weight(c) for _, c in lighten.conv_weights(model)
              if prune.is_pruned(c)]
    figures["bitmask_bytes"] = 4 * (figures["params"] - sum(w.numel() for w in masked)) + sum(
        math.ceil(w.numel() / 8) + 4 * int(torch.count_nonzero(w)) for w in masked)
    buffer = io.BytesIO()
    torch.save(lighten.fold_masks(model).state_dict(), buffer)
    figures["file_bytes"] = buffer.tell()
    figures["deflated_bytes"] = len(zlib.compress(buffer.getvalue(), 9))
    return figures


def round_config(cfg: DictConfig, start: Path, scale: int) -> DictConfig:
    """Retrain's config for fine-tuning ``start``: the compress config, pointed at it."""
    round_cfg = OmegaConf.to_container(cfg, resolve=True)
    round_cfg.update(init_from=str(start), scale=scale, resume=None)
    return OmegaConf.create(round_cfg)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| round | params | nonzero params | conv sparsity | Mult-Adds | file | deflated "
             "| bitmask | val PSNR after cut | after fine-tune |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        tuned = "-" if r["val_psnr_tuned"] is None else f"{r['val_psnr_tuned']:.2f}"
        lines.append(
            f"| {r['round']} | {r['params']:,} | {r['nonzero_params']:,} | "
            f"{100 * r['sparsity']:.2f}% | {human(r['mult_adds'])} | "
            f"{human(r['file_bytes'])}B | {human(r['deflated_bytes'])}B | "
            f"{human(r['bitmask_bytes'])}B | {r['val_psnr']:.2f} | {tuned} |")
    return "\n".join(lines)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    source = Path(cfg.checkpoint).expanduser()
    model, arch = load_source(source)
    check_source(cfg, arch)
    scale, device = int(arch["scale"]), resolve_device(cfg.device)
    # the source's PSNR on the fine-tuning's own validation crops: the rounds' reference
    val_sets = trainer.validation_sets(OmegaConf.merge(cfg, {"scale": scale}), Dist())
    fmt = memory_format(cfg.get("channels_last", True))
    val = trainer.validate(model.to(device, memory_format=fmt), val_sets, scale, Dist(), fmt)
    rows = [{"round": 0, **measure(load_source(source)[0], scale), "val_psnr": val,
             "val_psnr_tuned": None}]
    print(f"round 0 ({arch['name']} x{scale}, {source}): val {val:.2f} dB")
    for k in range(1, cfg.rounds + 1):
        model, arch = lighten_once(model.cpu(), arch, cfg)
        folder = run_dir / f"round_{k}"
        start = folder / "start.pt"
        save_atomic({"arch": arch, "model": model.state_dict()}, start)
        if cfg.train.epochs:
            summary = trainer.train(round_config(cfg, start, scale), folder,
                                    lambda spec=arch: spec)
            cut_psnr = read_metrics(folder)[0]["val_psnr"]
            best = folder / trainer.BEST
            result = best if best.is_file() else start
            tuned_psnr = summary["best_val_psnr"] if best.is_file() else None
        else:  # train.epochs=0: the cut alone; a training run of no epochs would log a best
            # PSNR of -inf and name a best.pt it never wrote
            cut_psnr = trainer.validate(model.to(device, memory_format=fmt), val_sets, scale,
                                        Dist(), fmt)
            result, tuned_psnr = start, None
        rows.append({"round": k, **measure(load_model(result)[0], scale), "val_psnr": cut_psnr,
                     "val_psnr_tuned": tuned_psnr})
        model = load_model(result)[0]
        print(table(rows[-1:]).splitlines()[-1])
    shutil.copyfile(result, run_dir / RESULT)
    text = table(rows)
    print(f"\n{text}\n\n{run_dir / RESULT}: {cfg.method} of {source}")
    (run_dir / "rounds.md").write_text(text + "\n")
    summary = {"source": str(source), "method": cfg.method, "arch": arch, "rounds": rows,
               "checkpoint": str(run_dir / RESULT)}
    write_json(run_dir / "summary.json", summary)
    return summary
