import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED, needs_datasets, write_image
from nas_sr.data.images import (
    ImageError,
    downscale,
    list_images,
    load_image,
    mod_crop,
    to_tensor,
    to_uint8,
)
from nas_sr.metrics import psnr_y


def test_grayscale_rgba_palette_16bit_become_8bit_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 7, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    for name in ("gray", "rgba", "palette", "gray16"):
        img = load_image(tmp_path / f"{name}.png")
        assert img.shape == (20, 30, 3) and img.dtype == np.uint8, name
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb)  # alpha dropped
    gray = load_image(tmp_path / "gray.png")
    np.testing.assert_array_equal(gray[..., 0], rgb[..., 0])
    np.testing.assert_array_equal(gray[..., 2], rgb[..., 0])
    np.testing.assert_array_equal(load_image(tmp_path / "gray16.png")[..., 0], rgb[..., 0])


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write it
    img = np.zeros((20, 30, 3), np.uint8)
    img[:8, :8] = 255  # a bright top-left corner shows which way the picture turned
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    shown = load_image(tmp_path / "phone.jpg")
    assert shown.shape == (30, 20, 3)
    # turned clockwise: the corner is now top right (JPEG blurs its edge by a few levels)
    assert np.abs(shown.astype(int) - np.rot90(img, k=-1)).mean() < 2


def test_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ImageError, match="broken.png: cannot be read as an image"):
        load_image(bad)


def test_truncated_png_is_named(tmp_path):
    path = write_image(tmp_path / "t.png", size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.png"):
        load_image(path)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ImageError, match="empty: no images found"):
        list_images(tmp_path / "empty")
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "nope")


def test_mod_crop():
    assert mod_crop(np.zeros((11, 13, 3)), 4).shape == (8, 12, 3)


@needs_datasets
def test_bicubic_matches_matlab_made_lr_images():
    """Our LR equals MATLAB imresize's given LR images (Set5/Set14, x2-x4) to >= 45 dB."""
    values = []
    for scale in (2, 3, 4):
        for gt_path in sorted((SHARED / "benchmark").glob(f"Set*/X{scale}/HR/*.png")):
            gt = load_image(gt_path)
            given = load_image(gt_path.parent.parent / "LR" / gt_path.name)
            ours = downscale(gt, scale)
            assert ours.shape == given.shape
            ours, given = (torch.from_numpy(a).permute(2, 0, 1) for a in (ours, given))
            values.append(float(psnr_y(ours, given, shave=0)))
    assert len(values) == 3 * (5 + 14)
    assert np.mean(values) > 55 and min(values) > 45, (np.mean(values), min(values))


def test_one_to_tensor_for_an_image_a_crop_view_and_a_batch_of_frames():
    frames = np.random.default_rng(0).integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    batch = to_tensor(frames)
    assert batch.shape == (4, 3, 6, 5) and batch.dtype == torch.float32
    assert torch.equal(batch[1], to_tensor(frames[1]))
    assert torch.equal(batch[1, :, 2, 3], torch.from_numpy(frames[1, 2, 3]).float() / 255)
    flipped = frames[0, :, ::-1]  # a view, as the crops' augmentation makes
    assert torch.equal(to_tensor(flipped), to_tensor(frames[0]).flip(-1))
    np.testing.assert_array_equal(to_uint8(batch), frames)  # and back
    np.testing.assert_array_equal(to_uint8(to_tensor(frames[2])), frames[2])
