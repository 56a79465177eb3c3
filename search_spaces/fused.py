"""The standalone cell re-parameterised for inference: the same function, fewer convs.

Every op is linear after its ReLU, and so is the cell's 1x1 combine (RepVGG's
observation, applied to a searched cell). So full convs that read the same state sum
into one kernel, and a separable conv folds into a full conv on its state; full convs on
different states become one conv over their concatenation; the combine folds into the
ops of the loose ends, so only nodes that other nodes read are computed as tensors; each
state is ReLU'd once. The shipped x2 cell goes from 15 convs to 8, and from 61C^2 to
48C^2 multiply-adds a pixel.

Exact up to float rounding. It serves inference only (``nas_sr.deploy.form``): training,
checkpoints and model files keep the searched form, whose weights the cell names.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search_spaces.cell import Cell
from search_spaces.network import CellSRNet
from search_spaces.operations import REGISTRY
from search_spaces.terms import Terms, padded


def _cat(xs: list[Tensor]) -> Tensor:
    return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)


class LinearMix(nn.Module):
    """Computes one :class:`Terms`: full convs on ReLU'd states (with ``concat``, one conv per
    dilation over the concatenation of its states, smaller kernels centred in the largest;
    else one per state), each separable conv as it was, each opaque op (attention) on its
    state, one 1x1 conv over the raw states and opaque outputs a matrix maps, and those an
    identity passes, all summed; the bias rides on the first conv.

    ``concat`` suits eager torch (one big conv beats several and their adds); ONNX Runtime
    is faster without it: it adds a conv's output into the next conv's for free, while a
    concatenation in its blocked layout costs two reorders. Two separable convs on one state
    are not merged: that takes a depthwise conv with a channel multiplier, which both
    runtimes run several times slower than two plain depthwise convs.
    """

    def __init__(self, terms: Terms, channels: int, concat: bool = True):
        super().__init__()
        terms = terms.folded()
        out = terms.bias.shape[0]
        self.conv_inputs: list[list[int]] = []
        self.convs = nn.ModuleList()
        keys = sorted(terms.convs, key=lambda k: (k[1], k[0]))  # by dilation, then state
        groups = ([[k for k in keys if k[1] == d] for d in sorted({d for _, d in keys})]
                  if concat else [[k] for k in keys])
        for group in groups:
            states, dilation = [s for s, _ in group], group[0][1]
            size = max(terms.convs[k].shape[-1] for k in group)
            conv = nn.Conv2d(len(states) * channels, out, size, padding=dilation * (size // 2),
                             dilation=dilation, bias=False)
            conv.weight.copy_(torch.cat([padded(terms.convs[k], size) for k in group], dim=1))
            self.conv_inputs.append(states)
            self.convs.append(conv)
        self.sep_inputs = [s for s in sorted(terms.seps) for _ in terms.seps[s]]
        self.seps = nn.ModuleList(_separable(d, p) for s in sorted(terms.seps)
                                  for d, p in terms.seps[s])
        opaque = [(s, op, m) for s in sorted(terms.opaque) for op, m in terms.opaque[s]]
        self.op_inputs = [s for s, _, _ in opaque]
        self.ops = nn.ModuleList(copy.deepcopy(op) for _, op, _ in opaque)
        # what a matrix maps: ("state", s) is a state itself, ("op", i) the i-th op's output
        sources = ([(("state", s), m) for s, m in sorted(terms.raw.items())]
                   + [(("op", i), m) for i, (_, _, m) in enumerate(opaque)])
        eye = torch.eye(channels, device=terms.bias.device)
        self.added = [src for src, m in sources if torch.equal(m, eye)]
        self.mapped_sources = [src for src, m in sources if not torch.equal(m, eye)]
        self.raw = None
        if self.mapped_sources:
            w = torch.cat([m for src, m in sources if src in self.mapped_sources], dim=1)
            self.raw = nn.Conv2d(w.shape[1], out, 1, bias=False)
            self.raw.weight.copy_(w[:, :, None, None])
        convs = [*self.convs, *(sep[1] for sep in self.seps), *([self.raw] if self.raw else [])]
        bias = nn.Parameter(terms.bias.clone())
        if convs:
            convs[0].bias = bias
        self.bias = None if convs else bias  # identity ops only: added after the sum

    def forward(self, states: list[Tensor], relus: list[Tensor | None]) -> Tensor:
        outs = [conv(_cat([relus[s] for s in ins]))
                for conv, ins in zip(self.convs, self.conv_inputs, strict=True)]
        outs += [sep(relus[s]) for sep, s in zip(self.seps, self.sep_inputs, strict=True)]
        values = {("state", s): states[s] for s in range(len(states))}
        values |= {("op", i): op(states[s])
                   for i, (op, s) in enumerate(zip(self.ops, self.op_inputs, strict=True))}
        if self.raw is not None:
            outs.append(self.raw(_cat([values[src] for src in self.mapped_sources])))
        outs += [values[src] for src in self.added]
        total = outs[0]
        for o in outs[1:]:
            total = total + o
        return total if self.bias is None else total + self.bias[:, None, None]


def _separable(depthwise: Tensor, pointwise: Tensor) -> nn.Sequential:
    """A depthwise k x k (C, k, k) then a pointwise (out, C) conv, without biases."""
    c, out, k = depthwise.shape[0], pointwise.shape[0], depthwise.shape[-1]
    dw = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False)
    dw.weight.copy_(depthwise[:, None])
    pw = nn.Conv2d(c, out, 1, bias=False)
    pw.weight.copy_(pointwise[:, :, None, None])
    return nn.Sequential(dw, pw)


class FusedCell(nn.Module):
    """A standalone :class:`Cell`, re-parameterised: nodes other nodes read, then the
    output as one :class:`LinearMix` over the states, added to h(k-1)."""

    @torch.no_grad()
    def __init__(self, cell: Cell, concat: bool = True):
        super().__init__()
        g, c = cell.genotype, cell.channels
        if g is None:
            raise ValueError("the supernet's cell has no single genotype to fuse")
        eye = torch.eye(c, device=cell.combine.weight.device)
        values = [REGISTRY[n.op1].terms(ops1[n.op1], n.in1, eye)
                  + REGISTRY[n.op2].terms(ops2[n.op2], n.in2, eye)
                  for n, (ops1, ops2) in zip(g.nodes, cell.node_ops, strict=True)]
        loose = g.loose_ends()
        combine = cell.combine.weight[:, :, 0, 0]
        out = Terms(cell.combine.bias)
        for i, j in enumerate(loose):
            out = out + values[j].mapped(combine[:, i * c:(i + 1) * c])
        self.nodes = nn.ModuleDict({str(j): LinearMix(values[j], c, concat)
                                    for j in range(g.num_nodes) if j not in loose})
        self.out = LinearMix(out, c, concat)
        mixes = [*self.nodes.values(), self.out]
        self.relu_states = sorted({s for m in mixes for ins in m.conv_inputs for s in ins}
                                  | {s for m in mixes for s in m.sep_inputs})
        self.num_nodes = g.num_nodes

    def forward(self, s0: Tensor, s1: Tensor, genotype: object = None) -> Tensor:
        return s1 + self.update(s0, s1)

    def update(self, s0: Tensor, s1: Tensor, genotype: object = None) -> Tensor:
        states = [s0, s1]
        relus = [self._relu(0, s0), self._relu(1, s1)]  # each state ReLU'd once, if read so
        for j in range(self.num_nodes):
            # a loose end is never computed: its index holds a placeholder nothing reads
            node = self.nodes[str(j)](states, relus) if str(j) in self.nodes else s1
            relus.append(self._relu(len(states), node))
            states.append(node)
        return self.out(states, relus)

    def _relu(self, state: int, x: Tensor) -> Tensor | None:
        return F.relu(x) if state in self.relu_states else None


def fused(net: CellSRNet, concat: bool = True) -> CellSRNet:
    """A copy of a standalone ``net`` whose cells are :class:`FusedCell` s, for inference."""
    out = copy.deepcopy(net)
    out.cells = nn.ModuleList(FusedCell(cell, concat) for cell in net.cells)
    return out.eval()

