"""Network checks: the conv size formula, output shapes, golden Q-values, float32 gradients."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks.core import (
    NETWORK_TOL,
    SCREEN_SHAPE,
    NotApplicable,
    as_tensor,
    build_network,
    fail,
    invoke,
    mismatch,
    register_check,
    screens,
    seeded,
)

CONV_CASES = [(size, k, s) for k in (1, 3, 5, 8) for s in (1, 2, 3) for size in range(k, 100, 7)] + [
    (size, 5, 2) for size in (40, 90, 160, 400, 600, 1200)
]


@register_check("conv2d_size_out")
def check_conv2d_size_out(adapter: DQNAdapter) -> str:
    """conv2d_size_out(size, kernel_size, stride) equals the length nn.Conv2d really produces."""
    assert adapter.conv2d_size_out is not None
    for size, kernel, stride in CONV_CASES:
        truth = F.conv2d(torch.zeros(1, 1, 1, size), torch.zeros(1, 1, 1, kernel), stride=(1, stride)).shape[-1]
        call = f"conv2d_size_out({size}, {kernel}, {stride})"
        got = invoke(call, adapter.conv2d_size_out, size, kernel, stride)
        if got != truth:
            off = got - truth if isinstance(got, int) else None
            cause = (
                f"off by {off:+d}: the formula is (size - (kernel_size - 1) - 1) // stride + 1"
                if off is not None
                else "it must return an int"
            )
            raise fail(call, f"expected {truth} (what nn.Conv2d produces), got {got!r}, exact match required", cause)
    return f"{len(CONV_CASES)} (size, kernel, stride) cases equal nn.Conv2d's output length"


NETWORK_SHAPES = ((40, 90, 2, 3), (40, 80, 2, 3), (64, 144, 3, 3), (40, 90, 2, 12), (35, 79, 4, 3))


@register_check("make_network")
def check_network_output_shapes(adapter: DQNAdapter) -> str:
    """The Q-network builds for several screen sizes and maps (N, C, H, W) to finite (N, n_actions)."""
    assert adapter.make_network is not None
    for height, width, n_actions, channels in NETWORK_SHAPES:
        call = f"make_network({height}, {width}, {n_actions}, {channels})"
        with seeded(0):
            net = invoke(call, adapter.make_network, height, width, n_actions, channels)
        for mode in ("train", "eval"):
            net.train(mode == "train")
            with torch.no_grad():
                out = invoke(
                    f"{call}.{mode}()(x of shape (2, {channels}, {height}, {width}))",
                    net,
                    screens(2, 0, (channels, height, width)),
                    cause="the linear head's input size does not match the convolutions' output: is the conv "
                    "output size formula right?",
                )
            out = as_tensor(call, out)
            if tuple(out.shape) != (2, n_actions) or not bool(torch.isfinite(out).all()):
                raise fail(
                    f"{call}.{mode}()(x)",
                    f"expected finite Q-values of shape (2, {n_actions}), got {tuple(out.shape)}",
                    "the head must output one Q-value per action for each screen in the batch",
                )
    return f"{len(NETWORK_SHAPES)} screen sizes give finite (N, n_actions) Q-values in train and eval mode"


@register_check("make_network")
def check_network_golden_outputs(adapter: DQNAdapter) -> str:
    """With the golden weights loaded, the Q-network reproduces the golden Q-values (eval and train mode)."""
    assert adapter.make_network is not None
    data = golden.load()
    net = build_network(adapter)
    entries = [(name, tuple(t.shape)) for name, t in net.state_dict().items()]
    names = [str(n) for n in data.network["names"]]
    shipped = [data.network[f"param_{i:03d}"] for i in range(len(names))]
    expected = [(name, tuple(a.shape)) for name, a in zip(names, shipped, strict=True)]
    if [s for _, s in entries] != [s for _, s in expected]:
        first = next(
            (i for i, (a, b) in enumerate(zip(entries, expected, strict=False)) if a[1] != b[1]),
            min(len(entries), len(expected)),
        )
        got = entries[first] if first < len(entries) else "nothing"
        raise NotApplicable(
            f"the golden weights fit the seed architecture (3 x conv5/stride2 + BatchNorm + ReLU with 16, 32, 32 "
            f"channels, then a linear head) by position, and {adapter.name}'s network differs: {len(entries)} "
            f"state_dict entries, the seed's {len(expected)}; first difference at entry {first}: expected "
            f"{expected[first] if first < len(expected) else 'nothing'}, got {got}"
        )
    net.load_state_dict(golden.state_dict(shipped, net))
    inputs = golden.network_inputs(data.screens)
    for mode, key in (("eval", "eval_q"), ("train", "train_q")):
        with torch.no_grad():
            out = as_tensor("net(x)", net.train(mode == "train")(inputs))
        problem = mismatch(
            out, torch.from_numpy(data.network[key]), atol=NETWORK_TOL, rtol=NETWORK_TOL, what="Q-values"
        )
        if problem:
            raise fail(
                f"make_network(40, 90, 2, 3) with golden weights, {mode} mode, on {len(inputs)} golden screens",
                problem,
                _batchnorm_eps_cause(net),
            )
    return f"golden Q-values reproduced within {NETWORK_TOL:g} in eval and train mode"


SEED_BN_EPS, SEED_BN_MOMENTUM = 1e-5, 0.1
"""The seed's BatchNorm2d settings: PyTorch's defaults."""


def _batchnorm_eps_cause(net: nn.Module) -> str | None:
    """A cause only where the evidence is the layer's own setting: a BatchNorm eps other than the seed's."""
    for name, layer in net.named_modules():
        eps = getattr(layer, "eps", None) if isinstance(layer, nn.modules.batchnorm._BatchNorm) else None
        if eps is not None and not math.isclose(eps, SEED_BN_EPS, rel_tol=1e-9):
            return f"BatchNorm {name!r} has eps={eps:g}, the seed's is {SEED_BN_EPS:g}"
    return None


@register_check("make_network")
def check_network_batchnorm_statistics(adapter: DQNAdapter) -> str:
    """A train-mode forward pass moves each BatchNorm's running statistics 10% (momentum 0.1) towards the batch's."""
    net = build_network(adapter)
    layers = [(n, m) for n, m in net.named_modules() if getattr(m, "running_mean", None) is not None]
    if not layers:
        raise NotApplicable(f"{adapter.name}'s network keeps no running statistics (no BatchNorm)")
    inputs: dict[str, Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0].detach()))
        for name, module in layers
    ]
    before = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in layers}  # type: ignore[union-attr]
    call = "make_network(40, 90, 2, 3).train()(16 screens)"
    try:
        with torch.no_grad():
            invoke(call, net.train(), screens(16, 31) * 3)
    finally:
        for hook in hooks:
            hook.remove()
    for name, module in layers:
        x = inputs[name].double().transpose(0, 1).flatten(1)  # channels first, every other value along dim 1
        batch_mean, batch_var = x.mean(dim=1), x.var(dim=1)  # the unbiased variance, as BatchNorm keeps it
        old_mean, old_var = (t.double() for t in before[name])
        got = torch.cat([module.running_mean.double(), module.running_var.double()])  # type: ignore[union-attr]
        m = SEED_BN_MOMENTUM
        expected = torch.cat([(1 - m) * old_mean + m * batch_mean, (1 - m) * old_var + m * batch_var])
        problem = mismatch(got, expected, atol=1e-5, rtol=1e-4, what=f"{name} running mean and variance entries")
        if problem:
            moved = (got - torch.cat([old_mean, old_var])) / (
                torch.cat([batch_mean, batch_var]) - torch.cat([old_mean, old_var])
            )
            estimate = float(moved.median())
            consistent = bool(
                torch.isclose(moved, torch.tensor(estimate, dtype=torch.float64), rtol=1e-3, atol=1e-4).all()
            )
            raise fail(
                call,
                f"BatchNorm {name!r} (momentum {m:g} expected): {problem}",
                f"the running statistics move {estimate:.4g} of the way to the batch's, not {m:g}: BatchNorm momentum "
                f"is {estimate:.4g} (0.99 is Keras' convention for the opposite weight)"
                if consistent
                else None,
            )
    return f"{len(layers)} BatchNorm layers update their running statistics with momentum {SEED_BN_MOMENTUM:g}"


GRADIENT_BATCH = 128
GRADIENT_TOL = 1e-3
"""Training-mode gradients on screen differences, as a fraction of the largest gradient. The reference in
float32 stays within 2.6e-4 of float64 here (the worst entries are conv biases, whose true gradient under
BatchNorm is zero, so all they hold is rounding); a BatchNorm summing each channel's 99,072 values one at a
time in float32 is 6e-2 off."""


def screen_differences(count: int, seed: int) -> Tensor:
    """States shaped like the seed's: mostly zeros, with a few moving blocks (a cart and a pole's two frames)."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.zeros(count, 3, *SCREEN_SHAPE)
    height, width = SCREEN_SHAPE
    for i in range(count):
        for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
            rows = int(torch.randint(4, 12, (1,), generator=generator))
            cols = int(torch.randint(3, 10, (1,), generator=generator))
            top = int(torch.randint(0, height - rows, (1,), generator=generator))
            left = int(torch.randint(0, width - cols, (1,), generator=generator))
            value = torch.rand(3, 1, 1, generator=generator) * 2 - 1
            states[i, :, top : top + rows, left : left + cols] = value
    return states


