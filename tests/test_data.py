import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import SHARED, make_cfg, needs_datasets, write_image
from nas_sr.data.cache import H5Store, open_store
from nas_sr.data.crops import RandomCrops, fixed_crops, min_image_size
from nas_sr.data.images import ImageError, downscale, resize, to_uint8
from nas_sr.data.pairs import (
    ImageSource,
    PairStore,
    load_pairs,
    rescale_factors,
    with_rescaled_copies,
)
from nas_sr.data.sources import resolve_sources
from nas_sr.errors import ConfigError
from nas_sr.options import check_options
from nas_sr.search.supernet import reward_crops, train_store
from nas_sr.train.distributed import Dist
from nas_sr.train.trainer import load_data


def sources(folder):
    return [ImageSource(p) for p in sorted(folder.glob("*.png"))]


def test_crops_are_aligned_and_deterministic(image_folder):
    store = PairStore(load_pairs(sources(image_folder), 2, 16))
    crops = RandomCrops(store, scale=2, patch_size=32, length=8, seed=3)
    lq, gt = crops[5]
    assert lq.shape == (3, 16, 16) and gt.shape == (3, 32, 32)
    torch.testing.assert_close(crops[5][0], lq)  # same (seed, epoch, index) -> same crop
    crops.set_epoch(1)
    assert not torch.equal(crops[5][0], lq)
    assert lq.dtype == torch.float32 and 0 <= float(lq.min()) and float(lq.max()) <= 1


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("augment", [False, True])
def test_each_lr_crop_is_the_bicubic_downscale_of_its_hr_crop(image_folder, scale, augment):
    """Checked crop by crop: the HR crop, downscaled, must give the LR crop. Bicubic commutes
    with flips and 90-degree rotations, so this also proves that HR and LR got the same one:
    any other pairing (or a crop shifted by a pixel) differs by tens of grey levels."""
    store = PairStore(load_pairs(sources(image_folder), scale, 16))
    crops = RandomCrops(store, scale, patch_size=16 * scale, length=40, seed=3, augment=augment)
    margin = 3  # LR pixels whose bicubic kernel reaches past the HR crop's edge
    for i in range(len(crops)):
        lq, gt = crops[i]
        ours = torch.from_numpy(downscale(to_uint8(gt), scale)).permute(2, 0, 1)
        inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
        diff = (ours.float() - (lq * 255).round())[inner].abs().max()
        assert diff <= 1, (i, float(diff))  # 8-bit rounding only


def test_augmentations_cover_the_8_symmetries(tmp_path):
    # one crop position (the crop is the whole image), so only the augmentation varies
    write_image(tmp_path / "square.png", size=(80, 80))
    store = PairStore(load_pairs([ImageSource(tmp_path / "square.png")], 2, 40))
    lq0, gt0 = (t.permute(1, 2, 0).numpy()
                for t in RandomCrops(store, 2, 80, 1, seed=0, augment=False)[0])
    variants = [(np.rot90(lq0, r), np.rot90(gt0, r)) for r in range(4)]
    variants += [(lq[:, ::-1], gt[:, ::-1]) for lq, gt in variants]
    seen = set()
    for seed in range(100):
        lq, gt = (t.permute(1, 2, 0).numpy()
                  for t in RandomCrops(store, 2, 80, 1, seed=seed)[0])
        match = [k for k, (v_lq, v_gt) in enumerate(variants)
                 if np.array_equal(lq, v_lq) and np.array_equal(gt, v_gt)]
        assert len(match) == 1, seed  # LR and HR took the same one of the 8 symmetries
        seen.add(match[0])
    assert seen == set(range(8))


def test_image_smaller_than_a_crop_is_named(tmp_path):
    write_image(tmp_path / "tiny.png", size=(20, 20))
    with pytest.raises(ImageError, match=r"tiny.png: 20x20 pixels is smaller than one 64x64 crop"):
        load_pairs([ImageSource(tmp_path / "tiny.png")], 2, 32)
    write_image(tmp_path / "dot.png", size=(1, 1))  # nothing left to downscale
    with pytest.raises(ImageError, match=r"dot.png: 1x1 pixels \(0x0 after cropping to a "
                                         r"multiple of the scale\) is smaller than 6x6, the "
                                         r"least that downscales x3; remove it"):
        load_pairs([ImageSource(tmp_path / "dot.png")], 3, 1)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5])
