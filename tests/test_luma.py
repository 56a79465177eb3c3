"""Y-only models: the network on Y, chroma bicubic; their files hold the Y network alone,
and a video's decoded luma plane goes through it without a trip through RGB."""

import json
import threading
import time
from dataclasses import replace

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_cfg, write_clip
from nas_sr.archs.build import build_model, load_model
from nas_sr.archs.luma import LumaSR, rgb_to_ycbcr, ycbcr_to_rgb
from nas_sr.checkpoint import save_atomic, write_json
from nas_sr.cli import run_job
from nas_sr.data.video import Encoding
from nas_sr.deploy import media
from nas_sr.deploy.media import Settings, upscale_video
from nas_sr.deploy.onnx_model import OnnxModel, read_onnx
from nas_sr.deploy.predictor import load_predictor
from nas_sr.errors import ConfigError
from nas_sr.jobs import export
from nas_sr.metrics import rgb_to_cbcr, rgb_to_y
from nas_sr.search import proxy
from nas_sr.search.band import Band
from search_spaces.cost import genotype_cost
from search_spaces.genotypes import Genotype, Node
from search_spaces.network import count_params

GENOTYPE = {"nodes": [[1, "sep_conv_3x3", 1, "identity"], [2, "conv_3x3", 2, "dil_conv_3x3"]],
            "loose_ends": [3]}
ARCH = {"name": "cell", "scale": 2, "channels": 8, "cells": 1, "genotype": GENOTYPE}
LUMA = {**ARCH, "colors": 1}


def test_colour_conversion_is_the_metrics_bt601_and_inverts():
    rgb = torch.rand(2, 3, 9, 7)
    ycc = rgb_to_ycbcr(rgb)
    assert torch.allclose(ycc[:, 0] * 255, rgb_to_y(rgb * 255), atol=1e-4)
    assert torch.allclose(ycc[:, 1:] * 255, rgb_to_cbcr(rgb * 255), atol=1e-4)
    assert torch.allclose(ycbcr_to_rgb(ycc), rgb, atol=1e-5)


def test_a_y_model_runs_its_network_on_y_and_bicubic_on_chroma():
    torch.manual_seed(0)
    model = build_model(LUMA).eval()
    rgb = build_model(ARCH)
    assert isinstance(model, LumaSR)
    c, s = 8, 2  # the head takes 1 channel, not 3; the tail gives 1 * s^2, not 3 * s^2
    assert count_params(rgb) - count_params(model) == 2 * 9 * c + 2 * s * s * (9 * c + 1)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        sr, y = model(x), model.net(rgb_to_ycbcr(x)[:, :1])
    assert torch.allclose(rgb_to_ycbcr(sr)[:, :1], y, atol=1e-5)  # Y is the network's
    chroma = F.interpolate(rgb_to_ycbcr(x)[:, 1:], scale_factor=2, mode="bicubic")
    assert torch.allclose(rgb_to_ycbcr(sr)[:, 1:], chroma, atol=1e-5)
    assert torch.equal(model(x[:, :1]), model.net(x[:, :1]))  # one channel: taken for Y


@pytest.mark.parametrize("arch", [{**ARCH, "colors": 2}, {"name": "srcnn", "scale": 2,
                                                          "colors": 1}])
def test_an_arch_with_colours_it_cannot_have_is_refused(arch):
    with pytest.raises(ConfigError, match="colors"):
        build_model(arch)


def test_a_y_model_retrains_on_y_and_learns(tmp_path, monkeypatch):
    seen = []
    forward = LumaSR.forward
    monkeypatch.setattr(LumaSR, "forward", lambda self, x, *a: seen.append(x.shape[1])
                        or forward(self, x, *a))
    write_json(tmp_path / "genotype.json", {**GENOTYPE, "scale": 2})
    cfg = make_cfg("retrain", f"genotype={tmp_path / 'genotype.json'}", "train.cell.channels=8",
                   "train.cell.cells=1", "train.cell.colors=1", "train.epochs=3",
                   "train.iters_per_epoch=12")
    summary = run_job("retrain", cfg, tmp_path / "run")
    untrained = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert summary["best_val_psnr"] > untrained["val_psnr"] + 3
    assert seen.count(1) == 36 and 3 in seen  # each step on Y; validation on RGB
    model, state = load_model(tmp_path / "run" / "best.pt")
    assert isinstance(model, LumaSR) and state["arch"]["colors"] == 1


