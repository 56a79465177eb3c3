"""The toolkit from Python: a job run as the CLI runs it, and an image upscaled."""

import numpy as np
import pytest
from PIL import Image

import nas_sr
from conftest import QUIET, write_image
from nas_sr.errors import ConfigError
from search_spaces.genotypes import load_genotype


@pytest.mark.slow
def test_a_smoke_search_then_a_retrain_from_python(tmp_path):
    found = nas_sr.run("search", *QUIET, run_dir=tmp_path / "search", seed=1,
                       options={"search.epochs": 1})
    assert found.summary["epochs"] == 1 and found.config.seed == 1
    genotype = load_genotype(found.run_dir / "genotype.json")
    assert genotype.to_dict()["nodes"] == found.summary["genotype"]["nodes"]
    trained = nas_sr.run("retrain", *QUIET, run_dir=tmp_path / "retrain",
                         genotype=found.run_dir / "genotype.json")
    assert (trained.run_dir / "best.pt").is_file()
    assert trained.summary["best_val_psnr"] > 0


def test_upscale_image_equals_the_upscale_job(tmp_path):
    photo = write_image(tmp_path / "in" / "photo.png", (40, 52))
    nas_sr.run("upscale", run_dir=tmp_path / "run", model="searched_x2", input=photo,
               output=tmp_path / "out")
    sr = nas_sr.upscale_image("searched_x2", np.asarray(Image.open(photo)))
    assert sr.dtype == np.uint8 and sr.shape == (80, 104, 3)
    assert np.array_equal(sr, np.asarray(Image.open(tmp_path / "out" / "photo.png")))


def test_a_bad_option_is_refused_as_the_cli_refuses_it(tmp_path):
    with pytest.raises(ConfigError, match="search.batch_size=0"):
        nas_sr.run("search", *QUIET, run_dir=tmp_path, options={"search.batch_size": 0})
    with pytest.raises(ConfigError, match="unknown job 'serch'"):
        nas_sr.config("serch")
