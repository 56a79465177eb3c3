import pytest
import torch

from controllers import RandomController
from search_spaces.genotypes import Genotype, Node
from search_spaces.network import CellSRNet, count_params
from search_spaces.operations import OP_NAMES, REGISTRY


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
    slot = net.cells[0].node_ops[1][0]  # node 1's first input
    for name, module in slot.items():
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
    op_params = {n: sum(p.numel() for p in REGISTRY[n].build(c).parameters()) for n in OP_NAMES}
    per_cell = sum(op_params[op] for op in g.ops()) + (len(g.loose_ends()) * c * c + c)
    head = 3 * c * 9 + c
    tail = c * 3 * 4 * 9 + 3 * 4
    assert count_params(net) == head + cells * per_cell + tail
    assert net(torch.rand(1, 3, 9, 7)).shape == (1, 3, 18, 14)


def standalone_from(supernet: CellSRNet, genotype: Genotype, channels: int) -> CellSRNet:
    """The standalone net of ``genotype`` holding the supernet's weights for it: the same
    names for the chosen ops, and the loose ends' columns of each combine conv."""
    net = CellSRNet(supernet.scale, channels, len(supernet.cells), genotype.num_nodes, genotype)
    shared, loose = supernet.state_dict(), genotype.loose_ends()
    state = {}
    for key in net.state_dict():
        value = shared[key]
        if key.endswith("combine.weight"):
            value = torch.cat([value[:, j * channels:(j + 1) * channels] for j in loose], 1)
        state[key] = value
    net.load_state_dict(state)  # strict: every standalone tensor came from the supernet
    return net


def test_supernet_and_standalone_agree_on_random_genotypes():
    torch.manual_seed(0)
    c = 6
    supernet = CellSRNet(2, channels=c, num_cells=3, num_nodes=5).eval()
    rng = torch.Generator().manual_seed(0)
    sampler = RandomController(num_nodes=5)
    genotypes = [g for g in (sampler.sample(rng).genotype for _ in range(40))
                 if len(g.loose_ends()) >= 2][:8]
    assert len(genotypes) == 8
    assert {op for g in genotypes for op in g.ops()} == set(OP_NAMES)  # every op is tested
    assert max(len(g.loose_ends()) for g in genotypes) >= 3
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        for g in genotypes:
            torch.testing.assert_close(standalone_from(supernet, g, c)(x), supernet(x, g))


def test_recursion_reruns_each_cell_on_its_output_with_the_same_weights_gated():
    g = Genotype((Node(0, "conv_3x3", 1, "sep_conv_3x3"), Node(2, "identity", 0, "conv_3x3")))
    torch.manual_seed(0)
    once = CellSRNet(2, 6, 2, 2, g).eval()
    thrice = CellSRNet(2, 6, 2, 2, g, recursions=3).eval()
    assert count_params(thrice) == count_params(once) + 2 * 2 * 6  # the gates alone
    missing = thrice.load_state_dict(once.state_dict(), strict=False).missing_keys
    assert missing == ["gates"]
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(thrice(x), once(x), rtol=0, atol=0)  # gated off at start
        thrice.gates.normal_(0, 0.5)
        feat = once.head(x - once.mean)
        s0 = s1 = feat
        for k, cell in enumerate(once.cells):  # unrolled by hand with the same cells
            out = cell(s0, s1, g)
            for r in range(2):
                out = out + thrice.gates[k, r, :, None, None] * (cell(s0, out, g) - out)
            s0, s1 = s1, out
        want = once.tail(s1 + feat) + once.mean
        torch.testing.assert_close(thrice(x), want)
        assert (thrice(x) - once(x)).abs().max() > 1e-3


def test_a_supernet_shared_by_input_gives_one_module_to_the_same_op_on_the_same_state():
    net = CellSRNet(2, 8, 1, 3, share="input")
    cell = net.cells[0]
    assert [len(keys) for keys in cell.node_ops] == [2, 3, 4]  # node j reads j + 2 states
    g = Genotype((Node(1, "conv_3x3", 1, "conv_3x3"), Node(0, "sep_conv_3x3", 2, "identity"),
                  Node(3, "conv_3x3", 1, "conv_3x3")))
    x = torch.rand(1, 3, 12, 10)
    net(x, g).mean().backward()
    # both slots of node 0 read h(k-1) through conv_3x3: one module, its weight trained once
    conv = cell.node_ops[0][1]["conv_3x3"].conv.weight
    assert conv.grad is not None and cell.node_ops[0][0]["conv_3x3"].conv.weight.grad is None


def test_a_normed_supernet_gives_each_op_unit_batch_statistics():
    torch.manual_seed(0)
    net = CellSRNet(2, 8, 1, 2, norm=True)
    g = Genotype((Node(0, "conv_3x3", 1, "dil_conv_3x3"), Node(2, "sep_conv_3x3", 1, "conv_3x3")))
    seen = []
    for node in net.cells[0].norms:
        for norms in node:
            for bn in norms.values():
                bn.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():  # eval too: batch statistics, nothing tracked
        net.eval()(torch.rand(4, 3, 16, 16) * 5, g)
    assert len(seen) == 4 and all(abs(float(o.mean())) < 1e-4 for o in seen)
    assert all(abs(float(o.var(unbiased=False)) - 1) < 1e-2 for o in seen)
    with pytest.raises(ValueError, match="a standalone cell has neither"):
        CellSRNet(2, 8, 1, 2, g, norm=True)
