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

ROOT_DIR = Path(__file__).resolve().parents[1]
SHIPPED = ROOT_DIR / "nas_sr" / "models" / "cell_x2" / "model.pt2"
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
    ({"name": "cell", "scale": 2, "channels": 32, "cells": 6, "upsampler": "deconv",
      "genotype": json.loads((SHIPPED.parent / "genotype.json").read_text())},
     r"upsampler='deconv': one of conv3, conv1"),
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


# --- model.safetensors and the model cards -------------------------------------------------
MODELS = sorted((SHIPPED.parents[1]).glob("*/model.pt2"))
CARDS = [p.with_name("MODEL_CARD.md") for p in MODELS]
REQUIRED = ("license", "library_name", "tags", "datasets", "metrics", "params", "mult_adds",
            "model-index")


@pytest.mark.parametrize("pt2", MODELS, ids=lambda p: p.parent.name)
def test_every_shipped_safetensors_equals_its_pt2_weights(pt2):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from nas_sr.archs.lighten import folded
    from nas_sr.deploy.pt2 import load_exported
    from nas_sr.deploy.weights import ARCH_KEY

    model, arch = load_exported(pt2)
    stored = load_file(pt2.with_name("model.safetensors"))
    with safe_open(pt2.with_name("model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()[ARCH_KEY]) == folded(arch)
    state = model.state_dict()
    assert stored.keys() == state.keys()
    assert all(torch.equal(stored[k], v) for k, v in state.items())


def lying_safetensors(tmp_path: Path, edit) -> Path:
    """The shipped x2 weights under a metadata ``edit(metadata)`` returns."""
    from safetensors.torch import load_file, save_file

    from nas_sr.deploy.weights import ARCH_KEY

    source = SHIPPED.with_name("model.safetensors")
    arch = json.loads(json.dumps(load_predictor(str(SHIPPED)).arch))
    path = tmp_path / "model.safetensors"
    save_file(load_file(source), path, metadata=edit({ARCH_KEY: json.dumps(arch)}, arch))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda m, a: {**m, "nas_sr.arch": json.dumps({**a, "scale": 3})},
     r"weight 'tail.0.weight' is F32 \(12, 32, 3, 3\), not the float32 \(27, 32, 3, 3\)"),
    (lambda m, a: {**m, "nas_sr.arch": json.dumps({**a, "channels": 16})},
     r"weight '.*' is F32 \(.*\), not the float32 .* tensor the arch spec"),
    (lambda m, a: {**m, "nas_sr.arch": json.dumps({"name": "srcnn", "scale": 2})},
     r"weights do not match the 'srcnn' model its nas_sr.arch describes"),
    (lambda m, a: {**m, "nas_sr.arch": json.dumps({**a, "cells": 10**6})},
     r"nas_sr.arch is not a valid nas-sr arch spec \(arch cells=1000000"),
    (lambda m, a: {**m, "nas_sr.arch": "[1, 2"}, r"nas_sr.arch is not a JSON arch spec"),
    (lambda m, a: {}, r"has no nas_sr.arch in its metadata"),
])
def test_a_safetensors_whose_metadata_lies_is_refused(tmp_path, edit, message):
    from nas_sr.deploy.weights import load_safetensors

    with pytest.raises(ModelError, match=message):
        load_safetensors(lying_safetensors(tmp_path, edit))


def test_a_damaged_safetensors_is_named(tmp_path):
    from nas_sr.deploy.weights import load_safetensors

    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_safetensors(tmp_path / "model.safetensors")


def front_matter_of(card: Path) -> dict:
    import yaml

    text = card.read_text()
    assert text.startswith("---\n"), f"{card}: no front matter"
    return yaml.safe_load(text[4:].partition("\n---\n")[0])


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.parent.name)
def test_every_card_has_hub_front_matter_and_ends_with_its_notes(card):
    from nas_sr.deploy.card import split_notes

    meta = front_matter_of(card)
    assert [k for k in REQUIRED if k not in meta] == []
    assert meta["license"] == "mit" and meta["library_name"] == "nas-sr"
    assert {"super-resolution", "neural-architecture-search"} <= set(meta["tags"])
    assert meta["datasets"] == ["T91", "BSD200"] and meta["metrics"] == ["psnr", "ssim"]
    assert isinstance(meta["params"], int) and isinstance(meta["mult_adds"], int)
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["name"] for r in results] == ["Set5", "Set14", "validation images"]
    scale = int(card.parent.name[-1])
    for metric in (m for r in results for m in r["metrics"]):
        assert metric["name"].endswith(f"on Y of YCbCr, {scale} px shaved, 8-bit outputs")
    text = card.read_text()
    assert "## How to use" in text and "## Limitations" in text and "model.safetensors" in text
    assert ('session.run(None, {"lq": ' in text) == card.with_name("model.onnx").is_file()
    # the card's tail is its notes (docs/cards), their front matter merged into the card's
    notes = (ROOT_DIR / "docs" / "cards" / f"{card.parent.name}.md").read_text()
    meta_notes, body = split_notes(notes)
    assert text.endswith(body) and meta_notes["datasets"] == meta["datasets"]


