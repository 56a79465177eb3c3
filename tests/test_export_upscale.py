import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data as skdata
from torch import nn

from conftest import SHARED, make_cfg, write_image
from nas_sr.archs.build import build_model, load_model
from nas_sr.checkpoint import save_atomic
from nas_sr.data.images import ImageError, downscale, load_image, to_tensor
from nas_sr.deploy.predictor import ModelError, self_ensemble, tiled_forward
from nas_sr.errors import ConfigError
from nas_sr.jobs import export, upscale

# every op of the space, a loose end and a reuse of h(k-2)
GENOTYPE = {"nodes": [[0, "conv_3x3", 1, "sep_conv_3x3"], [2, "dil_conv_3x3", 1, "identity"],
                      [3, "conv_3x3", 0, "identity"], [1, "sep_conv_3x3", 4, "conv_3x3"],
                      [2, "identity", 5, "dil_conv_3x3"]]}
ARCH = {"name": "cell", "scale": 2, "channels": 8, "cells": 2, "genotype": GENOTYPE}
# a subprocess that cannot import the project: the exported file must stand alone
PLAIN_TORCH = """
import sys
for name in ("nas_sr", "search_spaces", "controllers"):
    sys.modules[name] = None  # any import of these now raises ImportError
import torch
model = torch.export.load(sys.argv[1]).module()
with torch.no_grad():
    torch.save(model(torch.load(sys.argv[2])), sys.argv[3])
"""


def real_lq() -> np.ndarray:
    """A real LR photograph: Set5 baby (x2) when the datasets are here, else skimage's."""
    baby = SHARED / "benchmark" / "Set5" / "X2" / "LR" / "img_001.png"
    return load_image(baby) if baby.is_file() else downscale(skdata.astronaut(), 2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random tiny cell net's checkpoint and its export folder."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    save_atomic({"arch": ARCH, "model": build_model(ARCH).state_dict(), "epoch": 7,
                 "best": {"psnr": 31.5}}, root / "cell.pt")
    (root / "notes.md").write_text("## How it was made\n\n`nas-sr retrain ...`\n")
    export.run(make_cfg("export", f"checkpoint={root / 'cell.pt'}", f"output={root / 'out'}",
                        f"card_notes={root / 'notes.md'}"), root)
    return root / "cell.pt", root / "out"


def test_export_runs_in_plain_torch_and_equals_the_training_model(exported, tmp_path):
    ckpt, out = exported
    lq = to_tensor(real_lq())[None]
    torch.save(lq, tmp_path / "lr.pt")
    subprocess.run([sys.executable, "-c", PLAIN_TORCH, str(out / "model.pt2"),
                    str(tmp_path / "lr.pt"), str(tmp_path / "sr.pt")],
                   cwd=tmp_path, check=True, timeout=120)
    model, _ = load_model(ckpt)
    with torch.no_grad():
        expected = model(lq)
    assert (torch.load(tmp_path / "sr.pt") - expected).abs().max() < 1e-5
    card = (out / "MODEL_CARD.md").read_text()
    assert "x2" in card and "Mult-Adds" in card and "torch.export.load" in card
    assert card.rstrip().endswith("## How it was made\n\n`nas-sr retrain ...`")
    assert "| best.psnr | 31.5000 |" in card and "| epoch | 7 |" in card
    assert (out / "genotype.json").is_file()


def test_self_ensemble_of_an_equivariant_model_is_its_plain_output():
    conv = nn.Conv2d(3, 3, 1)  # 1x1 conv + bicubic: commutes with flips and rotations

    def model(x):
        return F.interpolate(conv(x), scale_factor=2, mode="bicubic")

    lq = to_tensor(real_lq())[None]
    with torch.no_grad():
        assert (self_ensemble(model, lq) - model(lq)).abs().max() < 1e-5


def test_self_ensemble_of_a_generic_model_averages_into_an_equivariant_one():
    torch.manual_seed(0)
    model = build_model(ARCH).eval()
    lq = to_tensor(real_lq())[None][..., :64, :80]
    with torch.no_grad():
        ensembled = self_ensemble(model, lq)
        assert (ensembled - model(lq)).abs().max() > 1e-2  # the 8 outputs do differ
        rotated = self_ensemble(model, lq.rot90(1, dims=(-2, -1)))
        flipped = self_ensemble(model, lq.flip(-1))
    assert (rotated - ensembled.rot90(1, dims=(-2, -1))).abs().max() < 1e-5
    assert (flipped - ensembled.flip(-1)).abs().max() < 1e-5