@pytest.fixture(scope="module")
def y_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("y")
    torch.manual_seed(0)
    save_atomic({"arch": LUMA, "model": build_model(LUMA).state_dict()}, root / "y.pt")
    export.run(make_cfg("export", f"checkpoint={root / 'y.pt'}", f"output={root / 'out'}",
                        "format=[pt2,onnx,int8]"), root)
    return root / "y.pt", root / "out"


def test_a_y_models_files_hold_the_y_network_and_every_runtime_gives_rgb(y_export):
    ckpt, out = y_export
    model, _ = load_model(ckpt)
    program = torch.export.load(out / "model.pt2").module()
    y = torch.rand(1, 1, 11, 13)
    assert torch.allclose(program(y), model.net(y), atol=1e-5)  # the file: Y in, Y out
    _, arch, facts = read_onnx(out / "model.onnx")
    assert arch == LUMA and facts["export_check"]["agrees"]
    card = (out / "MODEL_CARD.md").read_text()  # its snippets feed Y, not RGB
    assert "colors=1" in card and "(N, 1, h, w)" in card and "Y alone" in card
    x = torch.rand(1, 3, 16, 14)
    with torch.no_grad():
        expected = model(x)
    for runtime in ("eager", "onnx", "int8"):
        predictor = load_predictor(str(out / "model.pt2"), runtime=runtime)
        assert predictor.luma and predictor.runtime == runtime
        with torch.no_grad():
            got = predictor.net(x)
        assert got.shape == (1, 3, 32, 28)
        assert (got - expected).abs().max() < (0.05 if runtime == "int8" else 1e-4), runtime


def test_a_y_models_video_goes_through_the_decoded_luma_plane(y_export, tmp_path):
    clip = write_clip(tmp_path / "in.mp4", frames=4, size=(32, 48), audio=None)
    predictor = load_predictor(str(y_export[1] / "model.pt2"), runtime="onnx")
    lossless = Encoding(crf=0, preset="ultrafast", options={"qp": "0"})
    upscale_video(predictor, clip, tmp_path / "out.mp4", Settings(tile=None, encoding=lossless))
    with av.open(str(clip)) as a, av.open(str(tmp_path / "out.mp4")) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0), strict=True))
    assert len(pairs) == 4
    for src, dst in pairs:
        lq, sr = src.to_ndarray(format="yuv420p"), dst.to_ndarray(format="yuv420p")
        assert sr.shape == (96, 96)  # (64 + 32) rows of 96: Y, then U and V
        y = torch.from_numpy(lq[:32].astype(np.float32) / 255)[None, None]
        with torch.no_grad():
            expected = predictor.net(y).clamp(0, 1).mul(255).round().byte()[0, 0].numpy()
        # the Y plane the encoder got is the network's output on the decoded Y plane
        assert np.abs(sr[:64].astype(int) - expected).max() <= 1
        u = lq[32:40].reshape(16, 24)  # the source's U plane, upscaled bicubic
        up = F.interpolate(torch.from_numpy(u).float()[None, None], scale_factor=2,
                           mode="bicubic").clamp(0, 255).round().byte()[0, 0].numpy()
        assert np.abs(sr[64:80].reshape(32, 48).astype(int) - up).max() <= 1


