"""Making a trained model lighter: depthwise-separable convs, weight masks, fewer channels.

Every transform here is recorded as a plain entry of the model's ``arch`` spec, so a
checkpoint alone rebuilds the lighter model (``archs.build_model`` calls :func:`apply_spec`):

- ``separable``: ``{"fit", "keep_ends"}``, every k x k conv (k > 1, groups 1; but the first
  and last with ``keep_ends``) is a depthwise k x k conv followed by a pointwise 1x1 (Kim,
  Kang and Lee);
- ``shrink``: ``{conv: {"out": n, "into": [convs]}}``, convs whose output channels were cut to
  ``n`` (structured pruning), and the convs that read them with as many input channels;
- ``prune``: every conv weight carries a ``torch.nn.utils.prune`` mask (Bae et al.); masks and
  weights are ordinary state-dict tensors (``weight_orig``, ``weight_mask``), so a pruned
  checkpoint still loads with ``weights_only``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from nas_sr.errors import ConfigError

LIGHTENINGS = ("separable", "shrink", "prune")  # arch spec keys, in the order they apply
METHODS = ("prune", "separable")  # what `nas-sr compress` does (method=)
CRITERIA = ("std", "magnitude", "channels")  # and how it prunes (prune.criterion=)
# ops that pass channels through one to one: a channel cut before them is cut after them
CHANNELWISE_MODULES = (nn.ReLU, nn.LeakyReLU)
CHANNELWISE_FUNCTIONS = (F.relu, torch.relu, F.leaky_relu)


# --- depthwise-separable convolutions (Kim, Kang and Lee) -----------------------------------------
class SeparableConv2d(nn.Module):
    """A depthwise k x k conv (one filter per input channel), then a pointwise 1x1 conv.

    Stands in for ``Conv2d(cin, cout, k)`` with ``cin * k^2 + cin * cout`` weights instead
    of ``cin * cout * k^2``. The pointwise conv carries the bias; a depthwise bias only adds
    a constant per channel before a linear map, so it is off unless asked for (SMSRN has it).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0,
                 dilation: int = 1, stride: int = 1, bias: bool = True,
                 depthwise_bias: bool = False):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel_size, stride, padding, dilation,
                                   groups=cin, bias=depthwise_bias)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    @classmethod
    def like(cls, conv: nn.Conv2d) -> SeparableConv2d:
        """The separable stand-in of ``conv``: same channels, kernel, stride, padding, dilation."""
        if isinstance(conv.padding, str):
            raise ConfigError(f"separable: padding={conv.padding!r} convs are not supported")
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.padding[0],
                   conv.dilation[0], conv.stride[0], bias=conv.bias is not None)

    @torch.no_grad()
    def fit(self, conv: nn.Conv2d) -> None:
        """The least-squares separable approximation of ``conv``'s trained weights.

        Input channel i of the separable conv applies ``pointwise[:, i] x depthwise[i]``, a
        rank-1 (cout x k^2) matrix, so the best fit is the leading singular pair of
        ``conv.weight[:, i]`` reshaped to (cout, k^2), for each i.
        """
        cout, cin = conv.out_channels, conv.in_channels
        u, s, vh = torch.linalg.svd(conv.weight.transpose(0, 1).reshape(cin, cout, -1))
        root = s[:, :1].sqrt()  # split the singular value evenly between the two factors
        self.depthwise.weight.copy_((vh[:, 0] * root).view_as(self.depthwise.weight))
        self.pointwise.weight.copy_((u[:, :, 0] * root).T.reshape(cout, cin, 1, 1))
        if conv.bias is not None:
            self.pointwise.bias.copy_(conv.bias)


def separable_candidates(model: nn.Module, keep_ends: bool = False) -> list[str]:
    """The convs :func:`to_separable` replaces: k x k with k > 1, square, not grouped;
    with ``keep_ends``, all but the first and the last of them (in definition order).

    The end convs face the image (3 channels in, or few out before the upsampler's
    shuffle): separable they save little and lose most. Measured on the shipped cell,
    its head alone made separable took the validation PSNR from 35.25 to 19.48 dB, its
    six inner 3x3 convs together to 33.94 (docs/RESULTS.md).
    """
    names = [name for name, m in model.named_modules()
             if type(m) is nn.Conv2d and m.groups == 1 and m.kernel_size[0] > 1
             and m.kernel_size[0] == m.kernel_size[1]]
    return names[1:-1] if keep_ends else names


def to_separable(model: nn.Module, fit: bool = False, keep_ends: bool = False) -> list[str]:
    """Replace every candidate conv by a :class:`SeparableConv2d`, fitted to its weights if
    ``fit`` (else freshly initialised); returns the names replaced."""
    names = separable_candidates(model, keep_ends)
    for name in names:
        conv = model.get_submodule(name)
        sep = SeparableConv2d.like(conv)
        if fit:
            sep.fit(conv)
        _replace(model, name, sep)
    return names


