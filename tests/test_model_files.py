"""Model files from strangers: loading one never runs its code, and lies are refused."""

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from nas_sr.archs.build import MAX_PARAMS, build_model
from nas_sr.checkpoint import save_atomic
from nas_sr.deploy.predictor import ModelError, load_predictor
from nas_sr.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "cell_x2" / "model.pt2"
PREFIX = "model/"


class Payload:
    """Unpickling this writes a marker file: the proof that a load ran the file's code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def pickled(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def rewrite(source: Path, dest: Path, edit) -> Path:
    """A copy of archive ``source`` with ``edit(name, data) -> data`` applied to each member."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            out.writestr(info, edit(info.filename.removeprefix(PREFIX), src.read(info)))
    return dest


def sample_inputs_payload(marker):
    return lambda name, data: pickled(marker) if name == "data/sample_inputs/model.pt" else data


def pickled_weight_payload(marker):
    def edit(name, data):
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            config["config"]["head.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        return pickled(marker) if name == "data/weights/weight_0" else data
    return edit


def graph_payload(marker):
    """torch parses the graph's shape expressions with sympy.sympify, which is eval."""
    code = f"__import__('builtins').exec(\"open({str(marker)!r}, 'w').write('pwned')\")"

    def edit(name, data):
        if name == "models/model.json":
            text = data.decode()
            first = text.index('"expr_str": "') + len('"expr_str": "')
            end = text.index('"', first)
            return (text[:first] + code.replace('"', '\\"') + text[end:]).encode()
        return data
    return edit


@pytest.mark.parametrize("craft", [sample_inputs_payload, graph_payload])
def test_a_crafted_pt2_loads_without_running_its_payload(tmp_path, craft):
    marker = tmp_path / "pwned"
    evil = rewrite(SHIPPED, tmp_path / "model.pt2", craft(marker))
    predictor = load_predictor(str(evil), 2)
    assert not marker.exists(), "loading the archive ran code from it"
    shipped = load_predictor(str(SHIPPED), 2).model.state_dict()
    for key, value in predictor.model.state_dict().items():
        assert torch.equal(value, shipped[key]), key


def test_a_pickled_weight_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    evil = rewrite(SHIPPED, tmp_path / "model.pt2", pickled_weight_payload(marker))
    with pytest.raises(ModelError, match="model.pt2: weight 'head.weight' is stored pickled"):
        load_predictor(str(evil), 2)
    assert not marker.exists()


def test_the_shipped_model_loads_and_equals_the_exported_program():
    predictor = load_predictor(str(SHIPPED), 2)
    assert predictor.arch["name"] == "cell" and predictor.scale == 2
    x = torch.rand(1, 3, 21, 17)
    with torch.no_grad():  # our own file: torch.export.load is fine on it
        expected = torch.export.load(SHIPPED).module()(x)
        assert (predictor.model(x) - expected).abs().max() < 1e-5


def lying_metadata(arch):
    return lambda name, data: json.dumps(arch).encode() if name == "extra/nas_sr.json" else data


@pytest.mark.parametrize("arch, message", [
    ({"name": "srcnn", "scale": 2}, r"weights do not match the 'srcnn' model its nas_sr.json "
                                    r"describes \(\d+ names differ"),
    ({"name": "cell", "scale": 3, "channels": 32, "cells": 6,
      "genotype": json.loads((SHIPPED.parent / "genotype.json").read_text())},
     r"weight 'tail.0.weight' is not a plain float32 \(27, 32, 3, 3\) tensor"),
    ({"name": "cell", "scale": 2}, r"nas_sr.json is not a valid nas-sr arch spec"),
    ({"name": "vdsr", "scale": 2, "depth": 10**6}, r"depth=1000000: must be whole numbers"),
    ({"name": "cell", "scale": 2, "channels": 32, "cells": 6, "recursions": 10**6,
      "genotype": json.loads((SHIPPED.parent / "genotype.json").read_text())},
     r"recursions=1000000: must be whole numbers in 1..16"),
    ([1, 2], r"nas_sr.json is not a valid nas-sr arch spec"),
])
def test_a_foreign_pt2_with_a_lying_spec_is_refused(tmp_path, arch, message):
    liar = rewrite(SHIPPED, tmp_path / "model.pt2", lying_metadata(arch))
    with pytest.raises(ModelError, match=message):
        load_predictor(str(liar))


def test_a_tiny_checkpoint_with_a_huge_arch_is_refused_before_allocating(tmp_path):
    huge = {"name": "edsr_baseline", "scale": 2, "blocks": 1000, "channels": 1024}
    save_atomic({"arch": huge, "model": {}}, tmp_path / "huge.pt")
    assert (tmp_path / "huge.pt").stat().st_size < 4096
    with pytest.raises(ModelError, match=f"would have .* parameters \\(at most {MAX_PARAMS:,}"):
        load_predictor(str(tmp_path / "huge.pt"))
    with pytest.raises(ConfigError, match="channels=0: must be whole numbers"):
        build_model({"name": "cell", "scale": 2, "channels": 0, "cells": 1, "genotype": {}})


@pytest.mark.parametrize("weights", [[1, 2], {"head.weight": "not a tensor"}])
def test_a_checkpoint_whose_weights_are_not_a_state_dict_is_named(tmp_path, weights):
    save_atomic({"arch": {"name": "srcnn", "scale": 2}, "model": weights}, tmp_path / "odd.pt")
    with pytest.raises(ModelError, match="odd.pt: cannot be loaded as a nas-sr checkpoint"):
        load_predictor(str(tmp_path / "odd.pt"))


@pytest.mark.parametrize("extra, message", [
    ({"separable": 5}, r"arch separable=5: must be a dict"),
    ({"separable": {"keep_ends": "yes"}}, r"separable.keep_ends='yes': must be true or false"),
    ({"shrink": {"nope": {"out": 4, "into": []}}}, r"arch shrink: 'nope' is not a conv of"),
    ({"shrink": {"head": {"out": -1, "into": []}}}, r"arch shrink: 'head': .* is not \{'out'"),
    ({"shrink": {"head": {"out": 8, "into": "tail"}}}, r"arch shrink: 'head': .* is not \{'out'"),
    ({"prune": [1]}, r"arch prune=\[1\]: must be a dict"),
])
def test_a_pt2_with_a_malformed_lightening_entry_is_refused(tmp_path, extra, message):
    """``nas-sr compress``'s spec entries rebuild structure: a stranger's are bounded too."""
    arch = {**load_predictor(str(SHIPPED)).arch, **extra}
    liar = rewrite(SHIPPED, tmp_path / "model.pt2", lying_metadata(arch))
    with pytest.raises(ModelError, match=r"nas_sr.json is not a valid nas-sr arch spec .*"
                                         + message):
        load_predictor(str(liar))


def test_init_from_a_shipped_pt2_takes_its_weights_without_its_checkpoint():
    from nas_sr.deploy.pt2 import load_exported
    from nas_sr.train.trainer import init_from

    exported, arch = load_exported(SHIPPED)
    x3 = build_model({**arch, "scale": 3})  # a new upsampler, the body from the x2 file
    assert init_from(x3, SHIPPED) == ["tail.0.bias", "tail.0.weight"]
    torch.testing.assert_close(x3.cells[-1].combine.weight, exported.cells[-1].combine.weight)


def test_a_size_mismatch_is_named_with_the_overrides_that_make_init_from_fit():
    from nas_sr.archs.build import shape_mismatch
    from nas_sr.deploy.pt2 import read_model_file
    from nas_sr.jobs.retrain import model_spec
    from nas_sr.train.trainer import init_from

    source = read_model_file(SHIPPED)["arch"]
    small = model_spec(make_cfg("retrain", "genotype=cell_x2", "scale=3"))  # 8 x 2
    why = shape_mismatch(source, small)
    with pytest.raises(ConfigError, match=re.escape(f"none of its tensors fits this model "
                                                    f"({why})")):
        init_from(build_model(small), SHIPPED, small)
    assert why.startswith(f"channels {source['channels']} vs {small['channels']}, cells "
                          f"{source['cells']} vs {small['cells']}: pass "), why
    fixed = model_spec(make_cfg("retrain", "genotype=cell_x2", "scale=3",
                                *why.partition(": pass ")[2].split()))
    assert shape_mismatch(source, fixed) == ""
    assert init_from(build_model(fixed), SHIPPED) == ["tail.0.bias", "tail.0.weight"]
    assert shape_mismatch(source, {**small, "name": "vdsr"}).endswith("pass model=cell")
