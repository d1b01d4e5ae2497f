"""Helpers shared by the correctness tests."""

from collections.abc import Mapping

import torch
from torch import Tensor, nn


def snapshot(net: nn.Module) -> dict[str, Tensor]:
    """A copy of every parameter and buffer (BatchNorm running statistics and batch counts included)."""
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


def assert_same_state(expected: Mapping[str, Tensor], got: Mapping[str, Tensor], what: str) -> None:
    """Element-by-element equality of two state dicts; a failure names the entry and the largest difference."""
    assert expected.keys() == got.keys(), f"{what}: entries differ: {sorted(expected.keys() ^ got.keys())}"
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=lambda m, name=name: f"{what}, {name}: {m}")


def changed_entries(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> list[str]:
    return [name for name, value in before.items() if not torch.equal(value, after[name])]