def test_images_too_small_to_downscale_are_named_before_any_resize(tmp_path, side):
    """A side under 2 LR pixels made bicubic_pytorch raise an IndexError; the file's own
    size is named, and the mod-cropped one when it differs."""
    write_image(tmp_path / "tiny.png", size=(side, side))
    cropped = side - side % 2
    size = f"{side}x{side} pixels" + (f" \\({cropped}x{cropped} after cropping to a multiple "
                                      "of the scale\\)" if cropped != side else "")
    with pytest.raises(ImageError, match=f"tiny.png: {size} is smaller than one 64x64 crop"):
        load_pairs([ImageSource(tmp_path / "tiny.png")], 2, 32)
    if side < 4:  # whole images (validation): at least 2 LR pixels a side
        with pytest.raises(ImageError, match=f"tiny.png: {size} is smaller than 4x4, the "
                                             "least that downscales x2"):
            load_pairs([ImageSource(tmp_path / "tiny.png")], 2, 1)
    else:
        assert load_pairs([ImageSource(tmp_path / "tiny.png")], 2, 1)[0][1].shape == (2, 2, 3)


def test_small_images_skip_drops_images_too_small_to_downscale(tmp_path, caplog):
    for i in range(8):
        write_image(tmp_path / f"big{i}.png", size=(40, 40), seed=i)
    for side in (1, 2, 3, 5):
        write_image(tmp_path / f"tiny{side}.png", size=(side, side))
    cfg = OmegaConf.create({"name": "folder", "train_dir": str(tmp_path), "val_dir": None,
                            "val_fraction": 0.25, "small_images": "skip"})
    kept = resolve_sources(cfg, 2)
    names = sorted(s.gt.name for group in (kept.train, kept.reward, kept.holdout) for s in group)
    assert names == sorted([f"big{i}.png" for i in range(8)] + ["tiny5.png"])
    assert "3 image(s) under 4x4 pixels, too small to downscale x2, are left out" in caplog.text
    # the others keep their places in the split
    every = resolve_sources(OmegaConf.merge(cfg, {"small_images": "error"}), 2)
    dropped = {"tiny1", "tiny2", "tiny3"}
    assert kept.train == [s for s in every.train if s.gt.stem not in dropped]
    assert kept.holdout == [s for s in every.holdout if s.gt.stem not in dropped]
    assert load_pairs(kept.train, 2, min_image_size(cfg, 64, 2))  # no IndexError
    for i in range(4):
        write_image(tmp_path / "only_tiny" / f"t{i}.png", size=(3, 3), seed=i)
    with pytest.raises(ImageError, match=r"every image of a split .* is under 4x4 pixels"):
        resolve_sources(OmegaConf.merge(cfg, {"train_dir": str(tmp_path / "only_tiny")}), 2)


def test_small_images_skip_leaves_them_out_of_the_crops(tmp_path):
    write_image(tmp_path / "a_tiny.png", size=(20, 20))
    write_image(tmp_path / "b_big.png", size=(80, 96), seed=1)
    data = OmegaConf.create({"small_images": "skip"})
    store = PairStore(load_pairs(sources(tmp_path), 2, min_image_size(data, 64, 2)))
    crops = RandomCrops(store, scale=2, patch_size=64, length=20, seed=0)
    assert crops.images == [1]  # the tiny image is loaded, never cropped
    assert all(crops[i][0].shape == (3, 32, 32) for i in range(20))
    with pytest.raises(ImageError, match="none of the 1 images has an LR side of 32 px"):
        RandomCrops(PairStore(store.pairs[:1]), scale=2, patch_size=64, length=1, seed=0)
    assert min_image_size(OmegaConf.create({"small_images": "error"}), 64, 2) == 32
    assert min_image_size(OmegaConf.create({}), 64, 2) == 32  # a run saved before the option
    with pytest.raises(ConfigError, match="data.small_images='drop': use error or skip"):
        check_options("retrain", make_cfg("retrain", "data.small_images=drop"))


def test_wrong_scale_lr_is_refused(tmp_path):
    gt = write_image(tmp_path / "hr.png", size=(64, 64))
    from PIL import Image
    Image.new("RGB", (20, 20)).save(tmp_path / "lr.png")
    with pytest.raises(ImageError, match="not the HR size 64x64 divided by scale 2"):
        load_pairs([ImageSource(gt, tmp_path / "lr.png")], 2, 8)


