import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils import prune

from conftest import make_cfg, make_set, write_image
from nas_sr.archs import lighten
from nas_sr.archs.baselines import MSRN, SRCNN
from nas_sr.archs.build import build_model, load_model
from nas_sr.archs.complexity import human, mult_adds
from nas_sr.checkpoint import save_atomic
from nas_sr.cli import run_job
from nas_sr.deploy.predictor import load_predictor
from nas_sr.errors import ConfigError
from nas_sr.jobs import compress, evaluate, export, upscale
from search_spaces.network import count_params

SRCNN_PARAMS = count_params(SRCNN(2))  # 9-5-5, 64-32 filters: hand-counted below
CELL = {"name": "cell", "scale": 2, "channels": 8, "cells": 2,
        "genotype": {"nodes": [[0, "conv_3x3", 1, "sep_conv_3x3"],
                               [2, "dil_conv_3x3", 1, "identity"]]}}
PLAIN_TORCH = """
import sys
sys.modules["nas_sr"] = None  # the exported file must stand alone
import torch
model = torch.export.load(sys.argv[1]).module()
with torch.no_grad():
    torch.save(model(torch.load(sys.argv[2])), sys.argv[3])
"""


def checkpoint(path, arch, seed=0):
    torch.manual_seed(seed)
    save_atomic({"arch": arch, "model": build_model(arch).state_dict()}, path)
    return path


def compress_cfg(folder, source, *overrides):
    """The smoke preset on the image_folder fixture (5 train images, 1 for validation)."""
    return make_cfg("compress", "data=folder", f"data.train_dir={folder}",
                    f"checkpoint={source}", *overrides)


# --- weight masks (Bae et al.) --------------------------------------------------------------------
def test_std_threshold_prunes_exactly_the_weights_below_k_filter_stds():
    conv = nn.Conv2d(1, 2, (1, 6), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([
            # mean 0, std sqrt(30.58 / 6) = 2.258 (divided by n; by n - 1 it would be 2.473
            # and 2.3 would go)
            [3.0, -3.0, 1.0, -1.0, 2.3, -2.3],
            # 100x smaller: its own std, 0.0184, keeps +-0.03 (a global cut would take all)
            [0.03, -0.03, 0.01, -0.01, 0.005, 0.0]]).view(2, 1, 1, 6))
    lighten.PerFilterStd.apply(conv, "weight", k=1.0)
    assert conv.weight_mask.view(2, 6).tolist() == [[1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 0, 0]]
    # fine-tuning moved weights: 2.3 -> 2.2, and a pruned one's stored value to 10 (masked)
    with torch.no_grad():
        conv.weight_orig[0, 0, 0, 4:] = torch.tensor([2.2, -2.2])
        conv.weight_orig[0, 0, 0, 2] = 10.0
    # round 2: the filter as it stands, zeros included: [3, -3, 0, 0, 2.2, -2.2] has std
    # sqrt(27.68 / 6) = 2.148, so 2.2 stays (over the 4 survivors alone it would be 2.63)
    lighten.PerFilterStd.apply(conv, "weight", k=1.0)
    assert conv.weight_mask.view(2, 6).tolist() == [[1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 0, 0]]
    lighten.PerFilterStd.apply(conv, "weight", k=1.1)  # 2.2 < 1.1 * 2.148 = 2.363
    assert conv.weight.view(2, 6)[0].tolist() == [3.0, -3.0, 0, 0, 0, 0]