@pytest.mark.parametrize("tile", [7, 16, 33, 50])
def test_tiled_forward_equals_untiled(tile):
    torch.manual_seed(0)
    model = build_model(ARCH).eval()
    lq = to_tensor(real_lq())[None][..., :70, :90]  # no tile size divides both sides
    seen = []
    with torch.no_grad():
        tiled = tiled_forward(model, lq, 2, tile, overlap=16,
                              progress=lambda done, total: seen.append((done, total)))
        diff = (tiled - model(lq)).abs().max()
    assert diff < 1e-5
    total = -(-70 // tile) * -(-90 // tile)
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_upscale_tiled_checkpoint_matches_untiled_export(exported, tmp_path):
    ckpt, out = exported
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(real_lq()[:70, :90]).save(inputs / "photo.png")
    write_image(inputs / "sub" / "odd.png", (37, 53))
    results = {}
    for name, model, tile in (("tiled", ckpt, 24), ("whole", out / "model.pt2", "null")):
        upscale.run(make_cfg("upscale", f"model={model}", f"input={inputs}",
                             f"output={tmp_path / name}", f"tile={tile}"), tmp_path)
        results[name] = {p: np.asarray(Image.open(tmp_path / name / p), dtype=int)
                         for p in ("photo.png", "sub/odd.png")}
    assert results["tiled"]["sub/odd.png"].shape == (74, 106, 3)
    for p, img in results["tiled"].items():
        assert np.abs(img - results["whole"][p]).max() <= 1  # 8-bit rounding only


def test_upscale_errors_name_the_problem(exported, tmp_path):
    ckpt, out = exported

    def run(*overrides):
        return upscale.run(make_cfg("upscale", *overrides, f"output={tmp_path / 'o'}"), tmp_path)

    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="broken.png"):
        run(f"model={ckpt}", f"input={tmp_path / 'broken.png'}")
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        run(f"model={ckpt}", f"input={tmp_path / 'nothing_here'}")
    with pytest.raises(ModelError, match="wrong scale"):
        run(f"model={out / 'model.pt2'}", "scale=3", f"input={tmp_path / 'broken.png'}")