def test_a_card_merges_its_notes_front_matter_and_says_unknown_without():
    from nas_sr.deploy.card import front_matter, split_notes

    sizes = {"params": 1000, "mult_adds": 5000}
    meta, body = split_notes("---\ndatasets: [DIV2K]\nresults: {Set5: {psnr: 30.5}}\n---\n\n"
                             "## How it was made\n")
    assert body == "## How it was made\n"
    import yaml

    merged = yaml.safe_load(front_matter("cell", 3, sizes, {"val_psnr": 29.0}, meta)[4:-3])
    assert merged["datasets"] == ["DIV2K"] and merged["metrics"] == ["psnr"]
    results = merged["model-index"][0]["results"]
    assert [(r["dataset"]["name"], r["metrics"][0]["value"]) for r in results] == [
        ("Set5", 30.5), ("validation images", 29.0)]
    single = yaml.safe_load(front_matter("cell", 3, sizes, {}, {"datasets": "DIV2K"})[4:-3])
    assert single["datasets"] == ["DIV2K"]
    bare = yaml.safe_load(front_matter("srcnn", 2, sizes, {}, {})[4:-3])
    assert bare["datasets"] == ["unknown"] and bare["metrics"] == [] and "model-index" not in bare


@pytest.mark.parametrize("notes", ["---\n[1, 2\n---\n", "---\n- a list\n---\n",
                                   "---\nresults: {Set5: 37}\n---\n"])
def test_card_notes_with_a_malformed_front_matter_are_refused_before_export(tmp_path, notes):
    from nas_sr.deploy.card import read_notes

    (tmp_path / "notes.md").write_text(notes)
    with pytest.raises(ConfigError, match=r"card_notes=.*notes.md: (its )?front matter"):
        read_notes(tmp_path / "notes.md")


def test_a_card_says_what_its_model_was_trained_for_and_the_page_labels_it(tmp_path):
    from nas_sr.deploy.card import card_degradation, card_front, how_to_use, read_notes
    from nas_sr.web.catalog import load_catalog

    realistic = "\n".join(how_to_use(2, False, "realistic"))
    assert "realistic degradations" in realistic and "clean images:" not in realistic
    assert "bicubic downscaling of clean images" in "\n".join(how_to_use(2, False))
    (tmp_path / "notes.md").write_text("---\ndegradation: gan\n---\n")
    with pytest.raises(ConfigError, match="degradation: 'gan'"):
        read_notes(tmp_path / "notes.md")
    (tmp_path / "notes.md").write_text("---\nspeed: ludicrous\n---\n")
    with pytest.raises(ConfigError, match="speed: 'ludicrous'"):
        read_notes(tmp_path / "notes.md")
    kinds = {card.parent.name: card_degradation(card.with_name("model.pt2")) for card in CARDS}
    assert set(kinds.values()) <= {"bicubic", "realistic"} and kinds["searched_x2"] == "bicubic"
    labels = {e.name: e.label for e in load_catalog(
        ROOT_DIR / "nas_sr" / "models", None, torch.device("cpu"), runtime="eager").values()}
    for name, kind in kinds.items():
        assert ("clean images" in labels[name]) == (kind == "bicubic"), labels[name]
        assert ("real photos" in labels[name]) == (kind == "realistic"), labels[name]
        realtime = card_front(ROOT_DIR / "nas_sr" / "models" / name / "model.pt2").get("speed")
        assert ("fast: real-time video" in labels[name]) == (realtime == "realtime")
    assert "clean" not in labels["bicubic_x2"]