def test_masks_hold_pruned_weights_at_zero_through_a_step_and_a_save_load(tmp_path):
    arch = {"name": "srcnn", "scale": 2}
    torch.manual_seed(0)
    model = build_model(arch)
    lighten.prune_std(model, k=1.0)
    masks = {n: c.weight_mask.clone() for n, c in lighten.conv_weights(model)}
    before = {n: lighten.effective_weight(c).detach().clone()
              for n, c in lighten.conv_weights(model)}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        loss = F.l1_loss(model(torch.rand(2, 3, 12, 12)), torch.rand(2, 3, 24, 24))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, conv in lighten.conv_weights(model):
        weight, pruned = lighten.effective_weight(conv), masks[name] == 0
        assert pruned.float().mean() > 0.3  # there is something to hold
        assert torch.all(weight[pruned] == 0), name
        assert not torch.equal(weight[~pruned], before[name][~pruned])  # the step did act
    save_atomic({"arch": {**arch, "prune": {"criterion": "std", "k": 1.0, "rounds": 1}},
                 "model": model.state_dict()}, tmp_path / "pruned.pt")
    loaded, _ = load_model(tmp_path / "pruned.pt")
    for name, conv in lighten.conv_weights(loaded):
        assert torch.equal(conv.weight_mask, masks[name])
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert lighten.sparsity(loaded) == lighten.sparsity(model)


def test_global_magnitude_cuts_the_share_asked_of_what_is_left():
    torch.manual_seed(0)
    model = build_model(CELL)  # the cell's combine conv too: it is called as a module
    model.to(memory_format=torch.channels_last)  # as compress leaves it after validating
    total = lighten.sparsity(model)["conv_weights"]
    lighten.prune_magnitude(model, 0.5)
    assert lighten.sparsity(model)["nonzero_weights"] == total - round(total * 0.5)
    lighten.prune_magnitude(model, 0.5)
    left = total - round(total * 0.5)
    assert lighten.sparsity(model)["nonzero_weights"] == left - round(left * 0.5)
    assert model(torch.rand(1, 3, 6, 6)).shape == (1, 3, 12, 12)


# --- separable convs (Kim, Kang and Lee) ----------------------------------------------------------
def test_separable_conversion_keeps_shapes_and_gives_the_expected_params():
    torch.manual_seed(0)
    srcnn = build_model({"name": "srcnn", "scale": 2})
    x = torch.rand(1, 3, 9, 11)
    shape = srcnn(x).shape
    assert lighten.to_separable(srcnn, fit=True) == ["body.0", "body.2", "body.4"]
    # per conv: cin * k^2 (depthwise) + cin * cout + cout (pointwise and its bias)
    assert count_params(srcnn) == (3 * 81 + 3 * 64 + 64) + (64 * 25 + 64 * 32 + 32) + (
        32 * 25 + 32 * 3 + 3)
    assert srcnn(x).shape == shape == (1, 3, 18, 22)
    cell = build_model(CELL)
    assert lighten.separable_candidates(cell) == [  # the sep op's depthwise conv is not one
        "head", "cells.0.node_ops.0.0.conv_3x3.conv", "cells.0.node_ops.1.0.dil_conv_3x3.conv",
        "cells.1.node_ops.0.0.conv_3x3.conv", "cells.1.node_ops.1.0.dil_conv_3x3.conv",
        "tail.0"]
    assert lighten.separable_candidates(cell, keep_ends=True) == (
        lighten.separable_candidates(cell)[1:-1])
    cell = build_model({**CELL, "separable": {"fit": False, "keep_ends": True}})  # as loaded
    assert cell(x).shape == (1, 3, 18, 22)
    assert type(cell.head) is nn.Conv2d and type(cell.tail[0]) is nn.Conv2d
    assert not lighten.separable_candidates(cell, keep_ends=True)
    # Kim, Kang and Lee's published sizes, x4: MSRN 6,078,019 and SMSRN 888,929 (14.63%)
    assert count_params(MSRN(4)) == 6_078_019
    assert count_params(build_model({"name": "smsrn", "scale": 4})) == 888_929


