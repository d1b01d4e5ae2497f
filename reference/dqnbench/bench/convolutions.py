"""The convolutions of one optimisation step, and nothing else: a floor under every implementation's step.

One step of the seed's optimisation runs the network's convolutions forward twice (the policy on the states,
the target on the next states) and backward once (weight and bias gradients for every layer, and the input
gradient for every layer but the first, whose input is data). Those calls alone, each layer in whichever memory
layout runs it faster, take a time that no implementation keeping these kernels (oneDNN on the CPU, cuDNN on
CUDA) in float32 can go below: batch norm, activations, the loss, the optimiser and building the states all come
on top. As a ratio to the reference step (`python -m dqnbench.bench.interleave --candidate convolutions`), it
says how large a speed-up of the optimisation step can be on this machine at all.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench.bench.measure import synchronized

LAYOUTS = (torch.contiguous_format, torch.channels_last)
PROBE_CALLS = 5
"""Timed calls per layer and layout when choosing the faster layout (after one untimed call)."""


@dataclass(frozen=True)
class Convolution:
    """One convolution layer's forward and backward calls at the shapes it sees in the step, on fixed tensors."""

    inputs: Tensor
    weight: Tensor
    bias: Tensor | None
    grad_output: Tensor
    layer: nn.Conv2d
    input_grad: bool
    """Whether the backward pass computes the gradient of the layer's input (not for the first layer)."""

    def forward(self) -> Tensor:
        layer = self.layer
        return F.conv2d(self.inputs, self.weight, self.bias, layer.stride, layer.padding, layer.dilation, layer.groups)

    def backward(self) -> tuple[Tensor, Tensor, Tensor]:
        layer = self.layer
        bias_sizes = None if self.bias is None else list(self.bias.shape)
        mask = [self.input_grad, True, self.bias is not None]
        result: tuple[Tensor, Tensor, Tensor] = torch.ops.aten.convolution_backward(
            self.grad_output, self.inputs, self.weight, bias_sizes, layer.stride, layer.padding, layer.dilation,
            False, [0, 0], layer.groups, mask,
        )  # fmt: skip
        return result

    def both(self) -> None:
        self.forward()
        self.backward()


def conv_inputs(net: nn.Module, states: Tensor) -> list[tuple[nn.Conv2d, torch.Size]]:
    """The Conv2d layers `net` runs on `states`, in the order it runs them, each with its input's shape."""
    seen: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [
        module.register_forward_pre_hook(lambda module, args: seen.append((module, args[0].shape)))
        for module in net.modules()
        if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            net(states)
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise ValueError(f"conv_inputs: {type(net).__name__} ran no nn.Conv2d on its input; nothing to time")
    return seen


def _convolution(
    layer: nn.Conv2d, shape: torch.Size, layout: torch.memory_format, *, first: bool, seed: int
) -> Convolution:
    generator = torch.Generator().manual_seed(seed)
    device = layer.weight.device

    def tensor(size: torch.Size | tuple[int, ...]) -> Tensor:
        values = torch.randn(size, generator=generator).to(device)
        return values.contiguous(memory_format=layout) if values.dim() == 4 else values

    inputs = tensor(shape)
    weight = tensor(layer.weight.shape)
    bias = None if layer.bias is None else tensor(layer.bias.shape)
    with torch.no_grad():
        output_shape = F.conv2d(inputs, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups).shape
    return Convolution(inputs, weight, bias, tensor(output_shape), layer, input_grad=not first)


def _median_time(call: Callable[[], object], calls: int) -> float:
    call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_convolutions(net: nn.Module, states: Tensor, *, probe_calls: int = PROBE_CALLS) -> list[Convolution]:
    """Each convolution of `net` on `states`, in the memory layout (contiguous or channels-last) in which its
    forward and backward together run faster here (`probe_calls` timed calls of each)."""
    chosen = []
    for index, (layer, shape) in enumerate(conv_inputs(net, states)):
        candidates = [_convolution(layer, shape, layout, first=index == 0, seed=index) for layout in LAYOUTS]
        chosen.append(min(candidates, key=lambda c: _median_time(synchronized(c.both, states.device), probe_calls)))
    return chosen


def optimize_convolutions_call(net: nn.Module, states: Tensor) -> Callable[[], None]:
    """The convolutions of one optimisation step of `net` on a batch of `states` (see the module's docstring)."""
    convolutions = step_convolutions(net, states)

    def call() -> None:
        for _network in ("policy", "target"):
            for convolution in convolutions:
                convolution.forward()
        for convolution in reversed(convolutions):
            convolution.backward()

    return call
