"""The form a trained model runs in at inference (eager torch and the ONNX export).

A standalone cell network runs re-parameterised (``search_spaces.fused``): the same
function with fewer convs. Every other model, and a cell network whose convs were made
separable or shrunk (``nas-sr compress``), runs as it was trained. The weights a model file
stores, and the parameters and Mult-Adds it reports, stay those of the trained form.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from nas_sr.archs.build import build_model
from nas_sr.archs.lighten import conv_weights, effective_weight, folded
from nas_sr.archs.luma import LumaSR
from search_spaces.fused import fused
from search_spaces.network import CellSRNet


def for_inference(model: nn.Module, arch: dict[str, Any] | None, concat: bool = True
                  ) -> nn.Module:
    """``model`` re-parameterised where it is a plain standalone cell network, else itself.
    ``concat``: the layout eager torch runs fastest; ONNX Runtime prefers ``False``."""
    if isinstance(model, LumaSR):  # the network inside, on Y
        inner = for_inference(model.net, arch, concat)
        return model if inner is model.net else LumaSR(inner).train(model.training)
    if (not isinstance(model, CellSRNet) or model.genotype is None or not arch
            or arch.get("separable") or arch.get("shrink")):
        return model
    if arch.get("prune"):
        model = unmasked(model, arch)
    return fused(model, concat)


def unmasked(model: nn.Module, arch: dict[str, Any]) -> nn.Module:
    """A plain copy of a pruned ``model``, its masks folded into the weights. (A masked
    module cannot be deep-copied, and its ``weight`` is stale until a forward pass.)"""
    state = {k: v for k, v in model.state_dict().items()
             if not k.endswith((".weight_orig", ".weight_mask"))}
    state.update({f"{name}.weight": effective_weight(conv) for name, conv in conv_weights(model)})
    plain = build_model(folded(arch), checked=True)
    plain.load_state_dict(state)
    return plain.to(next(model.parameters()).device).eval()
