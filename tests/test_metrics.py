"""The metric protocol against values worked out by hand: no datasets needed."""

import math

import pytest
import torch

from nas_sr.metrics import psnr_cbcr, psnr_y, quantize, rgb_to_cbcr, rgb_to_y, ssim_y

Y_PER_GRAY = (65.481 + 128.553 + 24.966) / 255  # Y rises 219/255 per grey level


def gray(value: float, size: int = 8) -> torch.Tensor:
    return torch.full((3, size, size), float(value))


def test_y_is_bt601_on_16_to_235():
    assert float(rgb_to_y(gray(0)).mean()) == pytest.approx(16.0)
    assert float(rgb_to_y(gray(255)).mean()) == pytest.approx(235.0)
    red = torch.zeros(3, 2, 2)
    red[0] = 255
    assert float(rgb_to_y(red).mean()) == pytest.approx(16 + 65.481)


def test_cbcr_is_bt601_on_16_to_240():
    assert rgb_to_cbcr(gray(0)).mean(dim=(-2, -1)).tolist() == pytest.approx([128, 128])
    assert rgb_to_cbcr(gray(255)).mean(dim=(-2, -1)).tolist() == pytest.approx([128, 128])
    blue, red = torch.zeros(3, 2, 2), torch.zeros(3, 2, 2)
    blue[2], red[0] = 255, 255
    assert rgb_to_cbcr(blue)[0].mean().item() == pytest.approx(240)  # Cb's peak
    assert rgb_to_cbcr(red)[1].mean().item() == pytest.approx(240)  # Cr's peak


def test_chroma_psnr_sees_colour_errors_and_y_psnr_does_not():
    grey_shift = gray(110) - gray(100)  # all in Y
    colour = torch.linalg.cross(torch.tensor([65.481, 128.553, 24.966]), torch.ones(3))
    tint = gray(100) + 10 * (colour / colour.abs().max()).view(3, 1, 1)  # no change in Y
    identical = 10 * math.log10(255**2 / 1e-10)
    assert float(psnr_cbcr(gray(100) + grey_shift, gray(100), 0)) == pytest.approx(identical)
    assert float(psnr_y(tint, gray(100), 0)) == pytest.approx(identical)
    assert float(psnr_cbcr(tint, gray(100), 0)) < 40
    batch = torch.stack([tint, gray(100)])
    assert psnr_cbcr(batch, torch.stack([gray(100)] * 2), 0).shape == (2,)


def test_psnr_of_a_uniform_offset():
    # every Y pixel is off by 10 * 219/255: PSNR = 20 log10(255 / that)
    expected = 20 * math.log10(255 / (10 * Y_PER_GRAY))
    assert float(psnr_y(gray(10), gray(0), shave=0)) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(29.452, abs=1e-3)


def test_shave_drops_exactly_scale_pixels_per_border():
    gt, sr = gray(100), gray(100)
    sr[:, :2], sr[:, -2:], sr[:, :, :2], sr[:, :, -2:] = 120, 120, 120, 120  # a 2-px ring
    identical = 10 * math.log10(255**2 / 1e-10)  # the clamp that keeps identical images finite
    assert float(psnr_y(sr, gt, shave=2)) == pytest.approx(identical)
    for shave, side in ((0, 8), (1, 6)):  # what is left: side x side, of which the middle
        wrong = 1 - 4 * 4 / side**2       # 4 x 4 is right and the rest is 20 grey levels off
        expected = 10 * math.log10(255**2 / (wrong * (20 * Y_PER_GRAY) ** 2))
        assert float(psnr_y(sr, gt, shave=shave)) == pytest.approx(expected, abs=1e-9)


def test_a_batch_gives_one_value_per_image():
    sr = torch.stack([gray(10), gray(0)])
    values = psnr_y(sr, torch.zeros_like(sr), shave=0)
    assert values.shape == (2,)
    assert float(values[0]) == pytest.approx(10 * math.log10(255**2 / (10 * Y_PER_GRAY) ** 2))
    assert float(values[1]) == pytest.approx(10 * math.log10(255**2 / 1e-10))  # identical


def test_quantize_clamps_and_rounds_to_8_bits():
    x = torch.tensor([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 100.4 / 255, 1.3])
    assert quantize(x).tolist() == [0.0, 0.0, 0.0, 1.0, 100.0, 255.0]


@pytest.mark.parametrize("metric", [psnr_y, psnr_cbcr, ssim_y])
def test_shape_mismatch_raises(metric):
    with pytest.raises(ValueError, match=r"shapes differ: \(3, 8, 8\) vs \(3, 8, 6\)"):
        metric(gray(0), gray(0)[..., :6], 2)
    with pytest.raises(ValueError, match="shapes differ"):
        metric(gray(0)[None].repeat(2, 1, 1, 1), gray(0), 2)  # a batch vs one image