def test_one_bad_file_does_not_stop_the_batch(exported, tmp_path):
    ckpt, _ = exported
    pics = tmp_path / "pics"
    write_image(pics / "a.png", (16, 16))
    (pics / "b.png").write_bytes(b"not a png")
    write_image(pics / "c.png", (16, 12))
    with pytest.raises(ImageError, match=r"1 of 3 file\(s\) failed .*\n  .*b.png: cannot be "):
        upscale.run(make_cfg("upscale", f"model={ckpt}", f"input={pics}",
                             f"output={tmp_path / 'out'}"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


def test_upscale_names_what_an_image_loses_and_refuses_transparency(exported, tmp_path, capsys):
    ckpt, _ = exported
    pics, rgb = tmp_path / "pics", np.full((16, 16, 3), 90, np.uint8)
    pics.mkdir()
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(pics / "deep.png")
    Image.fromarray(np.dstack([rgb, np.full((16, 16), 255, np.uint8)])).save(pics / "opaque.png")
    see_through = np.dstack([rgb, np.full((16, 16), 255, np.uint8)])
    see_through[0, 0, 3] = 0  # one hidden pixel: dropping alpha would show its colour
    Image.fromarray(see_through).save(pics / "logo.png")
    Image.fromarray(rgb).save(pics / "photo.webp", lossless=True)  # listed as .png is
    with pytest.raises(ImageError, match=r"1 of 4 file\(s\) failed .*\n  .*logo.png: has tran"):
        upscale.run(make_cfg("upscale", f"model={ckpt}", f"input={pics}",
                             f"output={tmp_path / 'out'}"), tmp_path)
    printed = capsys.readouterr().out
    assert f"{pics / 'deep.png'}: 16-bit samples reduced to 8 bits" in printed
    assert f"{pics / 'opaque.png'}: opaque alpha channel dropped" in printed
    assert "photo.webp" not in printed and "wrote 3 file(s)" in printed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "deep.png", "opaque.png", "photo.png"]


def test_upscale_never_overwrites_an_input(exported, tmp_path):
    ckpt, _ = exported
    pics = tmp_path / "pics"
    for name in ("a.png", "a.jpg"):
        write_image(pics / name, (16, 16))

    def run(output):
        return upscale.run(make_cfg("upscale", f"model={ckpt}", f"input={pics}",
                                    f"output={output}"), tmp_path)

    with pytest.raises(ConfigError, match="would overwrite the input"):
        run(pics)
    with pytest.raises(ConfigError, match="would both be written to"):
        run(tmp_path / "out")
    assert sorted(p.name for p in pics.iterdir()) == ["a.jpg", "a.png"]
    assert not (tmp_path / "out").exists()


def test_upscale_replaces_an_existing_output_only_when_told(exported, tmp_path):
    ckpt, _ = exported
    write_image(tmp_path / "pics" / "a.png", (16, 16))
    write_image(tmp_path / "pics" / "b.png", (16, 12))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.png").write_bytes(b"a user's own file")

    def run(*overrides):
        return upscale.run(make_cfg("upscale", f"model={ckpt}", f"input={tmp_path / 'pics'}",
                                    f"output={tmp_path / 'out'}", *overrides), tmp_path)

    with pytest.raises(ConfigError, match=r"already holds 1 of the 2 output file\(s\), e\.g\. "
                                          r".*b\.png; pass overwrite=true"):
        run()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.png"]  # nothing written
    assert (tmp_path / "out" / "b.png").read_bytes() == b"a user's own file"
    run("overwrite=true")
    assert Image.open(tmp_path / "out" / "b.png").size == (24, 32)


def test_upscale_of_a_folder_takes_every_format_the_page_takes_and_names_what_it_skips(
        tmp_path, capsys):
    pics = tmp_path / "pics"
    picture = Image.open(write_image(pics / "c.png", (16, 16)))
    picture.save(pics / "a.gif")
    picture.save(pics / "b.ppm")
    (pics / "notes.txt").write_text("not a picture")
    result = upscale.run(make_cfg("upscale", "model=bicubic", "scale=2", f"input={pics}",
                                  f"output={tmp_path / 'out'}"), tmp_path)
    assert sorted(Path(p).name for p in result["outputs"]) == ["a.png", "b.png", "c.png"]
    assert Image.open(tmp_path / "out" / "a.png").size == (32, 32)
    out = capsys.readouterr().out
    assert f"{pics}: skipped 1 file(s) that are neither an image nor a video (e.g. notes.txt)" \
        in out
    assert ".gif" in out.rpartition("upscale takes")[2]


def test_upscale_takes_a_shipped_model_by_name(tmp_path, capsys):
    photo = write_image(tmp_path / "in" / "photo.png", (40, 52))
    for name, model in (("by_name", "searched_x2"),
                        ("by_path", "nas_sr/models/searched_x2/model.pt2")):
        upscale.run(make_cfg("upscale", f"model={model}", f"input={photo}",
                             f"output={tmp_path / name}"), tmp_path / f"run_{name}")
    assert capsys.readouterr().out.count("(runtime: onnx)") == 2  # its verified model.onnx
    by_name = np.asarray(Image.open(tmp_path / "by_name" / "photo.png"))
    assert by_name.shape == (80, 104, 3)
    assert np.array_equal(by_name, np.asarray(Image.open(tmp_path / "by_path" / "photo.png")))
    with pytest.raises(FileNotFoundError, match="a shipped model's name .*searched_x2"):
        upscale.run(make_cfg("upscale", "model=searched_x9", f"input={photo}",
                             f"output={tmp_path / 'none'}"), tmp_path / "run_none")


def test_export_writes_safetensors_that_build_model_turns_into_the_pt2_model(exported):
    """The builder of docs/evaluation.md: load_file + the JSON in the metadata + build_model
    gives exactly the network model.pt2 holds, on a real photograph's crop."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    _, out = exported
    with safe_open(out / "model.safetensors", framework="pt") as f:
        arch = json.loads(f.metadata()["nas_sr.arch"])
    model = build_model(arch)
    model.load_state_dict(load_file(out / "model.safetensors"))
    lq = to_tensor(real_lq())[None, :, :48, :64]
    with torch.no_grad():  # our own file: torch.export.load is fine on it
        assert torch.equal(model.eval()(lq), torch.export.load(out / "model.pt2").module()(lq))
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("---\nlicense: mit\n") and "datasets:\n- unknown\n" in card


def test_output_naming_a_file_writes_that_file_for_one_input(tmp_path):
    photo = write_image(tmp_path / "in" / "photo.jpg", (40, 52))
    upscale.run(make_cfg("upscale", "model=bicubic", "scale=2", f"input={photo}",
                         f"output={tmp_path / 'out' / 'big.png'}"), tmp_path / "run")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["big.png"]
    assert Image.open(tmp_path / "out" / "big.png").size == (104, 80)
    with pytest.raises(ConfigError, match=r"written as a \.png file"):
        upscale.run(make_cfg("upscale", "model=bicubic", "scale=2", f"input={photo}",
                             f"output={tmp_path / 'out' / 'big.jpg'}"), tmp_path / "run2")
    with pytest.raises(ConfigError, match="already holds"):  # and never replaced unasked
        upscale.run(make_cfg("upscale", "model=bicubic", "scale=2", f"input={photo}",
                             f"output={tmp_path / 'out' / 'big.png'}"), tmp_path / "run3")