def test_folder_split_is_fixed_and_disjoint(image_folder):
    cfg = OmegaConf.create({"name": "folder", "train_dir": str(image_folder), "val_dir": None,
                            "val_fraction": 0.34})
    src = resolve_sources(cfg, 2)
    assert len(src.train) == 4 and len(src.reward) == 1 and len(src.holdout) == 1
    sets = [{s.gt for s in part} for part in (src.train, src.reward, src.holdout)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert resolve_sources(cfg, 2) == src


def test_builtin_split_keeps_each_scene_on_one_side():
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        data = compose("search").data
    src = resolve_sources(data, 2)
    scene = {s.gt.stem.split("_")[0] for s in src.train}
    for part in (src.reward, src.holdout):
        assert part and not scene & {s.gt.stem.split("_")[0] for s in part}
    assert not {s.gt for s in src.reward} & {s.gt for s in src.holdout}


def test_retrain_validation_crops_are_disjoint_from_the_search_reward_crops():
    (_, reward_gt), (_, final_gt) = reward_crops(make_cfg("search"), torch.device("cpu"),
                                                 torch.contiguous_format)
    _, val_sets = load_data(make_cfg("retrain"), Dist())
    reward = {bytes(t.numpy()) for t in reward_gt}
    final = {bytes(t.numpy()) for t in final_gt}
    held = [gt for _, crops in val_sets for gt in crops]
    assert held and len(reward) == len(reward_gt)
    assert not {bytes(t.contiguous().numpy()) for t in held} & (reward | final)


def test_div2k_layout_uses_given_lq(tmp_path):
    root = tmp_path / "DIV2K"
    for split, n in (("train", 3), ("valid", 2)):
        for i in range(n):
            gt = write_image(root / f"DIV2K_{split}_HR" / f"{i:04d}.png", size=(64, 64), seed=i)
            if split == "train":
                from PIL import Image
                lq_dir = root / f"DIV2K_{split}_LR_bicubic" / "X2"
                lq_dir.mkdir(parents=True, exist_ok=True)
                Image.open(gt).resize((32, 32), Image.NEAREST).save(lq_dir / f"{i:04d}x2.png")
    src = resolve_sources(OmegaConf.create({"name": "div2k", "root": str(root)}), 2)
    assert [s.lq is not None for s in src.train] == [True] * 3
    assert src.reward[0].lq is None and src.holdout[0].lq is None
    train = src.train
    gt, lq = load_pairs(train[:1], 2, 8)[0]
    assert not np.array_equal(lq, downscale(gt, 2))  # the given (nearest) LR, not bicubic


def test_h5_cache_equals_memory_and_detects_stale(image_folder, tmp_path):
    src = sources(image_folder)
    path = tmp_path / "cache" / "train.h5"
    store = open_store(src, 2, 16, path)
    assert isinstance(store, H5Store) and len(store) == len(src)
    mem = open_store(src, 2, 16, None)
    for i in range(len(src)):
        for a, b in zip(store.crop(i, 3, 5, 16, 2), mem.crop(i, 3, 5, 16, 2), strict=True):
            np.testing.assert_array_equal(a, b)
    mtime = store.path.stat().st_mtime_ns
    assert open_store(src, 2, 16, path).path.stat().st_mtime_ns == mtime  # fresh: reused
    write_image(src[0].gt, seed=99)  # an image changes -> another file
    os.utime(src[0].gt, ns=(mtime + 10**9, mtime + 10**9))
    old, store = store.path, open_store(src, 2, 16, path)
    assert store.path != old and store.path.parent == path.parent
    np.testing.assert_array_equal(store.crop(0, 0, 0, 16, 2)[1],
                                  open_store(src[:1], 2, 16, None).crop(0, 0, 0, 16, 2)[1])
    # a crop larger than a cached image is still refused with the file's name
    with pytest.raises(ImageError, match="img0.png"):
        open_store(src, 2, 60, path)


def test_rescaled_copies_follow_each_image_with_their_own_bicubic_lr(image_folder):
    """Each copy is the HR image shrunk by its factor (mod-cropped to the scale), its LR is
    that copy's bicubic downscale, and the crops leave out a copy smaller than one crop."""
    pairs = load_pairs(sources(image_folder)[:2], 3, 8)  # 78x96 HR (mod 3) -> 26x32 LR
    out, factors = with_rescaled_copies(pairs, 3, (0.9, 0.5), progress=False)
    assert factors == [1.0, 0.9, 0.5] * 2
    for k, (gt, lq) in enumerate(pairs):
        assert out[3 * k][0] is gt and out[3 * k][1] is lq
        (gt9, lq9), (gt5, lq5) = out[3 * k + 1:3 * k + 3]
        # 0.9: 71x87 HR, 69x87 after mod 3; 0.5: 39x48
        assert gt9.shape == (69, 87, 3) and lq9.shape == (23, 29, 3) and lq5.shape[:2] == (13, 16)
        np.testing.assert_array_equal(gt9, resize(gt, 0.9)[:69, :87])
        np.testing.assert_array_equal(lq9, downscale(gt9, 3))
        np.testing.assert_array_equal(lq5, downscale(gt5, 3))
    crops = RandomCrops(PairStore(out), 3, 48, length=4, seed=0)  # 16px LR crops
    assert crops.images == [0, 1, 3, 4]  # the 13x16 copies are left out
    assert with_rescaled_copies(pairs, 3, (), progress=False) == (pairs, [1.0, 1.0])


def test_rescaled_copies_too_small_to_downscale_are_dropped(tmp_path):
    """A 4x4 HR image at 0.6 is 3x3, 2x2 after mod 2: one LR pixel, which bicubic_pytorch
    cannot make (it raised an IndexError)."""
    pairs = load_pairs([ImageSource(write_image(tmp_path / "a.png", size=(4, 4)))], 2, 1)
    out, factors = with_rescaled_copies(pairs, 2, (0.6,), progress=False)
    assert factors == [1.0] and len(out) == 1
    pairs = load_pairs([ImageSource(write_image(tmp_path / "b.png", size=(8, 8)))], 2, 1)
    out, factors = with_rescaled_copies(pairs, 2, (0.6, 0.3), progress=False)
    assert factors == [1.0, 0.6] and out[1][1].shape == (2, 2, 3)  # 0.6: 5x5, 4x4 after mod 2


@pytest.mark.parametrize("rescale", [[1.0], [0.0], [1.5], [0.9, 0.9], [-0.5], 0.9, "half",
                                     ["x"]])
def test_rescale_factors_outside_0_1_repeated_or_not_a_list_are_refused(rescale):
    with pytest.raises(ConfigError, match="data.rescale"):
        rescale_factors(OmegaConf.create({"rescale": rescale}))
    assert rescale_factors(OmegaConf.create({"rescale": [0.9, 0.6]})) == (0.9, 0.6)
    assert rescale_factors(OmegaConf.create({})) == ()  # a run saved before the option


def test_h5_cache_holds_the_rescaled_copies_and_rebuilds_when_they_change(image_folder,
                                                                         tmp_path):
    src, path = sources(image_folder), tmp_path / "c.h5"
    store = open_store(src, 2, 16, path, rescale=(0.8,))
    mem = open_store(src, 2, 16, None, rescale=(0.8,))
    assert len(store) == len(mem) == 2 * len(src) and store.factors == [1.0, 0.8] * len(src)
    for i in range(len(store)):
        assert store.lq_shape(i) == mem.lq_shape(i)
        for a, b in zip(store.crop(i, 2, 3, 16, 2), mem.crop(i, 2, 3, 16, 2), strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(open_store(src, 2, 16, path)) == len(src)  # other factors: rebuilt
    # a crop too large for the copies but not for the originals is no error: the copies
    # are derived data, left out of the crops; a crop too large for an original is one
    big = open_store(src, 2, 40, path, rescale=(0.8,))
    assert len(big) == 2 * len(src) and min(big.lq_shape(1)) < 40
    with pytest.raises(ImageError, match="img0.png"):
        open_store(src, 2, 41, path, rescale=(0.8,))


def test_data_rescale_reaches_the_training_images_of_retrain_and_search_only():
    plain, plain_val = load_data(make_cfg("retrain"), Dist())
    crops, val_sets = load_data(make_cfg("retrain", "data.rescale=[0.8,0.6]"), Dist())
    assert len(crops.store) == 3 * len(plain.store)
    assert len(val_sets) == len(plain_val)  # not validation
    assert len(train_store(make_cfg("search", "data.rescale=[0.7]"))) == 2 * len(plain.store)
    for job in ("retrain", "search"):  # refused up front, before any image is read
        with pytest.raises(ConfigError, match="data.rescale"):
            check_options(job, make_cfg(job, "data.rescale=[2]"))


def test_two_data_folders_of_one_name_never_share_a_cache(tmp_path):
    """``data=folder`` runs on other folders each train on their own images."""
    cache, runs = tmp_path / "cache", []
    for place, seed in (("a", 0), ("b", 50)):
        for i in range(4):
            write_image(tmp_path / place / "photos" / f"img{i}.png", seed=seed + i)
        cfg = make_cfg("retrain", "data=folder", f"data.train_dir={tmp_path / place / 'photos'}",
                       "data.cache=h5", f"data.cache_dir={cache}", "genotype=searched_x2")
        runs.append((load_data(cfg, Dist())[0].store, resolve_sources(cfg.data, 2).train))
    for store, own in runs:  # side by side: the first still reads its own images
        assert [store.pair(i)[0].tobytes() for i in range(len(own))] == [
            gt.tobytes() for gt, _ in load_pairs(own, 2, 1, progress=False)]
    stores = [store for store, _ in runs]
    assert stores[0].path != stores[1].path
    assert stores[0].path.name.startswith("folder_x2_train_")
    assert len(list(cache.glob("*.h5"))) == 2


def test_a_cache_replaced_under_its_reader_is_refused_not_read(tmp_path):
    one = [ImageSource(write_image(tmp_path / "one" / f"{i}.png", seed=i)) for i in range(3)]
    two = [ImageSource(write_image(tmp_path / "two" / f"{i}.png", seed=9 + i)) for i in range(3)]
    store = open_store(one, 2, 16, tmp_path / "c.h5", progress=False)
    worker = pickle.loads(pickle.dumps(store))  # as a DataLoader worker gets it
    store.crop(0, 0, 0, 8, 2)  # the main process has it open
    other = open_store(two, 2, 16, tmp_path / "d.h5", progress=False)
    os.replace(other.path, store.path)  # another run's rebuild, renamed over it
    with pytest.raises(ImageError, match=rf"{store.path}: the HDF5 cache was replaced by one "
                                         r"of other images while this run used it; run again"):
        worker.crop(0, 0, 0, 8, 2)
    with pytest.raises(ImageError, match="was replaced by one of other images"):
        H5Store(store.path, store.key)
    np.testing.assert_array_equal(store.crop(0, 0, 0, 8, 2)[0],  # its open file: its images
                                  load_pairs(one[:1], 2, 1, progress=False)[0][0][:16, :16])


def test_h5_store_in_dataloader_workers(image_folder, tmp_path):
    store = open_store(sources(image_folder), 2, 16, tmp_path / "c.h5")
    crops = RandomCrops(store, scale=2, patch_size=32, length=8, seed=0)
    batches = list(torch.utils.data.DataLoader(crops, batch_size=4, num_workers=2))
    single = list(torch.utils.data.DataLoader(crops, batch_size=4, num_workers=0))
    for (a, _), (b, _) in zip(batches, single, strict=True):
        torch.testing.assert_close(a, b)


def test_fixed_crops_batch(image_folder):
    store = PairStore(load_pairs(sources(image_folder), 3, 21))
    lq, gt = fixed_crops(store, 3, 64, 5, seed=1)
    assert lq.shape == (5, 3, 21, 21) and gt.shape == (5, 3, 63, 63)


@needs_datasets
def test_shared_training_folder_resolves():
    cfg = OmegaConf.create({"name": "folder", "train_dir": str(SHARED / "train"),
                            "val_dir": None, "val_fraction": 0.1})
    src = resolve_sources(cfg, 2)
    assert len(src.train) == 262 and len(src.reward) == 15 and len(src.holdout) == 14


FRAGMENTATION_PROBE = """
import sys
from pathlib import Path
from nas_sr.data.pairs import ImageSource, load_pairs
def rss_mb():
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024
sources = [ImageSource(p) for p in sorted(Path(sys.argv[1]).iterdir())]
before = rss_mb()
pairs = load_pairs(sources, 2, 1, progress=False)
held = sum(gt.nbytes + lq.nbytes for gt, lq in pairs) / 2**20
print(rss_mb() - before, held)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from procfs")
def test_loading_images_leaves_no_heap_behind(tmp_path):
    # without handing freed memory back, glibc kept ~12x the pixels loaded (646 MB for 55)
    for i in range(60):
        write_image(tmp_path / f"{i:02d}.png", (321, 481), seed=i)  # BSD200's size
    done = subprocess.run([sys.executable, "-c", FRAGMENTATION_PROBE, str(tmp_path)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    grew, held = map(float, done.stdout.split())
    assert grew < 2 * held + 20, f"RSS grew {grew:.0f} MB to hold {held:.0f} MB of pixels"
