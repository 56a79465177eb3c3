#!/usr/bin/env bash
# Every CUDA path of the toolkit once, on one GPU, in a few minutes: run it first whenever a
# GPU is at hand, and fix what breaks before anything else. One line per step with its time;
# the first failure stops the script, prints its log's tail and exits non-zero.
#
#   bash bench/gpu_check.sh            # NAS_SR=..., PYTHON=... to use another install
#   DEVICE=cpu bash bench/gpu_check.sh # the same steps on the CPU: checks the script itself
#
# Steps: a smoke search (fp32, then bf16 autocast), a few hundred retrain steps with AMP,
# evaluate on Set5 (where ../shared/datasets is), export to .pt2 and ONNX, ONNX Runtime on
# CUDA (fp32 and fp16, where onnxruntime-gpu is installed), upscale a photo and a clip, and
# DDP under torchrun with one process.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
NAS_SR=${NAS_SR:-.venv/bin/nas-sr}
OUT=${OUT:-runs/gpu_check}
DEVICE=${DEVICE:-cuda}
rm -rf "$OUT" && mkdir -p "$OUT"

step() {  # step NAME COMMAND...: run it, its output in $OUT/NAME.log
  local name=$1 start=$SECONDS
  shift
  if "$@" >"$OUT/$name.log" 2>&1; then
    printf '%-16s ok    %4d s\n' "$name" $((SECONDS - start))
  else
    printf '%-16s FAIL  %4d s  (%s)\n' "$name" $((SECONDS - start)) "$OUT/$name.log"
    tail -n 25 "$OUT/$name.log"
    exit 1
  fi
}

[ "$DEVICE" = cpu ] || step cuda "$PYTHON" -c "
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f'no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda}) sees none')
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))"

RUN="device=$DEVICE logger.progress=false"
step search "$NAS_SR" search preset=smoke $RUN hydra.run.dir="$OUT/search"
step search_bf16 "$NAS_SR" search preset=smoke $RUN search.amp=true \
  hydra.run.dir="$OUT/search_bf16"
step retrain_amp "$NAS_SR" retrain preset=smoke $RUN genotype="$OUT/search/genotype.json" \
  train.amp=true train.epochs=3 train.iters_per_epoch=100 train.batch_size=16 \
  hydra.run.dir="$OUT/retrain"
if [ -d ../shared/datasets/benchmark ]; then
  step evaluate "$NAS_SR" evaluate $RUN model="$OUT/retrain/best.pt" sets=[Set5] \
    hydra.run.dir="$OUT/evaluate"
else
  echo "evaluate         skipped: ../shared/datasets/benchmark is absent"
fi
step export "$NAS_SR" export checkpoint="$OUT/retrain/best.pt" output="$OUT/model" \
  hydra.run.dir="$OUT/export"
step onnx_cuda "$PYTHON" - "$OUT/model/model.onnx" <<'EOF'
import sys
import numpy as np
import onnxruntime as ort
if "CUDAExecutionProvider" not in ort.get_available_providers():
    print("skipped: this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    sys.exit(0)
from onnxruntime.transformers.float16 import convert_float_to_float16
import onnx
model = onnx.load(sys.argv[1])
x = np.random.default_rng(0).random((1, 3, 96, 128), dtype=np.float32)
cpu = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).run(None, {"lq": x})[0]
for name, proto in (("fp32", model), ("fp16", convert_float_to_float16(model, keep_io_types=True))):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CUDAExecutionProvider"])
    out = sess.run(None, {"lq": x})[0]
    levels = np.abs(np.round(out.clip(0, 1) * 255) - np.round(cpu.clip(0, 1) * 255)).max()
    print(name, "max 8-bit levels from the CPU run:", levels)
    if levels > (1 if name == "fp32" else 4):
        sys.exit(f"{name} on CUDA is {levels} levels off the CPU run")
EOF
step clip "$PYTHON" - "$OUT/clip.mp4" <<'EOF'
import sys
import av
import numpy as np
with av.open(sys.argv[1], "w") as out:
    stream = out.add_stream("libx264", rate=24)
    stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
    for i in range(48):
        img = np.full((180, 320, 3), (i * 5) % 255, np.uint8)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
    out.mux(stream.encode())
EOF
step upscale_photo "$NAS_SR" upscale $RUN model="$OUT/model/model.pt2" \
  input="$("$PYTHON" -c 'from nas_sr.data.sources import builtin_dir; print(builtin_dir() / "astronaut.png")')" \
  output="$OUT/photo" hydra.run.dir="$OUT/upscale_photo"
step upscale_clip "$NAS_SR" upscale $RUN model="$OUT/model/model.pt2" input="$OUT/clip.mp4" \
  output="$OUT/video" hydra.run.dir="$OUT/upscale_clip"
step ddp "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 -m nas_sr.cli \
  retrain preset=smoke $RUN genotype="$OUT/search/genotype.json" hydra.run.dir="$OUT/ddp"
echo "every step passed on $DEVICE; logs in $OUT"