def test_separable_fit_is_exact_on_a_separable_conv_and_best_on_others():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=2, dilation=2)
    with torch.no_grad():  # rank 1 per input channel: pointwise[o, i] * depthwise[i]
        conv.weight.copy_(torch.randn(6, 4, 1, 1) * torch.randn(1, 4, 3, 3))
    x = torch.rand(1, 4, 12, 12)
    fitted = lighten.SeparableConv2d.like(conv)
    fitted.fit(conv)
    with torch.no_grad():
        assert (fitted(x) - conv(x)).abs().max() < 1e-5
        conv.weight.normal_()
        fitted.fit(conv)

        def weight_error(depthwise: torch.Tensor, pointwise: torch.Tensor) -> float:
            # input channel i applies pointwise[:, i] x depthwise[i] (Eckart-Young's setting)
            return float((conv.weight - pointwise * depthwise.transpose(0, 1)).pow(2).sum())

        best = weight_error(fitted.depthwise.weight, fitted.pointwise.weight)
        assert best < 0.9 * float(conv.weight.pow(2).sum())  # it fits something
        for _ in range(50):  # and no nudge of either factor fits better: a least-squares fit
            nudged = [w + 1e-2 * torch.randn_like(w)
                      for w in (fitted.depthwise.weight, fitted.pointwise.weight)]
            assert weight_error(*nudged) > best


