import math

import pytest
import torch
import torch.nn.functional as F

from controllers import LSTMController, RandomController, build_controller
from controllers.fair import FairSampler
from search_spaces.genotypes import Genotype
from search_spaces.operations import OP_NAMES


@pytest.mark.parametrize("name", ["enas", "random"])
def test_every_sampled_genotype_is_valid(name):
    ctrl = build_controller(name, num_nodes=5)
    rng = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        s = ctrl.sample(rng)
        # re-validates every input index and op
        assert Genotype.from_decisions(s.genotype.to_decisions()) == s.genotype
        assert s.genotype.num_nodes == 5 and s.genotype.loose_ends()
        seen.add(s.genotype)
    assert len(seen) > 150  # a fresh policy is close to uniform: mostly distinct cells


def test_same_seed_same_samples():
    def draw(seed):
        torch.manual_seed(seed)
        ctrl = LSTMController(num_nodes=5)
        rng = torch.Generator().manual_seed(seed)
        return [ctrl.sample(rng).genotype for _ in range(5)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_log_prob_and_entropy_match_a_recomputation_from_logits():
    torch.manual_seed(0)
    ctrl = LSTMController(num_nodes=5)
    s = ctrl.sample(torch.Generator().manual_seed(1))
    decisions = s.genotype.to_decisions()
    logits = ctrl.logits(decisions)
    assert len(logits) == 20
    log_prob = sum(F.log_softmax(lg, -1)[a] for lg, a in zip(logits, decisions, strict=True))
    torch.testing.assert_close(s.log_prob, log_prob)
    entropy = 0.0
    for t, lg in enumerate(logits):
        valid = lg[torch.isfinite(lg)]
        # invalid inputs are masked: node j has exactly j + 2 valid inputs
        assert len(valid) == ctrl.choices[t]
        p = valid.softmax(-1)
        entropy -= float((p * p.log()).sum().detach())
    assert math.isclose(float(s.entropy.detach()), entropy, rel_tol=1e-5)


def test_random_controller_log_prob_is_uniform():
    ctrl = RandomController(num_nodes=5)
    s = ctrl.sample(torch.Generator().manual_seed(0))
    assert math.isclose(float(s.log_prob), -sum(math.log(c) for c in ctrl.choices), rel_tol=1e-6)
    assert list(ctrl.parameters()) == [] and ctrl.optimizer is None  # nothing to learn


def test_ema_baseline_update():
    ctrl = RandomController(num_nodes=2, baseline_decay=0.9, normalize_advantage=False)
    s = ctrl.sample()
    first = ctrl.update([s], [30.0])[0]
    assert first["baseline"] == 30.0 and first["advantage"] == 0.0  # starts at the 1st reward
    second = ctrl.update([s, s], [31.0, 33.0])
    assert math.isclose(second[0]["baseline"], 0.9 * 30.0 + 0.1 * 32.0)  # the batch mean
    assert math.isclose(second[1]["advantage"], 33.0 - second[1]["baseline"])
    ctrl.rebase()  # forgets the baseline: the next batch starts it again
    assert ctrl.update([s], [20.0])[0]["baseline"] == 20.0


def _stepped_controller(rewards, seed=0):
    """A fresh controller (fixed init), three policy steps on fixed samples and rewards."""
    torch.manual_seed(seed)
    ctrl = LSTMController(num_nodes=5)
    rng = torch.Generator().manual_seed(seed)
    stats = []
    for batch in rewards:
        samples = [ctrl.sample(rng) for _ in batch]
        stats += ctrl.update(samples, list(batch))
    return ctrl, stats


def test_a_constant_shift_of_every_reward_leaves_the_update_unchanged():
    rewards = [(30.0, 31.5, 29.0), (32.0, 30.5, 31.0), (33.0, 29.5, 30.0)]
    a, stats_a = _stepped_controller(rewards)
    b, stats_b = _stepped_controller([tuple(r + 7.25 for r in batch) for batch in rewards])
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6)
    assert [s["norm_advantage"] for s in stats_a] == pytest.approx(
        [s["norm_advantage"] for s in stats_b], abs=1e-9)
    # and a change of unit (dB vs tenths of a dB) leaves normalised advantages alike
    _, stats_c = _stepped_controller([tuple(10 * r for r in batch) for batch in rewards])
    assert [s["norm_advantage"] for s in stats_a] == pytest.approx(
        [s["norm_advantage"] for s in stats_c], abs=1e-6)


