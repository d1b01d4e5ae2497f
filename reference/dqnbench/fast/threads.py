"""Run small CPU tensor work on one thread.

The fast path's per-frame and per-batch operations touch tens of kilobytes each. Splitting them across
torch's intra-op threads saves little, and when the cores are busy with other work the OpenMP barriers
make them 5-100x slower (seen on a shared 2-core machine: a 2 ms resize took 10-200 ms with 2 threads).
"""

from __future__ import annotations

from types import TracebackType

import torch


class single_threaded:
    """Within the block, CPU tensor ops use one thread (no effect for other devices).

    A class, not a generator-based context manager: it is entered once per screen, where a few microseconds count.
    """

    def __init__(self, device: torch.device) -> None:
        self._restore = 0
        self._device = device

    def __enter__(self) -> None:
        threads = torch.get_num_threads()
        if self._device.type == "cpu" and threads != 1:
            self._restore = threads
            torch.set_num_threads(1)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._restore:
            torch.set_num_threads(self._restore)
