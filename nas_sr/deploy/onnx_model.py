"""ONNX export of a model and an ONNX Runtime model that runs like the eager one.

``export_onnx`` traces with ``torch.onnx.export`` (the dynamo exporter) with a dynamic
batch, height and width, and stores the arch spec in the file's metadata, as ``model.pt2``
does. ``OnnxModel`` wraps an ``onnxruntime.InferenceSession`` as an ``nn.Module`` so that
tiling, self-ensemble and metrics take it like any model.

An ``.onnx`` file holds no code, but it may name *external data* (any file on disk, read
into a weight) and ops from custom domains; a file with either is refused, so an ONNX
model from a stranger is read as the protobuf it is and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from nas_sr.archs.build import check_arch
from nas_sr.archs.luma import colors
from nas_sr.deploy.form import for_inference
from nas_sr.deploy.pt2 import EXPORT_METADATA, ModelError
from nas_sr.metrics import quantize

ONNX_FILE = "model.onnx"
# ONNX Runtime may stand in for eager torch when its 8-bit output differs by at most one
# level on at most this share of the values (float sums in another order flip a few roundings)
MAX_DIFFER_SHARE = 1e-4
OPSET = 18
STANDARD_DOMAINS = {"", "ai.onnx"}
INPUT, OUTPUT = "lq", "sr"


def export_onnx(model: nn.Module, arch: dict[str, Any]) -> bytes:
    """The serialised ONNX model of ``model`` (NCHW float32, dynamic N, H, W), with ``arch``
    in its metadata. A cell network is exported re-parameterised (``search_spaces.fused``),
    in the form ONNX Runtime runs fastest; a Y-only model's network alone, on Y
    (nas_sr.archs.luma)."""
    model = for_inference(model, arch, concat=False)
    # unequal sides and batch > 1, so none is specialised
    example = torch.rand(2, colors(arch), 48, 40)
    dims = {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=1, max=16384),
            3: Dim("width", min=1, max=16384)}
    graph = trace_onnx(model, (example,), [INPUT], (dims,))
    return with_metadata(graph, {EXPORT_METADATA: arch})


def trace_onnx(model: nn.Module, examples: tuple[torch.Tensor, ...], input_names: list[str],
               dynamic_shapes: Any) -> bytes:
    """``model`` traced by the dynamo exporter into a serialised ONNX graph (opset ``OPSET``,
    one output named ``OUTPUT``), quietly; ``nas_sr.search.latency`` times its pieces so."""
    # the exporter narrates each pass on stdout and through the logging of onnx_ir, warns
    # that torchvision's ops (which no model here uses) cannot be registered, and trips
    # a deprecation inside torch's own pytree code: none of it is the user's to act on
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
        program = torch.onnx.export(model, examples, input_names=input_names,
                                    output_names=[OUTPUT], dynamic_shapes=dynamic_shapes,
                                    dynamo=True, opset_version=OPSET, verbose=False)
    return program.model_proto.SerializeToString()


def with_metadata(serialized: bytes, facts: dict[str, Any]) -> bytes:
    """``serialized`` with ``facts`` added to its metadata, each as JSON."""
    import onnx  # noqa: PLC0415  (only export writes ONNX files)

    proto = onnx.load_from_string(serialized)
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({k: json.dumps(v) for k, v in facts.items()})
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


class OnnxModel(nn.Module):
    """An ONNX Runtime session on the CPU, called like the model it was exported from."""

    def __init__(self, serialized: bytes, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort  # noqa: PLC0415  (loaded only when an ONNX model is used)

        options = ort.SessionOptions()
        # as many threads as torch was given (threads=), so both runtimes compare alike
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(serialized, options,
                                            providers=["CPUExecutionProvider"])
        self.serialized, self.threads = serialized, options.intra_op_num_threads

    def with_threads(self, threads: int) -> OnnxModel:
        """This model on a session of ``threads`` intra-op threads (itself where it has them)."""
        return self if threads == self.threads else OnnxModel(self.serialized, threads)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(lq.detach().cpu().numpy(), dtype=np.float32)  # NCHW
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0]).to(lq.device)


def subgraphs(graph: Any, where: str = "the graph") -> Iterator[tuple[Any, str]]:
    """``graph`` and every graph in its nodes' attributes (an If's branches, a Loop's or
    Scan's body), at any depth, each with where it sits for messages."""
    yield graph, where
    for node in graph.node:
        for a in node.attribute:
            for g in [*([a.g] if a.HasField("g") else []), *a.graphs]:
                yield from subgraphs(g, f"{a.name} of node {node.name or node.op_type!r}")


