"""ONNX export and the ONNX Runtime path of evaluate / upscale."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from test_export_upscale import ARCH, real_lq

from conftest import make_cfg, make_set
from nas_sr.archs.build import build_model
from nas_sr.checkpoint import save_atomic
from nas_sr.data.images import to_tensor
from nas_sr.deploy.onnx_model import levels_apart, load_onnx, read_onnx, with_metadata
from nas_sr.deploy.predictor import load_predictor, super_resolve
from nas_sr.deploy.pt2 import EXPORT_METADATA, ModelError
from nas_sr.errors import ConfigError
from nas_sr.jobs import evaluate, export
from nas_sr.options import check_options

SHIPPED = Path(__file__).resolve().parents[1] / "nas_sr" / "models" / "searched_x2" / "model.pt2"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random tiny cell net (every op) exported to model.pt2 + model.onnx."""
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    save_atomic({"arch": ARCH, "model": build_model(ARCH).state_dict()}, root / "cell.pt")
    result = export.run(make_cfg("export", f"checkpoint={root / 'cell.pt'}",
                                 f"output={root / 'out'}"), root)
    return root / "cell.pt", root / "out", result


def test_the_shipped_models_onnx_output_equals_eager_on_a_real_image():
    eager = load_predictor(str(SHIPPED), 2, runtime="eager")
    fast = load_predictor(str(SHIPPED), 2, runtime="auto")  # its verified model.onnx
    assert (eager.runtime, fast.runtime) == ("eager", "onnx")
    lq = to_tensor(real_lq())[None]
    sr_eager, sr_onnx = super_resolve(eager, lq), super_resolve(fast, lq)
    assert (sr_eager - sr_onnx).abs().max() < 1e-4
    gap = levels_apart(sr_onnx, sr_eager)
    assert gap["agrees"] and gap["max_levels"] <= 1, gap
    # a model without model.onnx beside it is converted in memory (channels_last weights)
    previous = SHIPPED.parents[1] / "cell_x2" / "model.pt2"
    assert not previous.with_name("model.onnx").exists()
    converted = load_predictor(str(previous), 2, runtime="onnx")
    assert converted.runtime == "onnx"
    assert (super_resolve(converted, lq) - super_resolve(
        load_predictor(str(previous), 2, runtime="eager"), lq)).abs().max() < 1e-4


def test_export_writes_a_checked_onnx_that_runs_like_the_checkpoint(exported):
    _, out, result = exported
    model, arch, facts = load_onnx(out / "model.onnx")
    assert arch == ARCH and facts["export_check"] == result["onnx"]
    assert result["onnx"]["agrees"] and result["onnx"]["values"] > 100_000  # a real photo
    lq = to_tensor(real_lq())[None][..., :37, :53]  # a size other than the traced example
    eager = load_predictor(str(out / "model.pt2"), runtime="eager").model
    with torch.inference_mode():
        assert (model(lq) - eager(lq)).abs().max() < 1e-4
        assert model(torch.rand(2, 3, 9, 5)).shape == (2, 3, 18, 10)  # dynamic batch too
    assert "`model.onnx` check" in (out / "MODEL_CARD.md").read_text()


def test_runtime_auto_takes_the_verified_onnx_beside_the_model(exported, tmp_path):
    ckpt, out, _ = exported
    assert load_predictor(str(out / "model.pt2"), runtime="auto").runtime == "onnx"
    assert load_predictor(str(out / "model.pt2"), runtime="eager").runtime == "eager"
    assert load_predictor(str(ckpt), runtime="auto").runtime == "eager"  # no onnx beside it
    root = make_set(tmp_path / "bench")
    base = ["evaluate", f"model={out / 'model.pt2'}", f"benchmark_root={root}", "sets=[Tiny]"]
    runs = {}
    for runtime in ("auto", "eager"):
        (tmp_path / runtime).mkdir()
        runs[runtime] = evaluate.run(make_cfg(*base, f"runtime={runtime}"), tmp_path / runtime)
    assert (runs["auto"]["runtime"], runs["eager"]["runtime"]) == ("onnx", "eager")
    assert runs["auto"]["params"] == runs["eager"]["params"] > 0
    assert runs["auto"]["sets"]["Tiny"]["psnr"] == pytest.approx(
        runs["eager"]["sets"]["Tiny"]["psnr"], abs=0.01)


