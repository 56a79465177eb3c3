"""int8 inference: ONNX Runtime's post-training static quantization of ``model.onnx``.

``quantize_onnx`` writes QDQ nodes with ``onnxruntime.quantization``: int8 weights per
output channel and uint8 activations (the pairing x86's integer kernels run fastest), the
activation ranges from the 99.999th percentile over training crops, the first and last
convs kept in fp32. The file, ``model.int8.onnx``, carries the arch spec and an
``int8_check``: the Y-PSNR of the int8 and fp32 models on a real photograph against its
HR, and the 8-bit levels between them.
``runtime=auto`` runs the int8 model only where that check says it loses at most
``MAX_PSNR_LOSS`` dB; ``runtime=int8`` runs it regardless.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas_sr.archs.luma import Model, as_rgb, colors, rgb_to_luma
from nas_sr.data.images import downscale, load_image, mod_crop, to_tensor
from nas_sr.data.sources import builtin_dir
from nas_sr.deploy.onnx_model import INPUT, OnnxModel, levels_apart, with_metadata
from nas_sr.deploy.pt2 import EXPORT_METADATA
from nas_sr.metrics import psnr_y, quantize

INT8_FILE = "model.int8.onnx"
MAX_PSNR_LOSS = 0.05  # dB on the check photograph: the most runtime=auto gives up for speed
CALIBRATION = ("coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")  # not the check
CALIBRATION_CROP = 96  # LR pixels a side


def kept_fp32(convs: list[str]) -> list[str]:
    """The convs left in fp32: the first (RGB in) and the last (the upsampler's): measured on
    the shipped x2 model, quantizing them cost 0.05 dB more than all the others together."""
    return [convs[0], convs[-1]] if len(convs) > 1 else []


def calibration_crops(scale: int, per_image: int = 4) -> list[np.ndarray]:
    """LR crops of the bundled photographs (the check photograph excluded), NCHW float32."""
    crops = []
    rng = np.random.default_rng(0)
    for name in CALIBRATION:
        lq = downscale(mod_crop(load_image(builtin_dir() / name), scale), scale)
        h, w = lq.shape[:2]
        size = min(CALIBRATION_CROP, h, w)
        for _ in range(per_image):
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            crops.append(to_tensor(lq[y:y + size, x:x + size])[None].numpy())
    return crops


def quantize_onnx(data: bytes, crops: list[np.ndarray]) -> bytes:
    """``data`` (an fp32 ``model.onnx``) quantized to int8 QDQ, calibrated on ``crops``."""
    import onnx  # noqa: PLC0415  (only export quantizes)
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            crop = next(self.left, None)
            return None if crop is None else {INPUT: crop}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(data)
        # (no graph optimization: it fuses into com.microsoft ops, which read_onnx refuses)
        quant_pre_process(str(fp32), str(prepared), skip_optimization=True,
                          skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        # reduce_range: 7-bit weights, so a CPU without VNNI (AVX2's u8*s8 pairs summed in
        # int16) cannot saturate; on an AVX2 EPYC it cut pixels off by >3 levels 1.27%->0.82%
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator narrates each pass
            quantize_static(str(prepared), str(int8), Crops(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=kept_fp32(convs),
                            calibrate_method=CalibrationMethod.Percentile)
        proto = onnx.load(str(int8))
    # the quantizer's own notes (onnx.infer, ...) are not nas-sr's JSON metadata: dropped
    kept = [prop for prop in proto.metadata_props if not prop.key.startswith("onnx.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    return proto.SerializeToString()


def int8_check(fp32: Model, int8: Model, scale: int) -> dict[str, Any]:
    """Both models on a real photograph: Y-PSNR against its HR, and their 8-bit distance."""
    gt = mod_crop(load_image(builtin_dir() / "astronaut.png"), scale)
    lq, hr = to_tensor(downscale(gt, scale))[None], to_tensor(gt)[None]
    with torch.inference_mode():
        a, b = fp32(lq), int8(lq)
    psnr = {name: float(psnr_y(quantize(out), quantize(hr), scale))
            for name, out in (("fp32", a), ("int8", b))}
    loss = psnr["fp32"] - psnr["int8"]
    return {"image": f"scikit-image astronaut, x1/{scale} bicubic", "psnr_fp32": psnr["fp32"],
            "psnr_int8": psnr["int8"], "psnr_loss": loss, "verified": loss <= MAX_PSNR_LOSS,
            **{k: v for k, v in levels_apart(b, a).items() if k != "agrees"}}


def int8_model(fp32_data: bytes, arch: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The int8 model of an fp32 ``model.onnx`` of ``arch``, with the arch spec and its
    check in its metadata."""
    scale = int(arch["scale"])
    crops = calibration_crops(scale)
    if colors(arch) == 1:  # the network on Y alone is quantized: calibrated on Y
        crops = [rgb_to_luma(torch.from_numpy(c)).numpy() for c in crops]
    data = quantize_onnx(fp32_data, crops)
    check = int8_check(as_rgb(OnnxModel(fp32_data), arch), as_rgb(OnnxModel(data), arch), scale)
    return with_metadata(data, {EXPORT_METADATA: arch, "int8_check": check}), check
