"""The convolution floor: it times the optimisation step's convolutions, all of them and nothing else."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from dqnbench.bench import convolutions
from dqnbench.nets import DQN


class RecordOps(TorchDispatchMode):
    """Records each aten operator called within it, with its first tensor argument's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, tuple[int, ...], list[bool] | None]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        mask = list(args[-1]) if func is torch.ops.aten.convolution_backward.default else None
        self.ops.append((str(func), tuple(args[0].shape), mask))
        return func(*args, **(kwargs or {}))


SEED_SHAPES = [(4, 3, 40, 90), (4, 16, 18, 43), (4, 32, 7, 20)]


def test_conv_inputs_finds_the_seed_networks_three_convolutions_with_their_input_shapes():
    found = convolutions.conv_inputs(DQN(40, 90, 2), torch.zeros(4, 3, 40, 90))
    assert [tuple(shape) for _, shape in found] == SEED_SHAPES, found
    assert all(isinstance(layer, nn.Conv2d) for layer, _ in found)


def test_a_network_without_convolutions_is_refused_by_name():
    with pytest.raises(ValueError, match=r"conv_inputs: Linear ran no nn.Conv2d"):
        convolutions.conv_inputs(nn.Linear(3, 2), torch.zeros(1, 3))


def test_the_call_runs_two_forwards_of_each_layer_then_one_backward_each_in_reverse_and_nothing_else():
    call = convolutions.optimize_convolutions_call(DQN(40, 90, 2), torch.zeros(4, 3, 40, 90))
    with RecordOps() as recorded:
        call()
    backward = [((4, 32, 2, 8), [True, True, True]), ((4, 32, 7, 20), [True, True, True]),
                ((4, 16, 18, 43), [False, True, True])]  # fmt: skip
    expected = [("aten.convolution.default", shape, None) for shape in SEED_SHAPES] * 2 + [
        ("aten.convolution_backward.default", shape, mask) for shape, mask in backward
    ]
    assert recorded.ops == expected, (
        f"optimize_convolutions_call: expected the policy's and the target's forward convolutions, then the "
        f"backward ones without the first layer's input gradient; got {recorded.ops}"
    )


@pytest.mark.parametrize("layout", convolutions.LAYOUTS, ids=str)
def test_the_timed_backward_is_autograds_backward_of_the_timed_forward(layout):
    layer = DQN(40, 90, 2).features[3]  # the second conv: input gradient included
    conv = convolutions._convolution(layer, torch.Size((2, 16, 18, 43)), layout, first=False, seed=0)
    inputs = conv.inputs.detach().requires_grad_()
    weight = conv.weight.detach().requires_grad_()
    bias = conv.bias.detach().requires_grad_()
    output = torch.nn.functional.conv2d(inputs, weight, bias, layer.stride, layer.padding)
    output.backward(conv.grad_output)
    grad_input, grad_weight, grad_bias = conv.backward()
    torch.testing.assert_close(conv.forward(), output.detach())
    for name, got, want in [("input", grad_input, inputs.grad), ("weight", grad_weight, weight.grad),
                            ("bias", grad_bias, bias.grad)]:  # fmt: skip
        torch.testing.assert_close(got, want, msg=lambda m, name=name: f"Convolution.backward, {name} gradient: {m}")


@pytest.mark.parametrize("faster", convolutions.LAYOUTS, ids=str)
def test_each_layer_takes_the_layout_its_probe_found_faster(monkeypatch, faster):
    def probe(call, calls):  # on the CPU, `synchronized` hands back the bound method itself
        return 1.0 if call.__self__.inputs.is_contiguous(memory_format=faster) else 2.0

    monkeypatch.setattr(convolutions, "_median_time", probe)
    chosen = convolutions.step_convolutions(DQN(40, 90, 2), torch.zeros(2, 3, 40, 90))
    assert all(c.inputs.is_contiguous(memory_format=faster) for c in chosen), [c.inputs.stride() for c in chosen]
