import pytest
import torch

from search_spaces.genotypes import Genotype, Node
from search_spaces.network import CellSRNet, count_params
from search_spaces.operations import OP_NAMES, OPS


def uniform_genotype(op: str, nodes: int = 3) -> Genotype:
    """Every edge uses ``op``; node j reads h(k-1) and the node before it."""
    return Genotype(tuple(Node(1, op, j + 1, op) for j in range(nodes)))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("op", OP_NAMES)
def test_supernet_forward_backward_each_op_and_scale(op, scale):
    torch.manual_seed(0)
    net = CellSRNet(scale, channels=8, num_cells=2, num_nodes=3)
    x = torch.rand(2, 3, 10, 12)
    g = uniform_genotype(op)
    y = net(x, g)
    assert y.shape == (2, 3, 10 * scale, 12 * scale)
    y.abs().mean().backward()
    # the chosen op's weights get gradients, the unchosen ops' do not
    edge = net.cells[0].edges[1][0]
    for name, module in edge.items():
        grads = [p.grad for p in module.parameters()]
        if name == op:
            assert all(gr is not None and gr.abs().sum() > 0 for gr in grads)
        else:
            assert all(gr is None for gr in grads)


def test_supernet_needs_a_genotype():
    with pytest.raises(ValueError, match="needs a genotype"):
        CellSRNet(2, channels=4, num_cells=1, num_nodes=2)(torch.rand(1, 3, 8, 8))


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="scale must be 2, 3 or 4"):
        CellSRNet(5, channels=4, num_cells=1, num_nodes=2)


def test_standalone_has_only_the_chosen_ops():
    c, cells = 8, 2
    g = Genotype((Node(0, "conv_3x3", 1, "identity"), Node(2, "sep_conv_3x3", 1, "dil_conv_3x3")))
    net = CellSRNet(2, channels=c, num_cells=cells, num_nodes=2, genotype=g)
    op_params = {n: sum(p.numel() for p in OPS[n](c).parameters()) for n in OP_NAMES}
    per_cell = sum(op_params[op] for op in g.ops()) + (len(g.loose_ends()) * c * c + c)
    head = 3 * c * 9 + c
    tail = c * 3 * 4 * 9 + 3 * 4
    assert count_params(net) == head + cells * per_cell + tail
    assert net(torch.rand(1, 3, 9, 7)).shape == (1, 3, 18, 14)


def test_supernet_and_standalone_agree_on_shared_weights():
    torch.manual_seed(0)
    g = uniform_genotype("conv_3x3", 2)
    supernet = CellSRNet(2, channels=6, num_cells=2, num_nodes=2)
    net = CellSRNet(2, channels=6, num_cells=2, num_nodes=2, genotype=g)
    state = {}
    for k, v in supernet.state_dict().items():
        if ".edges." in k and ".conv_3x3." not in k:
            continue
        if k.endswith("combine.weight"):
            v = v[:, 6:12]  # only node 1 is a loose end
        state[k] = v
    net.load_state_dict(state)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(net(x), supernet(x, g))
