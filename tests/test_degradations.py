"""Realistic degradations: each stage does what it says, keeps the LR aligned with the HR,
is fixed by its seed; training on them, and degraded test sets that evaluate scores."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos

from conftest import make_cfg, make_set
from nas_sr.archs.build import load_model
from nas_sr.cli import run_job
from nas_sr.data import degradations as dg
from nas_sr.data.crops import RandomCrops, _augment, lq_patch_size
from nas_sr.data.images import downscale, load_image, mod_crop, to_tensor
from nas_sr.errors import ConfigError
from nas_sr.jobs import degrade as degrade_job
from nas_sr.jobs import export, upscale
from nas_sr.options import check_options
from nas_sr.train import trainer
from nas_sr.train.distributed import Dist
from search_spaces.genotypes import Genotype, Node

CELL = Genotype((Node(0, "conv_3x3", 1, "identity"), Node(2, "sep_conv_3x3", 0, "conv_3x3")))


def realistic(**changes: object) -> dg.Settings:
    """retrain's default ranges, ``changes`` (``first.jpeg=0``, ``second_order=0``) applied."""
    cfg = make_cfg("retrain", *(f"data.realistic.{k}={v}" for k, v in changes.items()))
    return dg.settings(cfg.data.realistic)


def only(step: str, resize: str = "[bicubic,bilinear,area]", **ranges: object) -> dg.Settings:
    """One pass whose only step besides the downscaling is ``step`` (blur, noise or jpeg)."""
    off = {f"first.{s}": float(s == step) for s in ("blur", "noise", "jpeg")}
    return realistic(second_order=0, resize=resize, **off,
                     **{f"first.{k}": v for k, v in ranges.items()})


def photo(side: int = 192) -> np.ndarray:
    return np.ascontiguousarray(photos.astronaut()[100:100 + side, 150:150 + side])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def blob(shape: tuple[int, int], centre: tuple[float, float], sigma: float = 2.0) -> np.ndarray:
    """A Gaussian spot at a sub-pixel ``centre`` on black, (H, W, 3) float 0..255."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    spot = 255 * np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * sigma**2))
    return np.repeat(spot[..., None], 3, -1).astype(np.float32)


def centroid(img: np.ndarray) -> np.ndarray:
    w = img.astype(float).mean(-1)
    y, x = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(w * y).sum(), (w * x).sum()]) / w.sum()


def offset(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sub-pixel shift of ``a`` against ``b``: the cross-correlation's peak, refined by a
    parabola through it and its neighbours along each axis."""
    fa, fb = (np.fft.fft2(x.astype(float).mean(-1) - x.mean()) for x in (a, b))
    corr = np.fft.fftshift(np.fft.ifft2(fa * np.conj(fb)).real)
    peak = np.array(np.unravel_index(corr.argmax(), corr.shape))
    shift = peak - np.array(corr.shape) // 2
    for axis in (0, 1):
        step = np.eye(2, dtype=int)[axis]
        left, mid, right = (corr[tuple(peak + d * step)] for d in (-1, 0, 1))
        shift = shift.astype(float)
        shift[axis] += 0.5 * (left - right) / (left - 2 * mid + right)
    return shift


# --- the pipeline -------------------------------------------------------------------------
def test_a_seed_makes_the_same_lr_every_time_and_another_seed_another():
    hr, config = photo(), realistic(second_order=1)
    first = dg.degrade(hr, 2, config, dg.image_rng(7, 3))
    assert first.shape == (96, 96, 3) and first.dtype == np.uint8
    assert np.array_equal(first, dg.degrade(hr, 2, config, dg.image_rng(7, 3)))
    for other in (dg.image_rng(8, 3), dg.image_rng(7, 4)):
        assert np.abs(first.astype(int) - dg.degrade(hr, 2, config, other)).mean() > 1


def test_jpeg_at_a_low_quality_measurably_lowers_psnr_against_the_clean_lr():
    clean = downscale(photo(), 2)
    low, high = (dg.jpeg(clean.astype(np.float32), q) for q in (10, 95))
    assert psnr(low, clean) < psnr(high, clean) - 8
    assert psnr(low, clean) < 32
    piped = dg.degrade(photo(), 2, only("jpeg", quality="[10,10]", resize="[bicubic]"),
                       dg.image_rng(0))
    assert psnr(piped, clean) < 33


@pytest.mark.parametrize("gray", [False, True])
def test_gaussian_noise_has_the_asked_std(gray):
    flat = np.full((256, 256, 3), 128, np.float32)
    noisy = dg.gaussian_noise(flat, 8.0, gray, np.random.default_rng(0)) - flat
    assert abs(noisy.std() - 8.0) < 0.15 and abs(noisy.mean()) < 0.15
    spread = np.ptp(noisy, axis=-1).max()
    assert (spread == 0) if gray else (spread > 1)
    # through the pipeline: the std drawn from [8, 8], on a flat image no blur changes
    piped = dg.degrade(flat.astype(np.uint8), 2, only("noise", gaussian="[8,8]",
                                                      poisson_share=0), dg.image_rng(1))
    assert abs(piped.std() - 8.0) < 0.3


