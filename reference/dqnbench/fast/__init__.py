"""dqnbench's fast implementation: the reference's behaviour in less time and memory (README.md, The fast path).

`IMPLEMENTATION` is registered as `fast`: `FAST_PARTS` train (`dqnbench train --impl fast`), `ADAPTER` is what the
conformance kit checks (`dqnbench check --dqn-impl fast`); `dqnbench.fast.vector` trains many environments at
once on a GPU.
"""

from dqnbench.fast.adapter import ADAPTER
from dqnbench.fast.parts import EXACT_PARTS, FAST_PARTS
from dqnbench.registry import Implementation

IMPLEMENTATION = Implementation(name="fast", parts=FAST_PARTS, adapter=ADAPTER)
"""Registered as `fast` (`dqnbench.implementations` entry point)."""

__all__ = ["ADAPTER", "EXACT_PARTS", "FAST_PARTS", "IMPLEMENTATION"]
