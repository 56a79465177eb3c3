"""A cell genotype as a plain, serialisable value.

Node j (0-based) reads two inputs, each one of ``0 = h(k-2)``, ``1 = h(k-1)``
or ``2 + i`` for an earlier node ``i < j``, applies one op to each and sums
the two results. The cell output combines the *loose ends*: nodes no other node
of the cell reads.

A genotype may also carry the network's macro decision, ``macro = (C, N)``: the cells'
channels and how many cells the network stacks, where the space searches width against
depth (``space.macro``); without it the network's size is the run's setting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from search_spaces.operations import OP_NAMES, REGISTRY

NUM_CELL_INPUTS = 2  # h(k-2) and h(k-1)
Macro = tuple[int, int]  # (channels, cells)


def deepest_first(macros: Iterable[Sequence[int]]) -> list[Macro]:
    """Distinct sizes in a space's order, deepest first, so a size's neighbours in the list
    (where evolution's macro mutation steps) are the sizes next to it."""
    return sorted({(int(c), int(n)) for c, n in macros}, key=lambda m: (-m[1], m[0]))


class GenotypeError(ValueError):
    """A genotype that does not describe a valid cell."""


class Node(NamedTuple):
    in1: int
    op1: str
    in2: int
    op2: str


@dataclass(frozen=True)
class Genotype:
    nodes: tuple[Node, ...]
    macro: Macro | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise GenotypeError("a genotype needs at least one node")
        if self.macro is not None:
            macro = tuple(self.macro)
            if len(macro) != 2 or not all(isinstance(x, int) and not isinstance(x, bool)
                                          and x >= 1 for x in macro):
                raise GenotypeError(f"macro {list(macro)!r}: expected [channels, cells], two "
                                    "whole numbers >= 1")
            object.__setattr__(self, "macro", macro)  # a list from JSON hashes as a tuple
        for j, node in enumerate(self.nodes):
            if len(node) != 4:
                raise GenotypeError(
                    f"node {j}: expected [input, op, input, op], got {list(node)!r}"
                )
            for inp in (node.in1, node.in2):
                if not isinstance(inp, int) or isinstance(inp, bool) or not 0 <= inp < j + 2:
                    # node 0 has no earlier node; node 1 one, 2 (not a range "2..2")
                    earlier = ("" if j == 0 else " or 2 (node 0)" if j == 1
                               else f" or 2..{j + 1} (earlier nodes)")
                    raise GenotypeError(
                        f"node {j}: input {inp!r} out of range; node {j} may read 0 (h(k-2))"
                        f"{',' if j else ' or'} 1 (h(k-1)){earlier}"
                    )
            for op in (node.op1, node.op2):
                if op not in REGISTRY:
                    raise GenotypeError(f"node {j}: unknown op {op!r}; known ops: "
                                        f"{tuple(REGISTRY)}")

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def loose_ends(self) -> list[int]:
        """Indices of nodes that no other node of the cell uses as input."""
        used = {inp - NUM_CELL_INPUTS for n in self.nodes for inp in (n.in1, n.in2)}
        return [j for j in range(self.num_nodes) if j not in used]

    def ops(self) -> list[str]:
        return [op for n in self.nodes for op in (n.op1, n.op2)]

    def width(self, default: Macro) -> Macro:
        """(channels, cells) of the network: the genotype's macro, else ``default``."""
        return self.macro or tuple(default)

    # --- the controller's view: 4 integer decisions per node, then the macro's --------
    def to_decisions(self, ops: tuple[str, ...] = OP_NAMES, macros: tuple[Macro, ...] = ()
                     ) -> list[int]:
        """The controller's decisions: op indices into the space's ``ops`` and, where the
        space has ``macros``, the index of the genotype's among them last."""
        outside = sorted(set(self.ops()) - set(ops))
        if outside:
            raise GenotypeError(f"ops {outside} are not among the space's {ops}")
        if (self.macro is not None) != bool(macros) or (macros and self.macro not in macros):
            raise GenotypeError(f"macro {self.macro} is not among the space's "
                                f"{list(macros) or 'none (a fixed network size)'}")
        return [d for n in self.nodes
                for d in (n.in1, ops.index(n.op1), n.in2, ops.index(n.op2))
                ] + ([macros.index(self.macro)] if macros else [])

    @classmethod
    def from_decisions(cls, decisions: list[int], ops: tuple[str, ...] = OP_NAMES,
                       macros: tuple[Macro, ...] = ()) -> Genotype:
        d = [int(x) for x in decisions]
        macro = None
        if macros:
            if not d or not 0 <= d[-1] < len(macros):
                raise GenotypeError(f"the last decision must index one of {len(macros)} "
                                    f"macros, got {d[-1:]}")
            macro, d = macros[d[-1]], d[:-1]
        if len(d) % 4:
            raise GenotypeError(f"decisions come in fours per node, got {len(d)}")
        for k in (1, 3):
            for x in d[k::4]:
                if not 0 <= x < len(ops):
                    raise GenotypeError(f"op index {x} out of range 0..{len(ops) - 1}")
        return cls(tuple(Node(d[i], ops[d[i + 1]], d[i + 2], ops[d[i + 3]])
                         for i in range(0, len(d), 4)), macro)

    # --- serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {"nodes": [list(n) for n in self.nodes], "loose_ends": self.loose_ends()}
        return {**out, "macro": list(self.macro)} if self.macro else out

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        if isinstance(data, dict) and "genotype" in data:  # a summary.json wraps it
            data = data["genotype"]
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise GenotypeError('expected a JSON object {"nodes": [[in, op, in, op], ...]}')
        nodes = []
        for j, n in enumerate(data["nodes"]):
            if not isinstance(n, (list, tuple)) or len(n) != 4:
                raise GenotypeError(f"node {j}: expected [input, op, input, op], got {n!r}")
            nodes.append(Node(*n))
        macro = data.get("macro")
        if macro is not None and not isinstance(macro, (list, tuple)):
            raise GenotypeError(f"macro {macro!r}: expected [channels, cells]")
        return cls(tuple(nodes), tuple(macro) if macro is not None else None)

    def __str__(self) -> str:
        names = ["h(k-2)", "h(k-1)"] + [f"n{j}" for j in range(self.num_nodes)]
        parts = [
            f"n{j}={n.op1}({names[n.in1]})+{n.op2}({names[n.in2]})"
            for j, n in enumerate(self.nodes)
        ]
        macro = f"; {self.macro[0]} channels x {self.macro[1]} cells" if self.macro else ""
        return ("; ".join(parts) + f"; out=[{','.join(f'n{j}' for j in self.loose_ends())}]"
                + macro)


def load_genotype(path: str | Path) -> Genotype:
    """Read and validate a genotype JSON file, naming the file in any error."""
    path = Path(path)
    try:
        genotype = Genotype.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise GenotypeError(f"{path}: no such genotype file") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        what = "a folder" if isinstance(e, IsADirectoryError) else "not UTF-8 text"
        raise GenotypeError(f"{path}: {what}; genotype= takes the genotype.json (or "
                            "summary.json) of a search run") from None
    except json.JSONDecodeError as e:
        raise GenotypeError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise GenotypeError(f"{path}: JSON nested too deep to be a genotype") from None
    except (GenotypeError, TypeError) as e:
        raise GenotypeError(f"{path}: {e}") from None
    return genotype


# Named genotypes (the DARTS habit): ``genotype=NAME`` wherever ``genotype=PATH`` works.
GENOTYPES: dict[str, Genotype] = {
    # the shipped nas_sr/models/searched_x2, _x3 and _x4 (their genotype.json): the budgeted
    # search (<= 400K params) on ../shared/datasets/train (docs/RESULTS.md)
    "searched_x2": Genotype((Node(0, "dil_conv_3x3", 1, "dil_conv_3x3"),
                             Node(2, "conv_3x3", 2, "sep_conv_3x3"),
                             Node(2, "sep_conv_3x3", 2, "sep_conv_3x3"),
                             Node(4, "conv_3x3", 0, "sep_conv_3x3"),
                             Node(2, "conv_3x3", 1, "conv_3x3"))),
    # the earlier nas_sr/models/cell_x2 (its genotype.json): a CPU search on the photographs
    "cell_x2": Genotype((Node(0, "sep_conv_3x3", 0, "sep_conv_3x3"),
                         Node(2, "sep_conv_3x3", 2, "sep_conv_3x3"),
                         Node(3, "conv_3x3", 3, "sep_conv_3x3"),
                         Node(4, "sep_conv_3x3", 3, "sep_conv_3x3"),
                         Node(2, "sep_conv_3x3", 5, "sep_conv_3x3"))),
}


def find_genotype(spec: str | Path) -> Genotype:
    """``genotype=``'s value: a genotype JSON file or, where no such file exists, the name of
    one in :data:`GENOTYPES`."""
    path = Path(spec).expanduser()
    if path.exists():
        return load_genotype(path)
    if str(spec) in GENOTYPES:
        return GENOTYPES[str(spec)]
    raise GenotypeError(f"genotype={spec}: neither a file nor a named genotype; name a "
                        "genotype.json (or summary.json) of a search run, or one of: "
                        f"{', '.join(GENOTYPES)}")


def choices_per_decision(num_nodes: int, ops: tuple[str, ...] = OP_NAMES,
                         macros: tuple[Macro, ...] = ()) -> list[int]:
    """Number of valid choices for each of the 4 * num_nodes decisions (and the macro's)."""
    return [c for j in range(num_nodes) for c in (j + 2, len(ops), j + 2, len(ops))
            ] + ([len(macros)] if macros else [])


def space_size(num_nodes: int = 5, ops: tuple[str, ...] = OP_NAMES,
               macros: tuple[Macro, ...] = ()) -> dict[str, int]:
    """Exact size of the space, counted three ways (see docs/search_space.md): the cells,
    times the macros where the space has them."""
    n_ops = len(ops)
    sequences = math.prod(choices_per_decision(num_nodes, ops))
    # swapping a node's two (input, op) slots gives the same cell: unordered pairs
    distinct = math.prod(
        m * (m + 1) // 2 for m in (n_ops * (j + 2) for j in range(num_nodes))
    )
    # the paper's count: unordered input pairs, ordered op pairs
    paper = math.prod((j + 2) * (j + 3) // 2 * n_ops**2 for j in range(num_nodes))
    m = max(1, len(macros))
    return {"decision_sequences": sequences * m, "distinct_cells": distinct * m,
            "paper_formula": paper * m}