def test_poisson_noise_grows_as_the_square_root_of_the_level():
    rng = np.random.default_rng(0)
    for level in (25, 100):
        flat = np.full((256, 256, 3), level, np.float32)
        noise = dg.poisson_noise(flat, 1.0, False, rng) - flat
        assert abs(noise.std() - np.sqrt(level)) < 0.05 * np.sqrt(level)


@pytest.mark.parametrize("kind", dg.KERNELS)
def test_blur_lowers_high_frequency_energy(kind):
    hr = photo().astype(np.float32)
    stage = realistic(**{"first.kernels": f"[{kind}]", "first.sigma": "[1.5,1.5]"}).first
    blurred = dg.blur(hr, dg.random_kernel(stage, np.random.default_rng(0)))

    def high(img: np.ndarray) -> float:
        spectrum = np.abs(np.fft.fftshift(np.fft.fft2(img.mean(-1) - img.mean()))) ** 2
        y, x = np.mgrid[:img.shape[0], :img.shape[1]] - img.shape[0] // 2
        return float(spectrum[np.hypot(y, x) > img.shape[0] / 4].sum())

    assert high(blurred) < 0.3 * high(hr)
    assert abs(blurred.mean() - hr.mean()) < 0.5  # a normalised kernel keeps the brightness


def test_kernels_are_odd_centred_normalised_and_point_symmetric():
    rng = np.random.default_rng(0)
    for _ in range(20):
        kernel = dg.random_kernel(realistic().first, rng)
        assert kernel.shape[0] % 2 == 1 and kernel.shape[0] == kernel.shape[1]
        assert abs(kernel.sum() - 1) < 1e-9
        np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-12)
    wide = dg.blur_kernel(9, (1.0, 3.0), angle=0.0)  # stds along (x, y)
    assert wide[0, 4] > 10 * wide[4, 0]  # spread along y (rows), narrow along x
    with pytest.raises(ValueError, match="odd"):
        dg.blur_kernel(8, (1.0, 1.0))


# --- alignment ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", dg.KERNELS)
def test_blur_moves_no_spot(kind):
    spot = blob((64, 64), (30.3, 37.6))
    stage = realistic(**{"first.kernels": f"[{kind}]", "first.kernel_size": "[15,15]",
                         "first.sigma": "[0.5,2.5]"}).first
    rng = np.random.default_rng(1)
    for _ in range(5):
        np.testing.assert_allclose(centroid(dg.blur(spot, dg.random_kernel(stage, rng))),
                                   centroid(spot), atol=1e-4)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("method", list(dg.RESIZE))
def test_every_downscaling_maps_pixel_centres_as_matlab_bicubic(method, scale):
    spot = blob((24 * scale, 24 * scale), (11.3 * scale, 13.8 * scale), sigma=1.5 * scale)
    expected = (centroid(spot) + 0.5) / scale - 0.5  # LR x sits at HR (x + 0.5) s - 0.5
    ours = dg.downscale_with(spot, scale, method)
    matlab = downscale(np.round(spot).astype(np.uint8), scale)
    np.testing.assert_allclose(centroid(ours), expected, atol=0.01)
    np.testing.assert_allclose(centroid(matlab), expected, atol=0.02)


@pytest.mark.parametrize("step", ["blur", "noise", "jpeg", "all"])
def test_the_lr_stays_aligned_with_plain_bicubic_downscaling_through_every_stage(step):
    hr = photo()
    config = realistic() if step == "all" else only(step)
    plain = downscale(hr, 2)
    assert offset(downscale(np.roll(hr, 1, axis=1), 2), plain)[1] > 0.4  # it sees 1 HR px
    for seed in range(6 if step == "all" else 3):
        lr = dg.degrade(hr, 2, config, dg.image_rng(seed))
        shift = offset(lr, plain)
        assert np.all(np.abs(shift) < 0.05), (seed, shift)  # a 1/10 HR pixel


