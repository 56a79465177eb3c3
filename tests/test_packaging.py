"""What a pip install gets: the shipped models and the config tree travel in the wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

from nas_sr.deploy.predictor import SHIPPED, shipped_models

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_shipped_model_file_and_the_config_tree(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)], check=True,
                   capture_output=True)
    names = set(zipfile.ZipFile(next(tmp_path.glob("nas_sr-*.whl"))).namelist())
    models = {p.relative_to(ROOT).as_posix() for p in SHIPPED.rglob("*") if p.is_file()}
    assert len(models) >= 4 * 4 and models <= names, sorted(models - names)
    configs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "experiments").rglob("*.yaml")}
    assert configs <= names, sorted(configs - names)
    assert {"cell_x2", "searched_x2", "searched_x3", "searched_x4"} <= set(shipped_models())
    assert SHIPPED.parent == ROOT / "nas_sr"  # package data, found from a wheel as from here