def test_a_cpu_video_on_onnx_runtime_runs_a_one_thread_call_per_thread(y_export, tmp_path,
                                                                        monkeypatch):
    clip = write_clip(tmp_path / "in.mp4", frames=6, size=(32, 48), audio=None)
    predictor = load_predictor(str(y_export[1] / "model.pt2"), runtime="onnx")
    given, sessions, running, most, lock = [], [], [0], [], threading.Lock()
    real_rewrite, real_threads, real_call = media.rewrite, OnnxModel.with_threads, \
        OnnxModel.forward
    monkeypatch.setattr(media, "rewrite", lambda *a, **k: given.append(a[4]) or
                        real_rewrite(*a, **k))
    monkeypatch.setattr(OnnxModel, "with_threads", lambda self, n: sessions.append(
        (threading.get_ident(), n)) or real_threads(self, n))

    def call(self, lq):  # slow enough that the next frame comes while it runs
        with lock:
            running[0] += 1
            most[-1] = max(most[-1], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return real_call(self, lq)
    monkeypatch.setattr(OnnxModel, "forward", call)
    lossless = Encoding(crf=0, preset="ultrafast", options={"qp": "0"})
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for name, workers in (("auto.mp4", None), ("one.mp4", 1)):
            most.append(0)
            upscale_video(predictor, clip, tmp_path / name,
                          Settings(tile=None, encoding=replace(lossless, workers=workers)))
    finally:
        torch.set_num_threads(threads)
    # by default two calls at once, each on a one-thread session of its own; then one
    assert [e.workers for e in given] == [2, 1] and most == [2, 1]
    assert len(sessions) == len({t for t, _ in sessions}) == 2 and {n for _, n in sessions} == {1}
    with av.open(str(tmp_path / "auto.mp4")) as a, av.open(str(tmp_path / "one.mp4")) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0), strict=True))
    assert len(pairs) == 6 and all(  # one-thread sessions compute what a two-thread one does
        np.abs(x.to_ndarray().astype(int) - y.to_ndarray()).max() <= 1 for x, y in pairs)
    eager = load_predictor(str(y_export[1] / "model.pt2"), runtime="eager")
    upscale_video(eager, clip, tmp_path / "eager.mp4", Settings(tile=None, encoding=lossless))
    assert given[-1].workers == 1  # torch's threads are the process's: no calls at once


def test_a_search_for_a_network_on_y_prices_and_trains_its_cells_on_y(monkeypatch):
    cfg = make_cfg("search", "train.cell.colors=1", "search.budget.params=50000")
    cell = Genotype((Node(0, "conv_3x3", 1, "identity"),))
    width = (cfg.archs.cell.channels, cfg.archs.cell.cells)
    assert Band(cfg).cost(cell) == genotype_cost(cell, *width, cfg.scale, colors=1)
    assert Band(cfg).cost(cell)["params"] < genotype_cost(cell, *width, cfg.scale)["params"]
    setting = proxy.ProxySetting.from_config(cfg)
    assert setting.colors == 1 and setting.record()["colors"] == 1
    assert "colors" not in proxy.ProxySetting.from_config(make_cfg("search")).record()
    seen = []  # the channels every call of the proxy's network gets

    class Spy(proxy.CellSRNet):
        def forward(self, x, genotype=None):
            seen.append(x.shape[1])
            return super().forward(x, genotype)

    monkeypatch.setattr(proxy, "CellSRNet", Spy)
    tiny = proxy.ProxySetting(channels=4, cells=1, steps=3, batch_size=2, patch_size=16,
                              lr=1e-3, colors=1)
    gen = torch.Generator().manual_seed(0)
    batches = (torch.randint(0, 256, (6, 3, 8, 8), generator=gen, dtype=torch.uint8),
               torch.randint(0, 256, (6, 3, 16, 16), generator=gen, dtype=torch.uint8))
    crops = (torch.rand(3, 3, 8, 8, generator=gen), torch.rand(3, 3, 16, 16, generator=gen))
    scores = proxy.proxy_run(cell, batches, {"reward": crops}, 2, tiny, 0)
    assert seen and set(seen) == {1}  # training and scoring: Y alone through the network
    assert scores["reward"].shape == (3,) and torch.isfinite(scores["reward"]).all()


def test_a_one_by_one_upsampler_trains_from_retrain_and_exports_as_it_runs(tmp_path):
    write_json(tmp_path / "genotype.json", {**GENOTYPE, "scale": 2})
    cfg = make_cfg("retrain", f"genotype={tmp_path / 'genotype.json'}", "train.cell.channels=8",
                   "train.cell.cells=1", "train.cell.colors=1", "train.cell.upsampler=conv1",
                   "train.epochs=1", "train.iters_per_epoch=2")
    run_job("retrain", cfg, tmp_path / "run")
    model, state = load_model(tmp_path / "run" / "best.pt")
    assert state["arch"]["upsampler"] == "conv1"
    assert model.net.tail[0].kernel_size == (1, 1) and model.net.tail[0].out_channels == 4
    export.run(make_cfg("export", f"checkpoint={tmp_path / 'run' / 'best.pt'}",
                        f"output={tmp_path / 'out'}", "format=[pt2,onnx]"), tmp_path)
    _, arch, facts = read_onnx(tmp_path / "out" / "model.onnx")
    assert arch["upsampler"] == "conv1" and facts["export_check"]["agrees"]
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        got = load_predictor(str(tmp_path / "out" / "model.pt2"), runtime="onnx").net(x)
        assert (got - model(x)).abs().max() < 1e-4
