"""5. Memory: peak resident memory (RSS) of one default search epoch, and of upscaling a
2K image with and without tiling; each measured in its own fresh process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from bench.timing import BENCH_CELL, Row
from nas_sr.archs.build import build_model
from nas_sr.data.sources import builtin_dir
from nas_sr.deploy.pt2 import export_model, save_exported

# The child's own high-water mark: VmHWM belongs to the process image that exec made.
# ru_maxrss does not: Linux carries it over exec from the (v)forked parent, so a child of
# a bench process holding 1 GB would report at least 1 GB whatever it did itself.
PEAK = """import re, resource, sys
from nas_sr.cli import main
main(sys.argv[1:])
try:
    with open("/proc/self/status") as f:
        kb = int(re.search(r"VmHWM:\\s*(\\d+) kB", f.read()).group(1))
except OSError:  # no procfs (macOS): ru_maxrss, in bytes there
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print("PEAK_KB", kb)
"""


def peak_mb(*args: str) -> float:
    done = subprocess.run([sys.executable, "-c", PEAK, *args, "logger.progress=false"],
                          capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("PEAK_KB"))
    return int(line.split()[1]) / 1024


def cell_model(path: Path) -> Path:
    save_exported(export_model(build_model(BENCH_CELL).eval()), BENCH_CELL, path)
    return path


def run(quick: bool) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        search = peak_mb("search", "search.epochs=1", f"hydra.run.dir={t / 'search'}")
        rows.append(Row("memory", "search, 1 default epoch", search, "MB peak RSS",
                        "builtin data, C=32 N=4 supernet, batch 16"))
        photo = Image.open(builtin_dir() / "astronaut.png").convert("RGB")
        photo.resize((2048, 1080), Image.BICUBIC).save(t / "2k.png")
        model = cell_model(t / "cell.pt2")
        for tile in ("256", "null"):
            mb = peak_mb("upscale", f"model={model}", f"input={t / '2k.png'}",
                         f"output={t / 'out'}", "overwrite=true", f"tile={tile}",
                         f"hydra.run.dir={t / 'up'}")
            what = "tiled 256px" if tile != "null" else "untiled"
            rows.append(Row("memory", f"upscale 2048x1080 -> x2, {what}", mb, "MB peak RSS",
                            "cell C=32 N=6, exported"))
    return rows
