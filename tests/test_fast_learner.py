"""The fast optimisation step computes the reference's step: loss, gradients and update within 1e-5."""

import copy

import pytest
import torch

from bugzoo import channels_last_native_batchnorm
from dqnbench.fast.gpu_check import random_batch
from dqnbench.fast.learner import FoldedTarget, compiled, fast_optimize_step, use_foreach
from dqnbench.fast.parts import make_network
from dqnbench.learner import Batch, make_target, optimize_step, sync_target
from dqnbench.nets import DQN
from support import (
    GRADIENT_NOISE,
    STEP_TOLERANCE,
    assert_as_accurate_as_reference,
    assert_same_step,
    float64_step,
    screen_batch,
)

TOL = STEP_TOLERANCE
NOISE = GRADIENT_NOISE


def _pair(seed: int = 0, network=make_network):
    torch.manual_seed(seed)
    reference = DQN(40, 90, 2)
    fast = network(40, 90, 2)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


@pytest.mark.parametrize("compile_networks", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("double_dqn", [False, True], ids=["dqn", "double_dqn"])
def test_fast_step_equals_the_reference_step(double_dqn, compile_networks):
    assert_fast_step_equals_reference(random_batch(32, final_every=5), double_dqn, compile_networks)


@pytest.mark.parametrize("compile_networks", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("double_dqn", [False, True], ids=["dqn", "double_dqn"])
@pytest.mark.parametrize("size", [128, 64])
def test_fast_step_equals_the_reference_step_on_screen_differences(double_dqn, compile_networks, size):
    assert_fast_step_equals_reference(screen_batch(size), double_dqn, compile_networks)


@pytest.mark.parametrize(
    "network", [make_network, channels_last_native_batchnorm], ids=["fast network", "channels-last BatchNorm (the bug)"]
)
def test_the_cross_device_criterion_catches_a_drifting_batchnorm(network):
    """`assert_as_accurate_as_reference` (the CUDA tests' criterion) passes the fast step and fails the bug."""
    batch = screen_batch()
    reference, fast = _pair(network=network)
    exact, exact_loss = float64_step(reference, batch, gamma=0.999, lr=0.01)
    optimize_step(reference, make_target(reference), torch.optim.RMSprop(reference.parameters(), lr=0.01), batch,
                  gamma=0.999)  # fmt: skip
    optimizer = torch.optim.RMSprop(fast.parameters(), lr=0.01)
    got = fast_optimize_step(fast, FoldedTarget(make_target(fast)), optimizer, batch, gamma=0.999)
    if network is make_network:
        assert_as_accurate_as_reference("fast_optimize_step", exact, reference, fast, exact_loss, got)
    else:
        with pytest.raises(AssertionError, match="from the float64 step's"):
            assert_as_accurate_as_reference("fast_optimize_step", exact, reference, fast, exact_loss, got)


def assert_fast_step_equals_reference(batch: Batch, double_dqn: bool, compile_networks: bool) -> None:
    reference, fast = _pair()
    reference_target, fast_target = make_target(reference), make_target(fast)
    reference_opt = torch.optim.RMSprop(reference.parameters(), lr=0.01)
    fast_opt = torch.optim.RMSprop(fast.parameters(), lr=0.01)
    use_foreach(fast_opt)
    before = copy.deepcopy(reference.state_dict())
    # Only the gradients that the float32 reference itself leaves more than 1e-5 from float64 are judged by it.
    exact, _ = float64_step(reference, batch, gamma=0.999, lr=0.01, double_dqn=double_dqn)
    expected = optimize_step(reference, reference_target, reference_opt, batch, gamma=0.999, double_dqn=double_dqn)
    got = fast_optimize_step(
        compiled(fast) if compile_networks else fast,
        FoldedTarget(fast_target, compiled=compile_networks),
        fast_opt,
        batch,
        gamma=0.999,
        double_dqn=double_dqn,
    )
    compared = assert_same_step("fast_optimize_step vs optimize_step", reference, fast, expected, got, exact)
    for name, p_ref in reference.named_parameters():
        clear = p_ref.grad.abs() > NOISE
        if clear.any():
            assert not torch.equal(p_ref.detach()[clear], before[name][clear]), f"{name}: the step changed nothing"
    total = sum(p.numel() for p in reference.parameters())
    assert compared > 0.9 * total, f"only {compared} of {total} parameters have a gradient above {NOISE:g}"


def test_folded_target_follows_syncs():
    reference, _ = _pair()
    target = make_target(reference)
    folded = FoldedTarget(target)
    states = torch.rand(6, 3, 40, 90)
    torch.testing.assert_close(folded(states), target(states), rtol=TOL, atol=TOL)
    module, addresses = folded.folded, [t.data_ptr() for t in folded.folded.state_dict().values()]
    # Train the policy's BatchNorm statistics and weights, then sync: the folded copy must be rebuilt.
    reference.train()
    reference(torch.rand(16, 3, 40, 90) * 3)
    with torch.no_grad():
        reference.head.weight.mul_(2)
    sync_target(reference, target)
    torch.testing.assert_close(folded(states), target(states), rtol=TOL, atol=TOL, msg=lambda m: f"after sync: {m}")
    # Refolded in place: a compiled copy keeps its code and a CUDA graph keeps reading the same memory.
    assert folded.folded is module, "the sync replaced the folded module instead of updating it"
    now = [t.data_ptr() for t in folded.folded.state_dict().values()]
    assert now == addresses, "the sync moved the folded copy's tensors to new memory"


def test_fast_step_handles_an_all_final_batch():
    _, fast = _pair()
    optimizer = torch.optim.RMSprop(fast.parameters(), lr=0.01)
    batch = random_batch(8, final_every=1)
    loss = fast_optimize_step(fast, FoldedTarget(make_target(fast)), optimizer, batch, gamma=0.999)
    assert torch.isfinite(loss), f"loss {loss} on an all-final batch"
