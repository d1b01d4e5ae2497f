"""The seed's training plot: episode durations and their 100-episode running mean."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def running_mean(values: Sequence[float], window: int = 100) -> np.ndarray:
    """Mean of the last `window` values at each point from the `window`-th on (NaN before, as in the seed)."""
    data = np.asarray(values, dtype=float)
    means = np.full(data.shape, np.nan)
    if len(data) >= window:
        sums = np.cumsum(np.insert(data, 0, 0.0))
        means[window - 1 :] = (sums[window:] - sums[:-window]) / window
    return means


def plot_durations(durations: Sequence[int], path: Path, title: str = "Training") -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    episodes = np.arange(1, len(durations) + 1)
    ax.plot(episodes, durations, label="duration", color="tab:blue", alpha=0.6)
    ax.plot(episodes, running_mean(durations), label="100-episode mean", color="tab:orange", linewidth=2)
    ax.set(title=title, xlabel="episode", ylabel="duration (steps)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
