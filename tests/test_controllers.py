import math

import pytest
import torch
import torch.nn.functional as F

from controllers import LSTMController, RandomController, build_controller
from search_spaces.genotypes import Genotype


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
    ctrl = RandomController(num_nodes=2, baseline_decay=0.9)
    s = ctrl.sample()
    first = ctrl.update(s, 30.0)
    assert first["baseline"] == 30.0 and first["advantage"] == 0.0  # starts at the 1st reward
    second = ctrl.update(s, 31.0)
    assert math.isclose(second["baseline"], 0.9 * 30.0 + 0.1 * 31.0)
    assert math.isclose(second["advantage"], 31.0 - second["baseline"])


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
    for _ in range(300):
        s = ctrl.sample(rng)
        ctrl.update(s, s.genotype.ops().count("conv_3x3") / 10)
    after = conv_share()
    assert before < 0.35
    assert after > before + 0.25, (before, after)


def test_unknown_controller():
    with pytest.raises(ValueError, match="unknown controller 'ppo'"):
        build_controller("ppo", 5)
