import json
from pathlib import Path

import pytest

from nas_sr.checkpoint import write_json
from search_spaces.genotypes import (
    GENOTYPES,
    Genotype,
    GenotypeError,
    Node,
    choices_per_decision,
    find_genotype,
    load_genotype,
    space_size,
)

MODELS = Path(__file__).resolve().parents[1] / "nas_sr" / "models"
CHAIN = Genotype((
    Node(0, "conv_3x3", 1, "identity"),
    Node(2, "sep_conv_3x3", 1, "dil_conv_3x3"),
    Node(3, "conv_3x3", 0, "identity"),
    Node(4, "identity", 4, "conv_3x3"),
    Node(5, "dil_conv_3x3", 1, "sep_conv_3x3"),
))


def test_loose_ends_of_a_chain_is_the_last_node():
    assert CHAIN.loose_ends() == [4]


def test_loose_ends_when_no_node_reads_another():
    flat = Genotype(tuple(Node(0, "identity", 1, "conv_3x3") for _ in range(5)))
    assert flat.loose_ends() == [0, 1, 2, 3, 4]


def test_loose_ends_mixed():
    g = Genotype((
        Node(0, "identity", 1, "identity"),  # n0, read by n2
        Node(1, "conv_3x3", 1, "conv_3x3"),  # n1, loose
        Node(2, "conv_3x3", 0, "identity"),  # n2, read by n3
        Node(4, "identity", 0, "identity"),  # n3, loose
    ))
    assert g.loose_ends() == [1, 3]


def test_decisions_round_trip():
    assert Genotype.from_decisions(CHAIN.to_decisions()) == CHAIN
    assert len(CHAIN.to_decisions()) == 20


def test_json_round_trip(tmp_path):
    write_json(tmp_path / "g.json", {**CHAIN.to_dict(), "scale": 2})
    assert load_genotype(tmp_path / "g.json") == CHAIN
    assert json.loads((tmp_path / "g.json").read_text())["loose_ends"] == [4]


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ('{"nodes": [[0, "conv_3x3", 1]]}', "expected [input, op, input, op]"),
    ('{"nodes": [[0, "conv_3x3", 2, "identity"]]}', "input 2 out of range"),
    ('{"nodes": [[0, "conv_9x9", 1, "identity"]]}', "unknown op 'conv_9x9'"),
    ('{"nodes": [[-1, "conv_3x3", 1, "identity"]]}', "input -1 out of range"),
    ('[1, 2]', "expected a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),
])
def test_malformed_genotype_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(GenotypeError) as e:
        load_genotype(path)
    assert str(path) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("j", [0, 1, 3])
def test_an_input_out_of_range_names_just_the_inputs_its_node_may_read(j):
    first = [Node(0, "identity", 1, "identity")] * j
    with pytest.raises(GenotypeError) as e:
        Genotype((*first, Node(j + 2, "identity", 0, "identity")))
    allowed = str(e.value).partition("may read ")[2].replace("h(k-2)", "").replace("h(k-1)", "")
    assert ("2" in allowed) == (j > 0)  # node 0 has no earlier node to name
    assert ".." not in allowed.replace(f"2..{j + 1} (", "")  # no empty range such as 2..1
    assert j == 0 or f"{j + 1} (" in allowed  # the last earlier node
    Genotype((*first, Node(j + 1, "identity", 0, "identity")))  # the highest it names fits


@pytest.mark.parametrize("name", ["searched_x2", "cell_x2"])
def test_the_catalogue_holds_the_shipped_cells(name):
    assert GENOTYPES[name] == load_genotype(MODELS / name / "genotype.json")


def test_genotype_option_takes_a_path_or_a_name(tmp_path, monkeypatch):
    write_json(tmp_path / "g.json", CHAIN.to_dict())
    assert find_genotype(tmp_path / "g.json") == CHAIN
    assert find_genotype("cell_x2") is GENOTYPES["cell_x2"]
    monkeypatch.chdir(tmp_path)  # a file of that name is what the user means
    write_json(tmp_path / "cell_x2", CHAIN.to_dict())
    assert find_genotype("cell_x2") == CHAIN
    with pytest.raises(GenotypeError, match=r"genotype=cell_x3: neither a file nor a named "
                                            r"genotype; .* one of: searched_x2, cell_x2$"):
        find_genotype("cell_x3")
    (tmp_path / "folder").mkdir()
    with pytest.raises(GenotypeError, match="a folder"):  # a path: its own error
        find_genotype(tmp_path / "folder")


def test_space_size_counts():
    assert choices_per_decision(2) == [2, 4, 2, 4, 3, 4, 3, 4]
    sizes = space_size(5)
    assert sizes["decision_sequences"] == (8 * 12 * 16 * 20 * 24) ** 2 == 543_581_798_400
    assert round(sizes["paper_formula"] / 1e10, 2) == 5.95  # the seed paper's 5.95e10
    # brute force on a 2-node space: distinct cells up to swapping a node's two slots
    import itertools
    cells = set()
    for d in itertools.product(*(range(c) for c in choices_per_decision(2))):
        g = Genotype.from_decisions(list(d))
        cells.add(tuple(tuple(sorted([(n.in1, n.op1), (n.in2, n.op2)])) for n in g.nodes))
    assert len(cells) == space_size(2)["distinct_cells"]
