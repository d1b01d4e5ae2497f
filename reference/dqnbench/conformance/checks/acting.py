"""Acting checks: greedy actions, BatchNorm statistics while acting, epsilon-greedy selection."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks.core import (
    as_tensor,
    build_network,
    fail,
    invoke,
    mismatch,
    register_check,
    require_mode_dependent_layers,
    screens,
)


def _acting_network(adapter: DQNAdapter, n_actions: int = golden.N_ACTIONS) -> nn.Module:
    """A network in train mode whose BatchNorm running statistics have moved away from their initial values."""
    net = build_network(adapter, n_actions)
    with torch.no_grad():
        for seed in range(3):
            net(screens(8, 100 + seed) * (seed + 1))
    return net


def _buffers(net: nn.Module) -> dict[str, Tensor]:
    return {name: b.detach().clone() for name, b in net.named_buffers()}


def _buffer_change(before: dict[str, Tensor], after: dict[str, Tensor]) -> str | None:
    for name, old in before.items():
        problem = mismatch(after[name].cpu(), old.cpu(), atol=0, rtol=0, what=f"{name} entries")
        if problem:
            return f"buffer {name!r} changed: {problem}"
    return None


def _eval_argmax(net: nn.Module, states: Tensor) -> Tensor:
    frozen = copy.deepcopy(net).eval()
    with torch.no_grad():
        return frozen(states).argmax(dim=1, keepdim=True)


@register_check("greedy_action")
def check_greedy_action_argmax(adapter: DQNAdapter) -> str:
    """greedy_action returns argmax_a Q(s, a) of the network in eval mode, as an (N, 1) long tensor."""
    assert adapter.greedy_action is not None
    net = _acting_network(adapter)
    states = screens(16, 7)
    expected = _eval_argmax(net, states)
    got = as_tensor(
        "greedy_action(net, states)", invoke("greedy_action(net, 16 states)", adapter.greedy_action, net, states)
    )
    if got.dtype != torch.long or tuple(got.shape) != tuple(expected.shape):
        raise fail(
            "greedy_action(net, 16 states)",
            f"expected a long tensor of shape (16, 1), got {got.dtype} {tuple(got.shape)}",
            "return q.argmax(dim=1, keepdim=True) (or q.max(1)[1].view(-1, 1))",
        )
    problem = mismatch(got, expected, atol=0, rtol=0, what="actions")
    if problem:
        train_copy = copy.deepcopy(net).train()
        with torch.no_grad():
            train_choice = train_copy(states).argmax(dim=1, keepdim=True)
        with torch.no_grad():
            argmin = copy.deepcopy(net).eval()(states).argmin(dim=1, keepdim=True)
        causes = {
            "the network acted in train mode (BatchNorm used the batch's statistics): act in eval mode": train_choice,
            "argmin instead of argmax over the actions": argmin,
        }
        cause = next((c for c, choice in causes.items() if torch.equal(got, choice)), None)
        raise fail("greedy_action(net, 16 states)", problem, cause)
    return "16 greedy actions equal argmax_a Q(s, a) in eval mode"


BN_CAUSE = (
    "the network acted in train mode, so BatchNorm running statistics moved towards the acted-on screen: "
    "switch to eval() around the forward pass and restore the mode afterwards"
)


@register_check("greedy_action", "select_action", any_of=True)
def check_acting_keeps_batchnorm_stats(adapter: DQNAdapter) -> str:
    """Acting (greedy_action, select_action with eps=0) leaves BatchNorm statistics and the train mode as they were."""
    net = _acting_network(adapter)
    require_mode_dependent_layers(adapter, net, "its train/eval mode and running statistics cannot matter")
    calls: list[tuple[str, Callable[[Tensor], Any]]] = []
    greedy, select = adapter.greedy_action, adapter.select_action
    if greedy is not None:
        calls.append(("greedy_action(net, state)", lambda s: greedy(net, s)))
    if select is not None:
        rng = random.Random(0)
        calls.append(("select_action(net, state, 0.0, 2, rng)", lambda s: select(net, s, 0.0, 2, rng)))
    for call, act in calls:
        before = _buffers(net)
        for i in range(3):
            invoke(call, act, screens(1, 200 + i))
        change = _buffer_change(before, _buffers(net))
        if change:
            raise fail(f"{call} x3 on a network in train mode", change + " (exact match required)", BN_CAUSE)
        if not net.training:
            raise fail(
                f"{call} on a network in train mode",
                "expected net.training=True afterwards, got False",
                "the mode is not restored after acting: training would go on in eval mode",
            )
    return f"{' and '.join(c for c, _ in calls)} leave BatchNorm buffers and train mode untouched"


def _action(call: str, raw: Any) -> int:
    """The action of one select_action call, which must be a (1, 1) long tensor on both branches."""
    got = as_tensor(call, raw)
    if got.dtype != torch.long or tuple(got.shape) != (1, 1):
        branch = "random" if ", 1.0, " in call else "greedy"
        raise fail(
            call,
            f"expected a (1, 1) long tensor, got {got.dtype} {tuple(got.shape)}",
            f"the {branch} branch builds its action with another shape or dtype (collate and gather need (1, 1) long)",
        )
    return int(got)


@register_check("select_action")
def check_select_action_epsilon_greedy(adapter: DQNAdapter) -> str:
    """eps=0 acts greedily; eps=1 acts uniformly at random using the rng passed in; (1, 1) long actions on both."""
    select = adapter.select_action
    assert select is not None
    n_actions, draws = 3, 600
    net = _acting_network(adapter, n_actions)
    states = screens(4, 9)
    greedy = _eval_argmax(net, states)
    for i in range(len(states)):
        call = f"select_action(net, state {i}, 0.0, {n_actions}, rng)"
        got = _action(call, invoke(call, select, net, states[i : i + 1], 0.0, n_actions, random.Random(i)))
        if got != int(greedy[i]):
            raise fail(
                call,
                f"expected the greedy action {int(greedy[i])}, got {got}",
                "with eps=0 the action must be the arg max of Q (in eval mode)",
            )

    def random_actions(seed: int) -> list[int]:
        rng = random.Random(seed)
        call = f"select_action(net, state, 1.0, {n_actions}, rng)"
        return [_action(call, invoke(call, select, net, states[:1], 1.0, n_actions, rng)) for _ in range(draws)]

    first = random_actions(0)
    counts = [first.count(a) for a in range(n_actions)]
    mean, sd = draws / n_actions, (draws * (1 / n_actions) * (1 - 1 / n_actions)) ** 0.5
    worst = max(range(n_actions), key=lambda a: abs(counts[a] - mean))
    if abs(counts[worst] - mean) > 5 * sd:
        raise fail(
            f"{draws} x select_action(net, state, 1.0, {n_actions}, rng)",
            f"action counts {counts}; expected about {mean:.0f} each, action {worst} is off by "
            f"{abs(counts[worst] - mean):.0f} > 5 standard deviations ({5 * sd:.0f})",
            "random actions must be uniform over range(n_actions): is n_actions hard-coded, or eps compared the "
            "wrong way round (random when rng.random() > eps)?",
        )
    if random_actions(0) != first:
        raise fail(
            f"select_action(..., rng=random.Random(0)) x{draws}, twice",
            "expected the same actions from equally seeded rngs, got different ones",
            "random actions do not come from the rng argument (global random, numpy or torch RNG?)",
        )
    return f"eps=0 greedy on {len(states)} states; eps=1 uniform over {n_actions} actions ({counts}) from the given rng"
