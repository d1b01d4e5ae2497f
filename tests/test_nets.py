"""Q-network sizing: `conv2d_size_out` against torch's own layer, and the head sized for real screens."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dqnbench.nets import DQN, conv2d_size_out, head_input_size, without_batch_norm
from dqnbench.screen import extract_screen


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 120),
    kernel_size=st.integers(1, 9),
    stride=st.integers(1, 5),
    padding=st.integers(0, 4),
    dilation=st.integers(1, 4),
)
def test_conv2d_size_out_matches_nn_conv2d(size, kernel_size, stride, padding, dilation):
    conv = nn.Conv2d(1, 1, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)
    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        # torch refuses such an input too; ours must say so instead of returning a size <= 0.
        with pytest.raises(RuntimeError):
            conv(torch.zeros(1, 1, size, 1 + 2 * span))
        with pytest.raises(ValueError, match=f"input of {size}.*span {span}"):
            conv2d_size_out(size, kernel_size, stride, padding, dilation)
        return
    # The other axis is large enough to be valid, so only `size` decides the height.
    got = conv2d_size_out(size, kernel_size, stride, padding, dilation)
    expected = conv(torch.zeros(1, 1, size, span)).shape[2]
    assert got == expected, (
        f"conv2d_size_out(size={size}, kernel_size={kernel_size}, stride={stride}, padding={padding}, "
        f"dilation={dilation}) = {got}, but nn.Conv2d gives {expected}"
    )


def test_conv2d_size_out_defaults_are_the_seeds_formula():
    # The seed's (size - (kernel_size - 1) - 1) // stride + 1 with kernel 5, stride 2.
    for size in range(5, 200):
        assert conv2d_size_out(size) == (size - 4 - 1) // 2 + 1, f"size {size}"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"size": 0}, "size=0"),
        ({"size": 10, "kernel_size": 0}, "kernel_size=0"),
        ({"size": 10, "stride": 0}, "stride=0"),
        ({"size": 10, "padding": -1}, "padding=-1"),
        ({"size": 10, "dilation": 0}, "dilation=0"),
    ],
)
def test_conv2d_size_out_rejects_bad_arguments_by_name(kwargs, named):
    with pytest.raises(ValueError, match=named):
        conv2d_size_out(**kwargs)


def _features_out(height: int, width: int, in_channels: int = 3) -> int:
    net = DQN(height, width, 2, in_channels).eval()
    with torch.no_grad():
        return net.features(torch.zeros(1, in_channels, height, width)).numel()


def test_head_input_size_for_the_seeds_40x90_screen():
    # 40 -> 18 -> 7 -> 2 rows, 90 -> 43 -> 20 -> 8 columns, 32 channels (worked by hand).
    assert head_input_size(40, 90) == 2 * 8 * 32
    assert DQN(40, 90, 2).head.in_features == 512


@pytest.mark.parametrize(("height", "width"), [(40, 90), (29, 29), (60, 135), (80, 180), (41, 91), (30, 200)])
def test_head_input_size_matches_the_features_of_a_real_screen(height, width):
    assert head_input_size(height, width) == _features_out(height, width), f"{height}x{width} screen"


@pytest.mark.parametrize(("height", "width"), [(28, 90), (40, 28)])
def test_a_screen_too_small_for_three_convolutions_is_refused(height, width):
    with pytest.raises(ValueError, match="smaller than the kernel's span"):
        DQN(height, width, 2)


@pytest.mark.parametrize(("render_height", "render_width"), [(400, 600), (800, 1200), (500, 750)])
def test_head_fits_the_patch_of_a_render_of_any_size(render_height, render_width):
    frame = np.zeros((render_height, render_width, 3), dtype=np.uint8)
    patch = extract_screen(frame, cart_x=0.0)
    assert tuple(patch.shape) == (1, 3, 40, 90), f"patch of a {render_height}x{render_width} render"
    net = DQN(patch.shape[2], patch.shape[3], 2).eval()
    assert tuple(net(patch).shape) == (1, 2)


@pytest.mark.parametrize(("in_channels", "n_actions"), [(3, 2), (12, 2), (3, 5), (1, 1)])
def test_dqn_outputs_one_value_per_action_for_any_channels(in_channels, n_actions):
    net = DQN(40, 90, n_actions, in_channels)
    q = net(torch.rand(4, in_channels, 40, 90))
    assert tuple(q.shape) == (4, n_actions)
    assert net.head.in_features == _features_out(40, 90, in_channels)


def test_dqn_has_the_seeds_layers():
    net = DQN(40, 90, 2)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 16, (5, 5), (2, 2)),
        (16, 32, (5, 5), (2, 2)),
        (32, 32, (5, 5), (2, 2)),
    ]
    assert [n.num_features for n in norms] == [16, 32, 32]
    assert sum(isinstance(m, nn.ReLU) for m in net.features) == 3


def test_without_batch_norm_replaces_every_batchnorm_and_keeps_the_rest():
    net = DQN(40, 90, 2)
    convs_before = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    stripped = without_batch_norm(net)
    assert not [m for m in stripped.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m for m in stripped.modules() if isinstance(m, nn.Conv2d)] == convs_before
    assert sum(isinstance(m, nn.Identity) for m in stripped.modules()) == 3
    x = torch.randn(4, 3, 40, 90)
    expected = stripped.head(torch.flatten(stripped.features(x), 1))
    torch.testing.assert_close(stripped(x), expected)