@register_check("make_network")
def check_network_gradients_on_screen_differences(adapter: DQNAdapter) -> str:
    """In train mode at batch 128, Q-values and gradients on screen-difference states match a float64 copy."""
    net = build_network(adapter).train()
    exact = copy.deepcopy(net).double()
    states = screen_differences(GRADIENT_BATCH, 21)
    weights = torch.randn(GRADIENT_BATCH, golden.N_ACTIONS, generator=torch.Generator().manual_seed(22))
    call = f"make_network(40, 90, 2, 3).train() on {GRADIENT_BATCH} screen differences, then backward"
    q = invoke(call, net, states)
    if not isinstance(q, Tensor) or tuple(q.shape) != (GRADIENT_BATCH, golden.N_ACTIONS):
        raise fail(call, f"expected a ({GRADIENT_BATCH}, {golden.N_ACTIONS}) tensor of Q-values, got {q!r:.80}", None)
    try:
        q_exact = exact(states.double())
    except Exception as error:
        raise NotApplicable(
            f"the oracle is a float64 copy of the network, and running {adapter.name}'s copy raised "
            f"{type(error).__name__}: {error} (a network that casts its input to float32, as SB3's policies do, "
            "cannot be checked this way)"
        ) from error
    invoke(f"{call}: (Q * weights).sum().backward()", lambda: (q.cpu() * weights).sum().backward())
    (q_exact * weights.double()).sum().backward()
    pairs = [(name, p.grad, e.grad) for (name, p), e in zip(net.named_parameters(), exact.parameters(), strict=True)]
    missing = [name for name, grad, _ in pairs if grad is None]
    if missing:
        raise fail(call, f"no gradient reached {missing}", "a parameter is detached from the forward pass")
    scale = max(float(e.abs().max()) for _, _, e in pairs if e is not None)
    problem = mismatch(as_tensor(call, q), q_exact.detach(), atol=NETWORK_TOL, rtol=NETWORK_TOL, what="Q-values")
    deviations = {name: float((grad - e).abs().max()) for name, grad, e in pairs}  # type: ignore[operator]
    # NaN compares False with everything, so non-finite deviations are looked for by name, not by max().
    non_finite = [name for name, value in deviations.items() if not math.isfinite(value)]
    worst = non_finite[0] if non_finite else max(deviations, key=deviations.__getitem__)
    deviation = deviations[worst]
    if problem or non_finite or deviation > GRADIENT_TOL * scale:
        raise fail(
            call,
            problem
            or (f"non-finite gradients in {non_finite}" if non_finite else "")
            or f"gradient of {worst} differs from the float64 copy's by {deviation:.3g}; allowed "
            f"{GRADIENT_TOL:g} x the largest gradient ({scale:.3g}) = {GRADIENT_TOL * scale:.3g}",
            "BatchNorm statistics summed inaccurately in float32 (PyTorch's channels-last CPU kernel adds each "
            "channel's values one at a time; mostly-zero screens make a conv's output nearly constant), a "
            "reduced-precision mode (bf16/tf32), or a NaN in the backward pass",
        )
    return (
        f"gradients within {deviation / scale:.1e} x the largest of a float64 copy's (allowed {GRADIENT_TOL:g}) "
        f"on {GRADIENT_BATCH} screen differences"
    )