def test_op_logits_stay_within_their_cap():
    torch.manual_seed(0)
    ctrl = LSTMController(num_nodes=5, tanh_constant=2.5, op_tanh_reduce=2.5)
    with torch.no_grad():  # push the heads to extremes
        ctrl.op_head.weight.mul_(1e4)
        ctrl.input_head.weight.mul_(1e4)
    with torch.no_grad():
        logits = ctrl.logits(ctrl.sample(torch.Generator().manual_seed(0)).genotype.to_decisions())
    ops, inputs = logits[1::2], logits[0::2]
    assert max(float(lg.abs().max()) for lg in ops) <= 1.0 + 1e-6
    assert max(float(lg.abs().max()) for lg in ops) > 0.99  # the cap is reached, not 2.5
    assert max(float(lg[torch.isfinite(lg)].abs().max()) for lg in inputs) > 2.4
    p = max(float(lg.softmax(-1).max()) for lg in ops)
    assert p <= math.e / (math.e + 3 / math.e) + 1e-6  # no op beyond p = 0.71


def test_a_negative_advantage_lowers_the_sampled_cells_probability():
    torch.manual_seed(0)
    ctrl = LSTMController(num_nodes=5, entropy_weight=0.0)
    s = ctrl.sample(torch.Generator().manual_seed(3))
    decisions = s.genotype.to_decisions()

    def log_prob():
        with torch.no_grad():
            return sum(float(F.log_softmax(lg, -1)[a])
                       for lg, a in zip(ctrl.logits(decisions), decisions, strict=True))

    before = log_prob()
    ctrl.policy_step([s], [-1.0])
    assert log_prob() < before - 1e-3
    s = ctrl.sample(torch.Generator().manual_seed(3))  # the same draw, fresh graph
    assert s.genotype.to_decisions() == decisions
    middle = log_prob()
    ctrl.policy_step([s], [+1.0])
    assert log_prob() > middle + 1e-3


def test_reinforce_learns_a_toy_reward_that_pays_for_one_op():
    """Reward = share of conv_3x3 among the 10 ops: its probability must rise."""
    torch.manual_seed(0)
    ctrl = LSTMController(num_nodes=5, lr=3.5e-3)
    rng = torch.Generator().manual_seed(0)

    def conv_share(n=100):
        with torch.no_grad():
            ops = [op for _ in range(n) for op in ctrl.sample(rng).genotype.ops()]
        return ops.count("conv_3x3") / len(ops)

    before = conv_share()
    for _ in range(60):
        batch = [ctrl.sample(rng) for _ in range(5)]
        ctrl.update(batch, [s.genotype.ops().count("conv_3x3") / 10 for s in batch])
    after = conv_share()
    assert before < 0.35
    assert after > before + 0.2, (before, after)


def test_unknown_controller():
    with pytest.raises(ValueError, match="unknown controller 'ppo'"):
        build_controller("ppo", 5)


def test_fair_sampler_covers_every_op_of_every_decision_in_each_block():
    sampler = FairSampler(num_nodes=5)
    rng = torch.Generator().manual_seed(0)
    for _ in range(3):  # three blocks
        block = [sampler.sample(rng).to_decisions() for _ in OP_NAMES]
        for t in range(1, 20, 2):  # every op decision
            assert sorted(cell[t] for cell in block) == list(range(len(OP_NAMES)))
        for cell in block:  # and every cell is valid
            Genotype.from_decisions(cell)


def test_fair_sampler_state_resumes_mid_block():
    a, b = FairSampler(5), FairSampler(5)
    ra, rb = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    [a.sample(ra) for _ in range(2)], [b.sample(rb) for _ in range(2)]
    c = FairSampler(5)
    c.load_state_dict(b.state_dict())
    assert [a.sample(ra) for _ in range(6)] == [c.sample(rb) for _ in range(6)]
