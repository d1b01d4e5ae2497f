"""The seed's Q-network: three conv + BatchNorm + ReLU blocks and a linear head sized for the screen."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv2d_size_out(size: int, kernel_size: int = 5, stride: int = 2, padding: int = 0, dilation: int = 1) -> int:
    """Output length of `nn.Conv2d` along one axis (the seed's formula is padding=0, dilation=1).

    Raises ValueError when the input is too small to fit one kernel application.
    """
    if min(kernel_size, stride, dilation) < 1 or padding < 0 or size < 1:
        raise ValueError(
            f"conv2d_size_out(size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}, "
            f"dilation={dilation}): size, kernel_size, stride and dilation must be >= 1 and padding >= 0"
        )
    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(
            f"conv2d_size_out: input of {size} (+2x{padding} padding) is smaller than the kernel's span {span}; "
            "use a larger screen or a smaller kernel"
        )
    return (size + 2 * padding - span) // stride + 1


CONV_CHANNELS = (16, 32, 32)
KERNEL_SIZE = 5
STRIDE = 2


def head_input_size(height: int, width: int) -> int:
    """Features entering the linear head for a `height` x `width` screen."""
    for _ in CONV_CHANNELS:
        height = conv2d_size_out(height, KERNEL_SIZE, STRIDE)
        width = conv2d_size_out(width, KERNEL_SIZE, STRIDE)
    return height * width * CONV_CHANNELS[-1]


class DQN(nn.Module):
    """Q(s, .) for a batch of screens of shape (N, in_channels, height, width)."""

    def __init__(self, height: int, width: int, n_actions: int, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels_in = in_channels
        for channels_out in CONV_CHANNELS:
            layers += [
                nn.Conv2d(channels_in, channels_out, kernel_size=KERNEL_SIZE, stride=STRIDE),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(),
            ]
            channels_in = channels_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(head_input_size(height, width), n_actions)
        self.input_shape = (in_channels, height, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(self.features(x), start_dim=1))


def without_batch_norm(net: nn.Module) -> nn.Module:
    """`net` with every BatchNorm2d replaced by an identity, in place (layer indices and names are kept)."""
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(net, name, nn.Identity())
        else:
            without_batch_norm(child)
    return net
