"""`dqnbench.fast.batchnorm`: training-mode BatchNorm on channels-last CPU tensors, as accurate as float64 allows.

The data that matters is offset-dominated: most values near one per-channel constant (a conv's bias on
screen differences that are mostly zero). A float64 `nn.BatchNorm2d` is the oracle.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dqnbench.fast.batchnorm import AccurateBatchNorm2d, accurate_batchnorm
from dqnbench.nets import DQN

CHANNELS_LAST = torch.channels_last


def _offset_dominated(seed: int = 0) -> torch.Tensor:
    """A batch-128 conv1-sized activation: each channel 10 to 400 standard deviations away from zero."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.linspace(0.05, 2.0, 16)[None, :, None, None]
    return (offset + 0.005 * torch.randn(128, 16, 18, 43, generator=g)).contiguous(memory_format=CHANNELS_LAST)


def _pair(momentum: float | None) -> tuple[nn.BatchNorm2d, AccurateBatchNorm2d]:
    oracle = nn.BatchNorm2d(16, momentum=momentum).double()
    with torch.no_grad():
        oracle.weight.copy_(torch.linspace(0.5, 1.5, 16, dtype=torch.float64))
        oracle.bias.copy_(torch.linspace(-0.2, 0.2, 16, dtype=torch.float64))
    accurate = AccurateBatchNorm2d(16, momentum=momentum)
    accurate.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in oracle.state_dict().items()})
    return oracle, accurate


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_training_step_matches_float64(momentum: float | None) -> None:
    oracle, accurate = _pair(momentum)
    for seed in (0, 1):  # two batches: the running statistics are followed over updates
        x = _offset_dominated(seed).requires_grad_()
        x64 = x.detach().double().requires_grad_()
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(10 + seed))
        out, expected = accurate(x), oracle(x64)
        assert out.is_contiguous(memory_format=CHANNELS_LAST), "the output left the channels-last layout"
        (out * upstream).sum().backward()
        (expected * upstream.double()).sum().backward()
        for what, got, want in [
            ("output", out, expected),
            ("input gradient", x.grad, x64.grad),
            ("weight gradient", accurate.weight.grad, oracle.weight.grad),
            ("bias gradient", accurate.bias.grad, oracle.bias.grad),
            ("running mean", accurate.running_mean, oracle.running_mean),
            ("running var", accurate.running_var, oracle.running_var),
        ]:
            # 2e-5 relative: float32 rounding of values and of 16 x 99,072 products, nothing accumulated.
            torch.testing.assert_close(
                got.detach().double(), want.detach(), rtol=2e-5, atol=2e-5 * float(want.detach().abs().max()),
                msg=lambda m, what=what, seed=seed: f"AccurateBatchNorm2d {what}, batch {seed}, vs float64: {m}",
            )  # fmt: skip
        assert int(accurate.num_batches_tracked) == int(oracle.num_batches_tracked) == seed + 1


@pytest.mark.parametrize("situation", ["eval", "contiguous"], ids=["evaluation mode", "contiguous layout"])
def test_everything_else_is_nn_batchnorm2d_bit_for_bit(situation: str) -> None:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(16)
    plain.train(situation != "eval")
    accurate = accurate_batchnorm(nn.Sequential(copy.deepcopy(plain)))[0]
    assert isinstance(accurate, AccurateBatchNorm2d)
    x = _offset_dominated()
    if situation == "contiguous":
        x = x.contiguous()
    torch.testing.assert_close(accurate(x), plain(x), rtol=0, atol=0)
    torch.testing.assert_close(accurate.state_dict(), plain.state_dict(), rtol=0, atol=0)


def test_one_value_per_channel_is_refused_as_nn_batchnorm2d_refuses_it() -> None:
    x = torch.rand(1, 16, 1, 1).contiguous(memory_format=CHANNELS_LAST)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        AccurateBatchNorm2d(16)(x)


def test_replacing_keeps_the_parameters_an_optimizer_already_holds_and_the_hooks() -> None:
    net = DQN(40, 90, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    before = {name: id(p) for name, p in net.named_parameters()}
    keys = list(net.state_dict())
    seen: list[str] = []
    net.features[1].register_forward_hook(lambda module, inputs, output: seen.append(type(module).__name__))
    accurate_batchnorm(net)
    assert sum(isinstance(m, AccurateBatchNorm2d) for m in net.modules()) == 3
    assert {name: id(p) for name, p in net.named_parameters()} == before
    assert list(net.state_dict()) == keys
    net.to(memory_format=CHANNELS_LAST)
    net(torch.rand(4, 3, 40, 90).contiguous(memory_format=CHANNELS_LAST)).sum().backward()
    assert seen == ["AccurateBatchNorm2d"], f"forward hooks registered before the conversion ran {seen}"
    bn = net.features[1]
    old = bn.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(bn.weight.detach(), old), "the optimizer built before no longer reaches the BatchNorm"


def test_without_affine_parameters_it_is_as_accurate() -> None:
    x = _offset_dominated()
    expected = nn.BatchNorm2d(16, affine=False).double()(x.double())
    got = AccurateBatchNorm2d(16, affine=False)(x)
    torch.testing.assert_close(got.double(), expected, rtol=2e-5, atol=2e-5 * float(expected.abs().max()))


def test_a_second_derivative_is_refused_not_wrong() -> None:
    x = _offset_dominated().double().requires_grad_()
    out = AccurateBatchNorm2d(16).double()(x)
    (first,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        first.sum().backward()


def test_mixed_precision_is_left_to_nn_batchnorm2d() -> None:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(16)
    accurate = accurate_batchnorm(nn.Sequential(copy.deepcopy(plain)))[0]
    x = _offset_dominated()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(accurate(x.bfloat16()), plain(x.bfloat16()), rtol=0, atol=0)