def tensors(graph: Any, name: str = "the graph") -> Iterator[tuple[str, Any]]:
    """Every tensor of ``graph`` and its subgraphs, named for messages: initializers, the
    values and indices of sparse initializers, and tensors in node attributes (a
    Constant's value)."""
    for g, where in subgraphs(graph, name):
        yield from ((f"tensor {t.name!r} in {where}", t) for t in g.initializer)
        for sparse in g.sparse_initializer:
            yield from _sparse(f"sparse tensor {sparse.values.name!r} in {where}", sparse)
        for node in g.node:
            for a in node.attribute:
                label = f"attribute {a.name} of node {node.name or node.op_type!r} in {where}"
                yield from ((label, t) for t in [*([a.t] if a.HasField("t") else []),
                                                 *a.tensors])
                for sparse in [*([a.sparse_tensor] if a.HasField("sparse_tensor") else []),
                               *a.sparse_tensors]:
                    yield from _sparse(label, sparse)


def _sparse(label: str, sparse: Any) -> Iterator[tuple[str, Any]]:
    yield f"{label} (values)", sparse.values
    yield f"{label} (indices)", sparse.indices


def read_onnx(path: Path) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """The bytes, arch spec and other metadata of an ``.onnx`` that ``nas-sr export`` wrote;
    files reading external data or running custom-domain ops are refused."""
    import onnx  # noqa: PLC0415
    from google.protobuf.message import DecodeError  # noqa: PLC0415

    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError) as e:
        raise ModelError(f"{path}: not an ONNX model ({e})") from None
    # training_info's graphs too: nothing nas-sr runs, but nothing to let through either
    roots = [(proto.graph, "the graph"), *((g, "training_info") for t in proto.training_info
                                             for g in (t.initialization, t.algorithm))]
    outside = next(((where, t) for root in roots for where, t in tensors(*root)
                    if t.data_location == onnx.TensorProto.EXTERNAL), None)
    if outside:
        where, tensor = outside
        file = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise ModelError(f"{path}: {where} reads its weights from the external file {file!r}; "
                         "nas-sr only runs self-contained ONNX models (export it with "
                         "nas-sr export)")
    domains = {op.domain for op in proto.opset_import} | {
        n.domain for root in roots for g, _ in subgraphs(*root) for n in g.node}
    if domains - STANDARD_DOMAINS or proto.functions:
        raise ModelError(f"{path}: uses ops outside the standard ONNX domain "
                         f"({sorted(domains - STANDARD_DOMAINS) or 'local functions'})")
    meta = {p.key: p.value for p in proto.metadata_props}
    if EXPORT_METADATA not in meta:
        raise ModelError(f"{path}: has no {EXPORT_METADATA} metadata (its scale is unknown); "
                         "export it with `nas-sr export checkpoint=... format=[onnx]`")
    try:
        arch = json.loads(meta.pop(EXPORT_METADATA))
        check_arch(arch)
        extra = {k: json.loads(v) for k, v in meta.items() if not k.startswith("pkg.")}
    except ValueError as e:  # JSONDecodeError, ConfigError
        raise ModelError(f"{path}: its metadata is not a nas-sr arch spec ({e})") from None
    return data, arch, extra


def load_onnx(path: Path) -> tuple[OnnxModel, dict[str, Any], dict[str, Any]]:
    """An ``OnnxModel`` of ``path`` with its arch spec and export metadata."""
    data, arch, extra = read_onnx(path)
    try:
        return OnnxModel(data), arch, extra
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})"
                         ) from None


def levels_apart(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    """How two outputs differ as 8-bit images: how many values differ, by how many levels
    at most, and whether that is within ``agrees``'s tolerance."""
    gap = (quantize(a) - quantize(b)).abs()
    differ, values = int((gap > 0).sum()), gap.numel()
    return {"values": values, "differ": differ, "max_levels": int(gap.max()),
            "agrees": bool(gap.max() <= 1 and differ <= MAX_DIFFER_SHARE * values)}
