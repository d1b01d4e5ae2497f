"""The fast optimisation step computes the reference's step: loss, gradients and update within 1e-5."""

import copy

import pytest
import torch

from dqnbench.fast.gpu_check import random_batch
from dqnbench.fast.learner import FoldedTarget, compiled, fast_optimize_step, use_foreach
from dqnbench.fast.parts import make_network
from dqnbench.learner import make_target, optimize_step, sync_target
from dqnbench.nets import DQN

TOL = 1e-5
# RMSprop's first step moves every parameter by about lr / sqrt(1 - alpha) = 0.1 in the direction of its
# gradient, whatever the gradient's size. Gradients that are zero up to float rounding (a conv bias followed
# by BatchNorm, which cancels it) therefore get a +-0.1 step whose sign is rounding noise, in the reference as
# much as here. The update is compared where the reference's gradient is clearly not noise.
NOISE = 1e-4


def _pair(seed: int = 0):
    torch.manual_seed(seed)
    reference = DQN(40, 90, 2)
    fast = make_network(40, 90, 2)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


@pytest.mark.parametrize("compile_networks", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("double_dqn", [False, True], ids=["dqn", "double_dqn"])
def test_fast_step_equals_the_reference_step(double_dqn, compile_networks):
    reference, fast = _pair()
    reference_target, fast_target = make_target(reference), make_target(fast)
    reference_opt = torch.optim.RMSprop(reference.parameters(), lr=0.01)
    fast_opt = torch.optim.RMSprop(fast.parameters(), lr=0.01)
    use_foreach(fast_opt)
    before = copy.deepcopy(reference.state_dict())
    compared = total = 0
    batch = random_batch(32, final_every=5)
    expected = optimize_step(reference, reference_target, reference_opt, batch, gamma=0.999, double_dqn=double_dqn)
    got = fast_optimize_step(
        compiled(fast) if compile_networks else fast,
        FoldedTarget(fast_target, compiled=compile_networks),
        fast_opt,
        batch,
        gamma=0.999,
        double_dqn=double_dqn,
    )
    torch.testing.assert_close(got, expected, rtol=TOL, atol=TOL, msg=lambda m: f"loss: {m}")
    for (name, p_ref), p_fast in zip(reference.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, rtol=TOL, atol=TOL, msg=lambda m, n=name: f"grad {n}: {m}")
        clear = p_ref.grad.abs() > NOISE
        torch.testing.assert_close(
            p_fast.detach()[clear],
            p_ref.detach()[clear],
            rtol=TOL,
            atol=TOL,
            msg=lambda m, n=name: f"{n} after the step, where |grad| > {NOISE:g}: {m}",
        )
        if clear.any():
            assert not torch.equal(p_ref.detach()[clear], before[name][clear]), f"{name}: the step changed nothing"
        compared, total = compared + int(clear.sum()), total + clear.numel()
    assert compared > 0.9 * total, f"only {compared} of {total} parameters have a gradient above {NOISE:g}"
    for name, buffer in reference.named_buffers():
        torch.testing.assert_close(
            dict(fast.named_buffers())[name], buffer, rtol=TOL, atol=TOL, msg=lambda m, n=name: f"buffer {n}: {m}"
        )


def test_folded_target_follows_syncs():
    reference, _ = _pair()
    target = make_target(reference)
    folded = FoldedTarget(target)
    states = torch.rand(6, 3, 40, 90)
    torch.testing.assert_close(folded(states), target(states), rtol=TOL, atol=TOL)
    # Train the policy's BatchNorm statistics and weights, then sync: the folded copy must be rebuilt.
    reference.train()
    reference(torch.rand(16, 3, 40, 90) * 3)
    with torch.no_grad():
        reference.head.weight.mul_(2)
    sync_target(reference, target)
    torch.testing.assert_close(folded(states), target(states), rtol=TOL, atol=TOL, msg=lambda m: f"after sync: {m}")


def test_fast_step_handles_an_all_final_batch():
    _, fast = _pair()
    optimizer = torch.optim.RMSprop(fast.parameters(), lr=0.01)
    batch = random_batch(8, final_every=1)
    loss = fast_optimize_step(fast, FoldedTarget(make_target(fast)), optimizer, batch, gamma=0.999)
    assert torch.isfinite(loss), f"loss {loss} on an all-final batch"
