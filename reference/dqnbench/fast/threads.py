"""Run small CPU tensor work on one thread.

The fast path's per-frame and per-batch operations touch tens of kilobytes each. Splitting them across
torch's intra-op threads saves little, and when the cores are busy with other work the OpenMP barriers
make them 5-100x slower (seen on a shared 2-core machine: a 2 ms resize took 10-200 ms with 2 threads).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Within the block, CPU tensor ops use one thread (no effect for other devices)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
