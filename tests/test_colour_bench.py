"""bench.colour scores Y exactly as the evaluate job does, and the chroma planes beside it."""
import pytest

from bench.colour import scores
from conftest import make_cfg, make_set, srcnn_checkpoint
from nas_sr.jobs import evaluate


@pytest.mark.parametrize("model", ["bicubic", "srcnn"])
def test_colour_bench_y_matches_evaluate_and_adds_chroma(tmp_path, model):
    root = make_set(make_set(tmp_path / "bench", "A"), "B", count=3)
    spec = str(srcnn_checkpoint(tmp_path / "srcnn.pt", 2)) if model == "srcnn" else model
    got = scores(spec, root, ["A", "B"], 2)
    cfg = make_cfg("evaluate", f"model={spec}", f"benchmark_root={root}", "sets=[A,B]",
                   "scale=2", "runtime=eager")
    (tmp_path / "eval").mkdir()
    expected = evaluate.run(cfg, tmp_path / "eval")["sets"]
    for name in ("A", "B"):
        y, chroma = got[name]
        assert y == pytest.approx(expected[name]["psnr"], abs=1e-6)
        assert 10 < chroma < 100 and chroma != pytest.approx(y, abs=0.01)
