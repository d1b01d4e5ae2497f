"""dqnbench's fast implementation: the reference's behaviour in less time and memory (README.md, The fast path).

`FAST_PARTS` plugs into `dqnbench train --impl fast`; `ADAPTER` into the conformance kit
(`--dqn-impl=dqnbench.fast:ADAPTER`); `dqnbench.fast.vector` trains many environments at once on a GPU.
"""

from dqnbench.fast.adapter import ADAPTER
from dqnbench.fast.parts import EXACT_PARTS, FAST_PARTS

__all__ = ["ADAPTER", "EXACT_PARTS", "FAST_PARTS"]
