"""Screen extraction per frame: render included, and processing only (crop + resize of a rendered frame)."""

from __future__ import annotations

from itertools import cycle

import pytest
import torch

from dqnbench.bench.subjects import BenchSubject
from dqnbench.bench.workload import SCREEN_HEIGHT, Frame, random_cartpole_states, render_frames, set_state
from dqnbench.envs import make_env


@pytest.fixture(scope="session")
def frames(pool_size: int) -> list[Frame]:
    return render_frames(pool_size)


def test_screen_render(timed, subject: BenchSubject, device: torch.device, pool_size: int) -> None:
    subject.require("get_screen")
    get_screen = subject.get_screen
    assert get_screen is not None
    env = make_env()
    env.reset(seed=0)
    states = cycle(random_cartpole_states(pool_size))

    def extract() -> torch.Tensor:
        set_state(env, next(states))
        return get_screen(env, SCREEN_HEIGHT).to(device)

    try:
        timed("screen-render", extract, batch_size=1)
    finally:
        env.close()


def test_screen_process(timed, subject: BenchSubject, device: torch.device, frames: list[Frame]) -> None:
    subject.require("extract_screen")
    process = subject.extract_screen
    assert process is not None
    pending = cycle(frames)

    def extract() -> torch.Tensor:
        frame = next(pending)
        return process(frame.pixels, frame.cart_x).to(device)

    timed("screen-process", extract, batch_size=1)
