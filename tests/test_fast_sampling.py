"""`ReferenceSampler` draws exactly what the reference replay memory's `random.Random(seed).sample` draws."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqnbench.fast.sampling import ReferenceSampler

# (n, k) pairs around Random.sample's switch between its two methods: for k = 128 it draws from a pool while
# n <= 21 + 4**5 = 1045, and into a set above.
BOUNDARY = [(1045, 128), (1046, 128), (1045, 1045), (1046, 1046), (27, 6), (26, 6), (85, 6)]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**63),
    calls=st.lists(
        st.integers(1, 1 << 20).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, min(n, 300)))),
        min_size=1,
        max_size=12,
    )
    | st.lists(st.sampled_from(BOUNDARY), min_size=1, max_size=6),
)
def test_every_call_draws_what_random_sample_draws(seed: int, calls: list[tuple[int, int]]) -> None:
    python, ours = random.Random(seed), ReferenceSampler(seed)
    for index, (n, k) in enumerate(calls):
        expected = python.sample(range(n), k)
        got = ours.sample(n, k)
        assert got.dtype == np.int64
        assert got.tolist() == expected, f"call {index}: sample(range({n}), {k}) with seed {seed}"


def test_the_replay_memorys_draws_over_ten_thousand_batches() -> None:
    python, ours = random.Random(0), ReferenceSampler(0)
    for size in (128, 1000, 5000, *([10000] * 10000)):
        assert ours.sample(size, 128).tolist() == python.sample(range(size), 128), f"memory of {size}"


@pytest.mark.parametrize(
    ("n", "k", "message"),
    [(5, 6, r"sample\(n=5, k=6\): need 0 <= k <= n"), (5, -1, "need 0 <= k <= n"), (1 << 32, 1, "below 2\\*\\*32")],
)
def test_impossible_draws_are_refused_naming_the_sizes(n: int, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReferenceSampler(0).sample(n, k)