# --- weight masks (Bae et al.) -------------------------------------------------------------
class PerFilterStd(prune.BasePruningMethod):
    """Bae et al.'s criterion: in each filter, zero the weights with ``|w| < k * std``.

    A filter is one output channel of a conv (``weight[o]``); its standard deviation is the
    population one (divided by n) of the filter as it stands, pruned weights counting as
    zeros. So a round after fine-tuning cuts only what training moved below the threshold
    (reading the std over the survivors alone instead cut SRCNN from 3,206 weights to 18 in
    its second round, docs/RESULTS.md). ``PRUNING_TYPE = "global"`` makes torch hand this
    method the whole tensor and the current mask (an "unstructured" method would get the
    unpruned entries flattened, and lose which filter each came from).
    """

    PRUNING_TYPE = "global"

    def __init__(self, k: float):
        if not k > 0:
            raise ConfigError(f"prune.k must be > 0, got {k}")
        self.k = k

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        w = (t.detach() * default_mask).flatten(1)
        std = w.std(1, correction=0, keepdim=True)
        keep = default_mask.flatten(1).bool() & (w.abs() >= self.k * std)
        return keep.view_as(default_mask).to(default_mask.dtype)


def conv_weights(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every conv of the model: what masks cover (biases stay dense, as in Bae et al.)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def add_masks(model: nn.Module) -> None:
    """All-ones masks on every conv weight that has none, so a pruned state dict loads."""
    for _, conv in conv_weights(model):
        if not prune.is_pruned(conv):
            prune.identity(conv, "weight")


def prune_std(model: nn.Module, k: float) -> None:
    """One round of Bae et al.'s per-filter threshold on every conv weight."""
    for _, conv in conv_weights(model):
        PerFilterStd.apply(conv, "weight", k=k)


def prune_magnitude(model: nn.Module, amount: float) -> None:
    """One round of global magnitude pruning: ``amount`` of the weights still alive, the
    smallest in absolute value over all convs together."""
    if not 0 < amount < 1:
        raise ConfigError(f"prune.amount must be in (0, 1), got {amount}")
    # global_unstructured flattens each weight with .view(-1), which a channels_last weight
    # (compress validates in that layout first) cannot give
    model.to(memory_format=torch.contiguous_format)
    prune.global_unstructured([(conv, "weight") for _, conv in conv_weights(model)],
                              pruning_method=prune.L1Unstructured, amount=amount)


def fold_masks(model: nn.Module) -> nn.Module:
    """Make masked weights plain parameters (zeros stay zeros): for export and timing."""
    for _, conv in conv_weights(model):
        if prune.is_pruned(conv):
            prune.remove(conv, "weight")
    return model


def effective_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The weight a forward pass uses (``conv.weight`` of a masked conv is only refreshed
    by the next forward, so it is recomputed here)."""
    if prune.is_pruned(conv):
        return conv.weight_orig * conv.weight_mask
    return conv.weight


def sparsity(model: nn.Module) -> dict[str, int | float]:
    """Conv weights in all and nonzero, the share of them pruned, and nonzero parameters."""
    convs = [effective_weight(conv) for _, conv in conv_weights(model)]
    weights = sum(w.numel() for w in convs)
    nonzero = sum(int(torch.count_nonzero(w)) for w in convs)
    masked = {id(conv.weight_orig) for _, conv in conv_weights(model) if prune.is_pruned(conv)}
    others = sum(int(torch.count_nonzero(p)) for p in model.parameters() if id(p) not in masked)
    others -= sum(int(torch.count_nonzero(conv.weight)) for _, conv in conv_weights(model)
                  if not prune.is_pruned(conv))  # counted once, in ``nonzero``
    return {"conv_weights": weights, "nonzero_weights": nonzero,
            "sparsity": 1 - nonzero / max(weights, 1), "nonzero_params": others + nonzero}


# --- structured pruning: whole channels out ----------------------------------------------
def conv_chains(model: nn.Module) -> dict[str, list[str]]:
    """Convs whose output channels can be cut: conv -> [convs that read it].

    A producer qualifies when every use of its output goes, through channelwise activations
    only, into the input of ungrouped convs: cutting a channel then removes a filter of the
    producer and the matching input slice of each reader, and nothing else sees it. Outputs
    that are added, concatenated, shuffled or returned are left alone. Found on the
    ``torch.fx`` graph of the model.
    """
    # trace with every optional argument left at its default (e.g. the cell's genotype)
    defaults = {k: p.default for k, p in inspect.signature(model.forward).parameters.items()
                if p.default is not inspect.Parameter.empty}
    try:
        graph = fx.symbolic_trace(model, concrete_args=defaults).graph
    except Exception as e:  # fx raises many kinds; any of them means "not traceable"
        raise ConfigError(f"channel pruning needs a torch.fx-traceable model: {e}") from None
    modules = dict(model.named_modules())

    def is_conv(node: fx.Node) -> bool:
        return (node.op == "call_module" and type(modules[node.target]) is nn.Conv2d
                and modules[node.target].groups == 1)

    def readers(node: fx.Node) -> list[str] | None:
        found: list[str] = []
        for user in node.users:
            channelwise = (
                (user.op == "call_module" and isinstance(modules[user.target],
                                                         CHANNELWISE_MODULES))
                or (user.op == "call_function" and user.target in CHANNELWISE_FUNCTIONS))
            if is_conv(user) and user.args[0] is node:
                found.append(user.target)
            elif channelwise and user.args[0] is node:
                more = readers(user)
                if more is None:
                    return None
                found += more
            else:
                return None
        return found or None

    chains = {}
    for node in graph.nodes:
        if is_conv(node) and (into := readers(node)):
            chains[node.target] = sorted(set(into))
    return chains


@torch.no_grad()
def cut_channels(model: nn.Module, amount: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Remove ``amount`` of the output channels of every cuttable conv, those of smallest
    L1 norm (chosen by ``prune.LnStructured``'s mask), with the readers' matching inputs.

    Returns the model's new ``shrink`` spec entry and its state dict; the caller rebuilds
    the smaller model from them (it is an ordinary dense model, Mult-Adds and all).
    """
    if not 0 < amount < 1:
        raise ConfigError(f"prune.amount must be in (0, 1), got {amount}")
    chains = conv_chains(model)
    if not chains:
        raise ConfigError("no conv here has channels that can be cut on their own (each "
                          "output is added, concatenated or upsampled); use "
                          "prune.criterion=std or magnitude")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    method = prune.LnStructured(amount, n=1, dim=0)
    shrink = {}
    for producer, readers in chains.items():
        conv = model.get_submodule(producer)
        mask = method.compute_mask(conv.weight, torch.ones_like(conv.weight))
        keep = mask.flatten(1).any(1).nonzero().flatten()
        state[f"{producer}.weight"] = state[f"{producer}.weight"][keep]
        if conv.bias is not None:
            state[f"{producer}.bias"] = state[f"{producer}.bias"][keep]
        for reader in readers:
            state[f"{reader}.weight"] = state[f"{reader}.weight"][:, keep]
        shrink[producer] = {"out": len(keep), "into": readers}
    return shrink, state


def shrink_convs(model: nn.Module, shrink: dict[str, Any]) -> None:
    """Rebuild the convs a ``shrink`` spec entry names with their cut channel counts.

    The entry may come from a stranger's file: anything but ``{conv: {"out": n >= 1,
    "into": [conv, ...]}}`` naming plain convs of this model is refused.
    """
    for name, entry in shrink.items():
        out = entry.get("out") if isinstance(entry, dict) else None
        into = entry.get("into") if isinstance(entry, dict) else None
        if not isinstance(name, str) or isinstance(out, bool) or not isinstance(out, int) \
                or out < 1 or not isinstance(into, list) \
                or not all(isinstance(r, str) for r in into):
            raise ConfigError(f"arch shrink: {name!r}: {entry!r} is not "
                              "{'out': channels >= 1, 'into': [conv names]}")
    cin = {r: entry["out"] for entry in shrink.values() for r in entry["into"]}
    for name in sorted(set(shrink) | set(cin)):
        try:
            conv = model.get_submodule(name)
        except AttributeError:
            conv = None
        if type(conv) is not nn.Conv2d:
            raise ConfigError(f"arch shrink: {name!r} is not a conv of this model")
        _replace(model, name, nn.Conv2d(
            cin.get(name, conv.in_channels), shrink.get(name, {}).get("out", conv.out_channels),
            conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            bias=conv.bias is not None))


# --- the arch spec ------------------------------------------------------------------------
def apply_spec(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """Give a freshly built model the structure its ``separable``/``shrink``/``prune``
    entries describe (weights come from the checkpoint after)."""
    for key in LIGHTENINGS:  # a spec may come from a stranger's file
        if key in spec and not isinstance(spec[key], dict):
            raise ConfigError(f"arch {key}={spec[key]!r}: must be a dict, as nas-sr compress "
                              "writes it")
    if spec.get("separable"):
        keep_ends = spec["separable"].get("keep_ends")
        if not isinstance(keep_ends, bool):
            raise ConfigError(f"arch separable.keep_ends={keep_ends!r}: must be true or false")
        to_separable(model, keep_ends=keep_ends)
    if spec.get("shrink"):
        shrink_convs(model, spec["shrink"])
    if spec.get("prune"):
        add_masks(model)
    return model


def folded(arch: dict[str, Any]) -> dict[str, Any]:
    """The arch spec of ``arch``'s model once its weight masks are folded into the weights
    (:func:`fold_masks`, as ``nas-sr export`` does): the same, without ``prune``."""
    return {k: v for k, v in arch.items() if k != "prune"}


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)