def test_the_settings_are_checked_in_one_line_naming_the_key():
    for override, key in (("data.degradation=jpeg", "data.degradation"),
                          ("data.realistic.first.kernel_size=[8,8]", "first.kernel_size"),
                          ("data.realistic.second.quality=[0,50]", "second.quality"),
                          ("data.realistic.first.sigma=[2,1]", "first.sigma"),
                          ("data.realistic.first.kernels=[box]", "first.kernels"),
                          ("data.realistic.resize=[nearest]", "resize"),
                          ("data.realistic.second_order=2", "second_order")):
        cfg = make_cfg("retrain", "genotype=searched_x2", "data.degradation=realistic",
                       override)
        with pytest.raises(ConfigError, match=key):
            check_options("retrain", cfg)
    with pytest.raises(ConfigError, match="search scores cells on bicubic"):
        check_options("search", make_cfg("search", "data.degradation=realistic"))
    with pytest.raises(ConfigError, match="teacher"):
        check_options("retrain", make_cfg("retrain", "genotype=searched_x2",
                                          "data.degradation=realistic", "train.teacher=x.pt2"))


# --- training -----------------------------------------------------------------------------
def folder_cfg(folder: Path, genotype: Path, *overrides: str):
    return make_cfg("retrain", "data=folder", f"data.train_dir={folder}",
                    f"genotype={genotype}", *overrides)


@pytest.fixture
def genotype_file(tmp_path: Path) -> Path:
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps({**CELL.to_dict(), "scale": 2}))
    return path


def test_degradation_bicubic_gives_exactly_the_training_pairs_of_before(image_folder,
                                                                        genotype_file):
    crops, val = trainer.load_data(folder_cfg(image_folder, genotype_file), Dist())
    same, same_val = trainer.load_data(folder_cfg(image_folder, genotype_file,
                                                  "data.degradation=bicubic"), Dist())
    assert type(crops) is RandomCrops and type(same) is RandomCrops
    size = lq_patch_size(crops.size * crops.scale, crops.scale)
    crops.set_epoch(3)
    for index in range(6):  # RandomCrops as it drew before degradations existed
        rng = np.random.default_rng((crops.seed, 3, index))
        i = crops.images[int(rng.integers(len(crops.images)))]
        h, w = crops.store.lq_shape(i)
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        gt, lq = crops.store.crop(i, y, x, size, crops.scale)
        k = int(rng.integers(8))
        got = crops[index]
        assert torch.equal(got[0], to_tensor(_augment(lq, k)))
        assert torch.equal(got[1], to_tensor(_augment(gt, k)))
    for (lq_a, gt_a), (lq_b, gt_b) in zip(val, same_val, strict=True):
        assert torch.equal(lq_a, lq_b) and torch.equal(gt_a, gt_b)


def test_realistic_crops_are_degraded_afresh_per_sample_and_fixed_by_epoch_and_index(
        image_folder, genotype_file):
    cfg = folder_cfg(image_folder, genotype_file, "data.degradation=realistic")
    crops, val = trainer.load_data(cfg, Dist())
    bicubic, clean_val = trainer.load_data(folder_cfg(image_folder, genotype_file), Dist())
    assert isinstance(crops, dg.DegradedCrops)
    crops.set_epoch(2)
    bicubic.set_epoch(2)
    lq, gt = crops[5]
    assert lq.shape == (3, 16, 16) and gt.shape == (3, 32, 32)
    assert torch.equal(gt, bicubic[5][1])  # the same HR crop, another LR
    assert (lq - bicubic[5][0]).abs().mean() > 1 / 255
    assert all(torch.equal(a, b) for a, b in zip(crops[5], crops[5], strict=True))
    resumed = trainer.load_data(cfg, Dist())[0]  # a resumed run: a new dataset, same pairs
    resumed.set_epoch(2)
    assert torch.equal(resumed[5][0], lq)
    crops.set_epoch(3)
    assert not torch.equal(crops[5][0], lq)
    # validation: the hold-out images degraded with a fixed seed, whatever the run's seed
    again = trainer.validation_sets(folder_cfg(image_folder, genotype_file, "seed=5",
                                               "data.degradation=realistic"), Dist())
    assert torch.equal(val[0][0], again[0][0]) and torch.equal(val[0][1], clean_val[0][1])
    assert not torch.equal(val[0][0], clean_val[0][0])


def test_each_processs_share_of_the_hold_out_is_degraded_as_the_whole_list_is():
    data = make_cfg("retrain", "data.degradation=realistic").data
    pairs = [(mod_crop(photo(side), 2), None) for side in (64, 80, 96)]
    whole = dg.validation_pairs(pairs, data, 2)
    share = dg.validation_pairs(pairs[1::2], data, 2, range(3)[1::2])  # rank 1 of 2
    assert np.array_equal(share[0][1], whole[1][1]) and share[0][0] is pairs[1][0]
    assert not np.array_equal(whole[0][1][:32, :32], whole[1][1][:32, :32])


