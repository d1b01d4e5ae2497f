"""Target-network checks: an independent copy, eval mode, full synchronisation."""

from __future__ import annotations

import torch
from torch import nn

from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks.core import (
    build_network,
    fail,
    invoke,
    mismatch,
    register_check,
    require_mode_dependent_layers,
    screens,
)


def _perturb(net: nn.Module) -> None:
    """Change every parameter and BatchNorm buffer of `net` in place."""
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.25)
        net.train()
        net(screens(8, 300) * 2)


def _first_difference(a: nn.Module, b: nn.Module) -> str | None:
    state_a, state_b = a.state_dict(), b.state_dict()
    for name, value in state_a.items():
        problem = mismatch(state_b[name].cpu(), value.cpu(), atol=0, rtol=0, what=f"{name} entries")
        if problem:
            return f"{name!r}: {problem}"
    return None


def _shared_storage(a: nn.Module, b: nn.Module) -> list[str]:
    pointers = {t.data_ptr() for t in a.state_dict().values() if t.numel()}
    return [name for name, t in b.state_dict().items() if t.numel() and t.data_ptr() in pointers]


def _new_target(adapter: DQNAdapter, policy: nn.Module) -> nn.Module:
    """make_target(policy), which must not be the policy itself."""
    assert adapter.make_target is not None
    target: nn.Module = invoke("make_target(policy)", adapter.make_target, policy)
    if target is policy:
        raise fail(
            "make_target(policy)",
            "expected a new module, got the policy network itself",
            "the target is aliased to the policy network: use copy.deepcopy(policy)",
        )
    return target


@register_check("make_target")
def check_target_not_aliased(adapter: DQNAdapter) -> str:
    """make_target returns an equal but independent copy: changing the policy afterwards leaves it alone."""
    assert adapter.make_target is not None
    policy = build_network(adapter)
    target = _new_target(adapter, policy)
    difference = _first_difference(policy, target)
    if difference:
        raise fail(
            "make_target(policy)",
            f"target differs from the policy at {difference}",
            "the target must start as an exact copy (parameters and buffers)",
        )
    shared = _shared_storage(policy, target)
    if shared:
        raise fail(
            "make_target(policy)",
            f"target shares storage with the policy for {shared[:5]}",
            "the target is aliased to the policy network's tensors: use copy.deepcopy",
        )
    _perturb(policy)
    if _first_difference(policy, target) is None:
        raise fail(
            "make_target(policy), then changing the policy in place",
            "expected the target to keep its values, got the policy's new values",
            "the target is aliased to the policy network",
        )
    return "the target is an exact, independent copy"


@register_check("make_target")
def check_target_eval_mode(adapter: DQNAdapter) -> str:
    """The target network is in eval mode (every submodule) after make_target and after sync_target."""
    assert adapter.make_target is not None
    policy = build_network(adapter)
    require_mode_dependent_layers(adapter, policy, "the target's train/eval mode cannot matter")
    target = _new_target(adapter, policy)
    # Inspect after each call: sync_target may switch the target to eval and hide make_target's omission.
    _require_eval_mode("make_target(policy)", target)
    if adapter.sync_target is not None:
        invoke("sync_target(policy, target)", adapter.sync_target, policy, target)
        _require_eval_mode("make_target(policy); sync_target(policy, target)", target)
    return "target in eval mode" + (" after creation and after sync" if adapter.sync_target else " after creation")


def _require_eval_mode(call: str, module: nn.Module) -> None:
    training = [name or "<root>" for name, m in module.named_modules() if m.training]
    if training:
        raise fail(
            call,
            f"expected every submodule in eval mode, got train mode in {training[:5]}",
            "target left in train mode: its BatchNorm layers would use batch statistics and move "
            "their running statistics; call target.eval()",
        )


@register_check("sync_target")
def check_target_sync(adapter: DQNAdapter) -> str:
    """sync_target copies every parameter and BatchNorm buffer, keeps the target in eval mode and shares nothing."""
    assert adapter.sync_target is not None
    policy = build_network(adapter)
    target = build_network(adapter, seed=1).eval()
    _perturb(policy)
    invoke("sync_target(policy, target)", adapter.sync_target, policy, target)
    difference = _first_difference(policy, target)
    if difference:
        cause = (
            "BatchNorm running statistics were not copied: copy buffers too (load_state_dict(policy.state_dict()))"
            if "running" in difference or "num_batches" in difference
            else "parameters were not copied"
        )
        raise fail("sync_target(policy, target)", f"target differs from the policy at {difference}", cause)
    if target.training:
        raise fail(
            "sync_target(policy, target)",
            "expected the target in eval mode, got train mode",
            "sync_target must leave the target in eval mode",
        )
    shared = _shared_storage(policy, target)
    if shared:
        raise fail(
            "sync_target(policy, target)",
            f"target shares storage with the policy for {shared[:5]}",
            "the target is aliased to the policy network's tensors: copy values, not references",
        )
    return "parameters and BatchNorm buffers copied, eval mode kept, no shared storage"