def test_an_onnx_of_another_model_is_skipped_by_auto_and_refused_by_onnx(exported, tmp_path,
                                                                          capsys):
    _, out, _ = exported
    shutil.copy(out / "model.pt2", tmp_path / "model.pt2")
    other = {**ARCH, "channels": 4}
    data = (out / "model.onnx").read_bytes()
    (tmp_path / "model.onnx").write_bytes(with_metadata(data, {EXPORT_METADATA: other}))
    assert load_predictor(str(tmp_path / "model.pt2"), runtime="auto").runtime == "eager"
    assert "not this model's verified export" in capsys.readouterr().out
    with pytest.raises(ModelError, match="exported from another model"):
        load_predictor(str(tmp_path / "model.pt2"), runtime="onnx")
    # an export check that failed keeps auto on eager torch as well
    failed = {"export_check": {"agrees": False}}
    (tmp_path / "model.onnx").write_bytes(with_metadata(data, failed))
    assert load_predictor(str(tmp_path / "model.pt2"), runtime="auto").runtime == "eager"


def test_new_weights_exported_over_a_model_do_not_run_with_its_old_onnx(exported, tmp_path,
                                                                         capsys):
    _, out, _ = exported
    folder = tmp_path / "m"
    shutil.copytree(out, folder)
    torch.manual_seed(1)  # the same arch, other weights: a fine-tuned model
    save_atomic({"arch": ARCH, "model": build_model(ARCH).state_dict()}, tmp_path / "tuned.pt")
    old_onnx = (folder / "model.onnx").read_bytes()
    export.run(make_cfg("export", f"checkpoint={tmp_path / 'tuned.pt'}", "format=pt2",
                        f"output={folder}"), tmp_path)
    assert not (folder / "model.onnx").exists()
    assert "removed" in capsys.readouterr().out
    assert load_predictor(str(folder / "model.pt2"), runtime="auto").runtime == "eager"
    # an old model.onnx put back beside the new weights (a copy by hand): auto runs eager
    # torch and says why, runtime=onnx refuses it
    (folder / "model.onnx").write_bytes(old_onnx)
    assert load_predictor(str(folder / "model.pt2"), runtime="auto").runtime == "eager"
    assert "does not hold model.pt2's weights" in capsys.readouterr().out
    with pytest.raises(ModelError, match="left from another export: re-export with format=onnx"):
        load_predictor(str(folder / "model.pt2"), runtime="onnx")
    assert not list(folder.glob(".*.tmp"))  # every file written whole


def tiny_onnx(path, *, external=False, domain=""):
    """A one-node ONNX file with a nas-sr arch in its metadata."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    if external:  # weights to be read from another file: any file on the machine
        weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1],
                             data_location=TensorProto.EXTERNAL)
        weight.external_data.add(key="location", value="/etc/passwd")
    node = helper.make_node("Mul", ["lq", "w"], ["sr"], domain=domain)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("lq", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("sr", TensorProto.FLOAT, None)],
                              [weight])
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    helper.set_model_props(model, {EXPORT_METADATA: json.dumps({"name": "srcnn", "scale": 2})})
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_files_reading_other_files_or_running_custom_ops_are_refused(tmp_path):
    assert read_onnx(tiny_onnx(tmp_path / "plain.onnx"))[1]["name"] == "srcnn"
    with pytest.raises(ModelError, match="tensor 'w' in the graph reads its weights from the "
                                         "external file '/etc/passwd'"):
        read_onnx(tiny_onnx(tmp_path / "external.onnx", external=True))
    with pytest.raises(ModelError, match=r"outside the standard ONNX domain \(\['com.evil'\]"):
        read_onnx(tiny_onnx(tmp_path / "custom.onnx", domain="com.evil"))
    (tmp_path / "junk.onnx").write_bytes(b"\x00not protobuf" * 10)
    with pytest.raises(ModelError, match="junk.onnx: not an ONNX model"):
        read_onnx(tmp_path / "junk.onnx")
    bare = onnx.load(tiny_onnx(tmp_path / "bare.onnx"))
    del bare.metadata_props[:]
    (tmp_path / "bare.onnx").write_bytes(bare.SerializeToString())
    with pytest.raises(ModelError, match="no nas_sr.json metadata"):
        read_onnx(tmp_path / "bare.onnx")


def external(name: str, location: str, dims=(1,)) -> TensorProto:
    """A float tensor whose bytes ONNX Runtime would read from ``location``."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims),
                         data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value=location)
    tensor.external_data.add(key="length", value=str(4 * int(np.prod(dims))))
    return tensor