# --- structured: channels ----------------------------------------------------------------
def test_channel_cut_equals_zeroed_filters_and_shrinks_mult_adds():
    torch.manual_seed(0)
    arch = {"name": "srcnn", "scale": 2}
    model = build_model(arch)
    shrink, state = lighten.cut_channels(model, 0.5)
    assert shrink == {"body.0": {"out": 32, "into": ["body.2"]},
                      "body.2": {"out": 16, "into": ["body.4"]}}
    small = build_model({**arch, "shrink": shrink})
    small.load_state_dict(state)
    # the same function as the dense model with the cut filters (weights and biases) zeroed
    with torch.no_grad():
        for name in shrink:
            conv = model.get_submodule(name)
            norms = conv.weight.abs().sum((1, 2, 3))
            cut = norms < norms.sort().values[len(norms) // 2]
            conv.weight[cut] = 0
            conv.bias[cut] = 0
        x = torch.rand(1, 3, 10, 10)
        assert (small(x) - model(x)).abs().max() < 1e-5
    dense_per_pixel = 3 * 64 * 81 + 64 * 32 * 25 + 32 * 3 * 25
    cut_per_pixel = 3 * 32 * 81 + 32 * 16 * 25 + 16 * 3 * 25
    assert mult_adds(small, 2) * dense_per_pixel == mult_adds(model, 2) * cut_per_pixel
    with pytest.raises(ConfigError, match="no conv here has channels that can be cut"):
        lighten.cut_channels(build_model(CELL), 0.5)  # every output is added or concatenated


# --- the job -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """Two rounds of Bae et al.'s pruning of a random SRCNN, fine-tuned on a tiny folder."""
    root = tmp_path_factory.mktemp("compress")
    for i in range(6):
        write_image(root / "hr" / f"img{i}.png", seed=i)
    source = checkpoint(root / "dense.pt", {"name": "srcnn", "scale": 2})
    summary = run_job("compress", compress_cfg(root / "hr", source, "rounds=2"), root / "run")
    return root, summary


def test_prune_rounds_cut_further_and_fine_tuning_keeps_the_masks(pruned_run):
    root, summary = pruned_run
    rounds = summary["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    nonzero = [r["nonzero_weights"] for r in rounds]
    assert nonzero[0] > nonzero[1] > nonzero[2] > 0
    for k in (1, 2):  # fine-tuning trained the weights but left every mask as it was
        start, _ = load_model(root / "run" / f"round_{k}" / "start.pt")
        tuned, state = load_model(root / "run" / f"round_{k}" / "best.pt")
        assert lighten.sparsity(tuned)["nonzero_weights"] == nonzero[k]
        assert lighten.sparsity(start)["nonzero_weights"] == nonzero[k]
        assert state["epoch"] == 2 and rounds[k]["val_psnr_tuned"] > rounds[k]["val_psnr"]
    assert rounds[2]["deflated_bytes"] < rounds[0]["deflated_bytes"]
    assert rounds[2]["bitmask_bytes"] < rounds[0]["bitmask_bytes"]
    assert rounds[2]["file_bytes"] >= rounds[0]["file_bytes"]  # torch stores zeros densely
    assert f"| 2 | {SRCNN_PARAMS:,} |" in (root / "run" / "rounds.md").read_text()
    _, state = load_model(root / "run" / "compressed.pt")
    assert state["arch"]["prune"] == {"criterion": "std", "k": 1.0, "rounds": 2}


def test_compressed_checkpoint_goes_through_evaluate_export_upscale_and_retrain(pruned_run,
                                                                                 tmp_path):
    root, _ = pruned_run
    ckpt = root / "run" / "compressed.pt"
    model, _ = load_model(ckpt)
    masks = {n: c.weight_mask for n, c in lighten.conv_weights(model)}

    bench = make_set(tmp_path / "bench")
    results = evaluate.run(make_cfg("evaluate", f"model={ckpt}", f"benchmark_root={bench}",
                                    "sets=[Tiny]"), tmp_path)
    assert results["nonzero_params"] < results["params"] == SRCNN_PARAMS
    assert 10 < results["sets"]["Tiny"]["psnr"] < 60

    export.run(make_cfg("export", f"checkpoint={ckpt}", f"output={tmp_path / 'out'}"),
               tmp_path)
    program = torch.export.load(tmp_path / "out" / "model.pt2")
    for name, mask in masks.items():  # folded: plain weights, zeros where the masks were
        weight = program.state_dict[f"{name}.weight"]
        assert torch.equal(weight == 0, mask == 0)
    assert not any(k.endswith(("_orig", "_mask")) for k in program.state_dict)
    assert "nonzero parameters" in (tmp_path / "out" / "MODEL_CARD.md").read_text()
    lq = torch.rand(1, 3, 17, 23)
    torch.save(lq, tmp_path / "lr.pt")
    subprocess.run([sys.executable, "-c", PLAIN_TORCH, str(tmp_path / "out" / "model.pt2"),
                    str(tmp_path / "lr.pt"), str(tmp_path / "sr.pt")], check=True, timeout=120)
    with torch.no_grad():
        assert (torch.load(tmp_path / "sr.pt") - model(lq)).abs().max() < 1e-5
    # nas-sr's own read of it (nas_sr.deploy.pt2, no torch.export.load): rebuilt without masks
    exported = load_predictor(str(tmp_path / "out" / "model.pt2"), 2, channels_last=False)
    assert exported.arch["prune"]["rounds"] == 2 and not prune.is_pruned(exported.model)
    with torch.no_grad():
        assert (exported.model(lq) - model(lq)).abs().max() < 1e-5

    write_image(tmp_path / "in" / "a.png", (20, 24))
    upscale.run(make_cfg("upscale", f"model={ckpt}", f"input={tmp_path / 'in'}",
                         f"output={tmp_path / 'up'}"), tmp_path)
    assert np.asarray(Image.open(tmp_path / "up" / "a.png")).shape == (40, 48, 3)

    # retrain takes a compressed checkpoint's own arch, masks held
    cfg = make_cfg("retrain", "data=folder", f"data.train_dir={root / 'hr'}",
                   f"init_from={ckpt}", "train.epochs=1")
    summary = run_job("retrain", cfg, tmp_path / "again")
    assert summary["arch"]["prune"]["rounds"] == 2
    again, _ = load_model(tmp_path / "again" / "best.pt")
    for name, conv in lighten.conv_weights(again):
        assert torch.equal(conv.weight_mask, masks[name])
    with pytest.raises(ConfigError, match="is a x2 model; pass scale=2"):
        run_job("retrain", make_cfg("retrain", f"init_from={ckpt}", "scale=3"), tmp_path / "x3")


def test_separable_and_channel_jobs_from_an_exported_cell(image_folder, tmp_path):
    checkpoint(tmp_path / "cell.pt", CELL)
    export.run(make_cfg("export", f"checkpoint={tmp_path / 'cell.pt'}",
                        f"output={tmp_path / 'cell'}"), tmp_path)
    summary = run_job("compress", compress_cfg(image_folder, tmp_path / "cell" / "model.pt2",
                                               "method=separable", "train.epochs=1"),
                      tmp_path / "sep")
    before, after = summary["rounds"]
    assert after["params"] < before["params"] and after["mult_adds"] < before["mult_adds"]
    model, state = load_model(tmp_path / "sep" / "compressed.pt")
    assert state["arch"]["separable"] == {"fit": True, "keep_ends": True}
    assert any(isinstance(m, lighten.SeparableConv2d) for m in model.modules())

    source = checkpoint(tmp_path / "srcnn.pt", {"name": "srcnn", "scale": 2})
    summary = run_job("compress", compress_cfg(image_folder, source, "prune.criterion=channels",
                                               "train.epochs=0"), tmp_path / "channels")
    before, after = summary["rounds"]
    assert after["val_psnr_tuned"] is None  # no fine-tuning asked for
    assert after["mult_adds"] < 0.4 * before["mult_adds"]
    assert after["nonzero_params"] == after["params"] < before["params"]


@pytest.mark.parametrize("arch", [
    {"name": "srcnn", "scale": 2, "separable": {"fit": False, "keep_ends": False}},
    {"name": "srcnn", "scale": 3, "shrink": {"body.0": {"out": 40, "into": ["body.2"]}}},
    {"name": "msrn", "scale": 2, "blocks": 1, "channels": 4},
    {"name": "smsrn", "scale": 4, "blocks": 1, "channels": 4},
], ids=["separable", "shrink", "msrn", "smsrn"])
def test_lighter_archs_export_and_load_through_the_safe_reader(tmp_path, arch):
    """A .pt2 is rebuilt from its spec (nas_sr.deploy.pt2): every lighter structure must rebuild
    with exactly the exported weights' names and shapes."""
    model, _ = load_model(checkpoint(tmp_path / "m.pt", arch))
    export.run(make_cfg("export", f"checkpoint={tmp_path / 'm.pt'}",
                        f"output={tmp_path / 'out'}"), tmp_path)
    exported = load_predictor(str(tmp_path / "out" / "model.pt2"), arch["scale"],
                              channels_last=False)
    assert exported.arch == arch
    lq = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        assert (exported.model(lq) - model.eval()(lq)).abs().max() < 1e-5


@pytest.mark.parametrize("overrides, message", [
    (["method=quantize"], "method='quantize': use one of prune, separable"),
    (["prune.criterion=random"], "prune.criterion='random': use one of std"),
    (["rounds=0"], "rounds=0: must be a whole number >= 1"),
    (["method=separable", "rounds=2"], "rounds=2: method=separable converts once"),
    (["prune.k=0"], "prune.k=0: must be > 0"),
    (["prune.criterion=magnitude", "prune.amount=1.5"],
     "prune.amount=1.5: must be a share between 0 and 1, both excluded"),
    (["prune.criterion=channels", "prune.amount=0"], "prune.amount=0: must be a share"),
    (["train.epochs=-1"], "train.epochs=-1: must be a whole number >= 0"),
    (["train.patch_size=4"], r"train.patch_size=4: must be a whole number >= 6 \(3 x scale"),
    (["checkpoint=null"], "checkpoint= is required"),
])
def test_bad_options_are_refused_with_the_option_named(image_folder, tmp_path, overrides,
                                                       message):
    source = checkpoint(tmp_path / "dense.pt", {"name": "srcnn", "scale": 2})
    cfg = compress_cfg(image_folder, source, *overrides)
    with pytest.raises((ConfigError, FileNotFoundError), match=message):
        run_job("compress", cfg, tmp_path / "run")


def test_no_fine_tuning_reports_the_cut_and_writes_no_infinite_psnr(image_folder, tmp_path,
                                                                    capsys):
    source = checkpoint(tmp_path / "srcnn.pt", {"name": "srcnn", "scale": 2})
    run_dir = tmp_path / "cut"
    summary = run_job("compress", compress_cfg(image_folder, source, "train.epochs=0"), run_dir)
    cut = summary["rounds"][1]
    assert np.isfinite(cut["val_psnr"]) and cut["val_psnr_tuned"] is None
    assert "-inf" not in capsys.readouterr().out
    assert not any("Infinity" in f.read_text() for f in run_dir.rglob("*.json*"))
    assert sorted(p.name for p in (run_dir / "round_1").iterdir()) == ["start.pt"]
    # the cut's PSNR is the one its fine-tuning would start from
    tuned = run_job("compress", compress_cfg(image_folder, source, "train.epochs=1"),
                    tmp_path / "tuned")
    assert tuned["rounds"][1]["val_psnr"] == pytest.approx(cut["val_psnr"], abs=1e-4)


def test_already_lightened_models_are_refused_where_it_makes_no_sense(image_folder, tmp_path):
    sep = checkpoint(tmp_path / "sep.pt", {"name": "srcnn", "scale": 2,
                                           "separable": {"fit": True, "keep_ends": False}})
    with pytest.raises(ConfigError, match="already separable"):
        compress.check_source(compress_cfg(image_folder, sep, "method=separable"),
                              {"name": "srcnn", "scale": 2, "separable": True})
    with pytest.raises(ConfigError, match="has weight masks; cut channels first"):
        compress.check_source(compress_cfg(image_folder, sep, "prune.criterion=channels"),
                              {"name": "srcnn", "scale": 2, "prune": {"rounds": 1}})
    with pytest.raises(ConfigError, match=r"train.patch_size=8: must be .* >= 12 \(3 x scale"):
        compress.check_source(compress_cfg(image_folder, sep, "train.patch_size=8"),
                              {"name": "srcnn", "scale": 4})


@pytest.mark.parametrize("name", ["msrn", "smsrn"])
def test_msrn_and_smsrn_train_through_the_retrain_job(image_folder, tmp_path, name):
    cfg = make_cfg("retrain", "data=folder", f"data.train_dir={image_folder}", f"model={name}",
                   f"archs.{name}.blocks=1", f"archs.{name}.channels=4", "train.epochs=1",
                   "train.iters_per_epoch=2")
    summary = run_job("retrain", cfg, tmp_path)
    net, _ = load_model(tmp_path / "best.pt")
    assert summary["model"] == name and net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    assert any(isinstance(m, lighten.SeparableConv2d) for m in net.modules()) == (
        name == "smsrn")
    assert not prune.is_pruned(net)


def test_tradeoff_plots_pruned_models_at_their_nonzero_params(pruned_run, tmp_path,
                                                              monkeypatch, capsys):
    from bench import tradeoff

    root, _ = pruned_run
    for name in ("Set5", "Set14"):
        bench = make_set(tmp_path / "bench", name)
    for name, model in (("dense", root / "dense.pt"), ("pruned", root / "run" / "compressed.pt"),
                        ("bicubic", "bicubic")):
        (tmp_path / name).mkdir()
        evaluate.run(make_cfg("evaluate", f"model={model}", f"benchmark_root={bench}",
                              "scale=2"), tmp_path / name)
    extras = []  # two point files, each a list of models evaluated elsewhere
    for label, set5 in (("FSRCNN (paper)", 37.0), ("FSRCNN (elsewhere)", 35.1)):
        extras.append(tmp_path / f"{set5}.json")
        extras[-1].write_text(json.dumps([{"label": label, "Set5": set5, "Set14": 31.0,
                                           "arch": {"name": "fsrcnn", "scale": 2}}]))
    monkeypatch.setattr(sys, "argv", ["tradeoff", f"SRCNN={tmp_path / 'dense'}",
                                      str(tmp_path / "pruned"), str(tmp_path / "bicubic"),
                                      "--extra", *map(str, extras),
                                      "--out", str(tmp_path / "fig"), "--lq-size", "16",
                                      "--repeats", "1"])
    tradeoff.main()
    assert {p.name for p in (tmp_path / "fig").iterdir()} == {"tradeoff_params.png",
                                                             "tradeoff_latency.png"}
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in
            capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["SRCNN"][1] == human(SRCNN_PARAMS) and rows["bicubic"][1] == "-"
    assert rows["FSRCNN (paper)"][-2] == "37.00" and rows["FSRCNN (elsewhere)"][-2] == "35.10"
    pruned = rows["srcnn, pruned (std, 2 rounds)"]
    assert float(pruned[1].rstrip("K")) * 1e3 < SRCNN_PARAMS and pruned[2] == rows["SRCNN"][2]