def test_a_realistic_retrain_exports_and_upscales_like_any_other(image_folder, genotype_file,
                                                                  tmp_path):
    cfg = folder_cfg(image_folder, genotype_file, "data.degradation=realistic",
                     "train.val_crops=null")
    summary = run_job("retrain", cfg, tmp_path / "run")
    assert summary["epochs"] == 2 and np.isfinite(summary["best_val_psnr"])
    model, _ = load_model(tmp_path / "run" / "best.pt")
    export.run(make_cfg("export", f"checkpoint={tmp_path / 'run' / 'best.pt'}",
                        f"output={tmp_path / 'model'}"), tmp_path / "run")
    assert (tmp_path / "model" / "model.pt2").is_file()
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.fromarray(photo(40)).save(pics / "photo.jpg", quality=40)
    upscale.run(make_cfg("upscale", f"model={tmp_path / 'model' / 'model.pt2'}",
                         f"input={pics}", f"output={tmp_path / 'out'}"), tmp_path / "run")
    assert load_image(tmp_path / "out" / "photo.png").shape == (80, 80, 3)


# --- degraded test sets -------------------------------------------------------------------
def test_degrade_writes_a_set_that_evaluate_scores(tmp_path, cli):
    root = make_set(tmp_path / "clean", "Tiny", count=3)
    out = tmp_path / "real"
    assert cli("degrade", f"benchmark_root={root}", f"output={out}", "sets=[Tiny]",
               f"hydra.run.dir={tmp_path / 'run'}", "logger.progress=false") is None
    hr_dir, lr_dir = out / "Tiny" / "X2" / "HR", out / "Tiny" / "X2" / "LR"
    names = sorted(p.name for p in hr_dir.iterdir())
    assert names == sorted(p.name for p in lr_dir.iterdir()) == [f"img_{i}.png" for i in range(3)]
    first = {}
    for name in names:
        src = root / "Tiny" / "X2" / "HR" / name
        assert (hr_dir / name).read_bytes() == src.read_bytes()
        lq = load_image(lr_dir / name)
        first[name] = lq
        assert lq.shape == downscale(mod_crop(load_image(src), 2), 2).shape
        assert np.abs(lq.astype(int) - load_image(root / "Tiny" / "X2" / "LR" / name)).mean() > 1
    record = json.loads((out / "degradation.json").read_text())
    assert record["seed"] == 0 and record["degradation"]["first"]["quality"] == [30, 70]
    # the same seed makes the same set; overwrite is asked for, and refused without it
    assert "overwrite=true" in cli("degrade", f"benchmark_root={root}", f"output={out}",
                                   "sets=[Tiny]", f"hydra.run.dir={tmp_path / 'run2'}")
    assert cli("degrade", f"benchmark_root={root}", f"output={out}", "sets=[Tiny]",
               "overwrite=true", f"hydra.run.dir={tmp_path / 'run3'}",
               "logger.progress=false") is None
    assert all(np.array_equal(load_image(lr_dir / n), lq) for n, lq in first.items())
    scores = {}
    for name, where in (("clean", root), ("real", out)):
        cfg = make_cfg("evaluate", "model=bicubic", f"benchmark_root={where}", "sets=[Tiny]")
        scores[name] = run_job("evaluate", cfg, tmp_path / f"eval_{name}")["sets"]["Tiny"]
    assert scores["real"]["psnr"] < scores["clean"]["psnr"] - 1


def test_degrade_refuses_a_missing_or_clean_output_and_bad_settings(tmp_path):
    root = make_set(tmp_path / "clean", "Tiny")
    for overrides, match in ((["output=null"], "output= is required"),
                             ([f"output={root}"], "benchmark_root itself"),
                             ([f"output={tmp_path / 'o'}", "scale=5"], "scale"),
                             ([f"output={tmp_path / 'o'}", "degradation.first.quality=[30,170]"],
                              "degradation.first.quality")):
        cfg = make_cfg("degrade", f"benchmark_root={root}", "sets=[Tiny]", *overrides)
        with pytest.raises(ConfigError, match=match):
            degrade_job.check(cfg)
    assert not (tmp_path / "o").exists()


def test_a_clean_share_keeps_that_share_of_crops_as_their_bicubic_pair(image_folder,
                                                                         genotype_file):
    cfg = folder_cfg(image_folder, genotype_file, "data.degradation=realistic",
                     "data.realistic.clean=0.3")
    crops = trainer.load_data(cfg, Dist())[0]
    bicubic = trainer.load_data(folder_cfg(image_folder, genotype_file), Dist())[0]
    kept = [torch.equal(crops[i][0], bicubic[i][0]) for i in range(200)]
    assert 0.2 < np.mean(kept) < 0.4  # about the asked share, each a bicubic pair exactly
    assert all(torch.equal(crops[i][1], bicubic[i][1]) for i in range(200))  # same HR crops
    none = trainer.load_data(folder_cfg(image_folder, genotype_file,
                                        "data.degradation=realistic"), Dist())[0]
    assert not any(torch.equal(none[i][0], bicubic[i][0]) for i in range(50))