def nested_onnx(path: Path, where: str, location: str = "/dev/zero", domain: str = "") -> Path:
    """A model whose only outside reference (or custom op) sits where the old check did not
    look: a Constant in an If's then-branch, a Loop body's initializer, a sparse
    initializer's values or indices."""
    const = external("c", location) if where == "if" else helper.make_tensor(
        "c", TensorProto.FLOAT, [1], [2.0])
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], name="c", value=const),
         helper.make_node("Mul", ["lq", "c"], ["t"], domain=domain)],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["lq"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["k"], ["k_out"])], "body",
        [helper.make_tensor_value_info(n, t, []) for n, t in
         (("i", TensorProto.INT64), ("cond_in", TensorProto.BOOL))],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, None),
         helper.make_tensor_value_info("k_out", TensorProto.FLOAT, None)],
        [external("k", location) if where == "loop" else helper.make_tensor(
            "k", TensorProto.FLOAT, [1], [1.0])])
    values = external("s", location) if where == "sparse values" else helper.make_tensor(
        "s", TensorProto.FLOAT, [1], [1.0])
    indices = TensorProto(name="s_i", data_type=TensorProto.INT64, dims=[1],
                          data_location=TensorProto.EXTERNAL) if where == "sparse indices" \
        else helper.make_tensor("s_i", TensorProto.INT64, [1], [0])
    if where == "sparse indices":
        indices.external_data.add(key="location", value=location)
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["sr"], name="if", then_branch=then,
                          else_branch=other),
         helper.make_node("Loop", ["once", "flag"], ["k_all"], name="loop", body=body)],
        "g", [helper.make_tensor_value_info("lq", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, None)],
        [helper.make_tensor("flag", TensorProto.BOOL, [], [True]),
         helper.make_tensor("once", TensorProto.INT64, [], [1])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [4])])
    # a custom domain left out of opset_import: only the node itself names it
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if where == "training":  # an initialisation graph ONNX Runtime's training would run
        model.training_info.add().initialization.CopyFrom(helper.make_graph(
            [], "init", [], [], [external("t", location)]))
    helper.set_model_props(model, {EXPORT_METADATA: json.dumps({"name": "srcnn", "scale": 2})})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(("where", "named"), [
    ("if", "attribute value of node 'c' in then_branch of node 'if'"),
    ("loop", "tensor 'k' in body of node 'loop'"),
    ("sparse values", "sparse tensor 's' in the graph (values)"),
    ("sparse indices", "sparse tensor 's' in the graph (indices)"),
    ("training", "tensor 't' in training_info"),
])
def test_external_data_anywhere_in_an_onnx_file_is_refused_before_onnx_runtime_opens_it(
        tmp_path, where, named):
    model, arch, _ = load_onnx(nested_onnx(tmp_path / "plain.onnx", "none"))
    assert arch["name"] == "srcnn"  # the same model, self-contained, loads and runs
    assert model(torch.ones(1, 3, 2, 2)).flatten().tolist() == [2.0] * 12
    path = nested_onnx(tmp_path / "evil.onnx", where)
    message = (f"{path}: {named} reads its weights from the external file '/dev/zero'; "
               "nas-sr only runs self-contained ONNX models (export it with nas-sr export)")
    for read in (read_onnx, load_onnx):
        with pytest.raises(ModelError) as refused:
            read(path)
        assert str(refused.value) == message


def test_a_custom_op_inside_a_subgraph_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"outside the standard ONNX domain \(\['com.evil'\]"):
        read_onnx(nested_onnx(tmp_path / "custom.onnx", "none", domain="com.evil"))


def test_runtime_and_format_options_are_checked_up_front():
    with pytest.raises(ConfigError, match="runtime='fast': use one of auto, eager, onnx"):
        check_options("evaluate", make_cfg("evaluate", "runtime=fast"))
    with pytest.raises(ConfigError, match=r"format=\['tflite'\]: unknown \['tflite'\]"):
        check_options("export", make_cfg("export", "checkpoint=x.pt", "format=[tflite]"))
    check_options("export", make_cfg("export", "checkpoint=x.pt", "format=onnx"))
