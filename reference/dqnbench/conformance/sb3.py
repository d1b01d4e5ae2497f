"""Moved to `dqnbench.peers.sb3`; this name stays because published commands use ``dqnbench.conformance.sb3:SB3``."""

from dqnbench.peers.sb3 import ADAPTER, SB3, SB3_NATURE_CNN, SB3_WITHOUT_TIMEOUT_HANDLING

__all__ = ["ADAPTER", "SB3", "SB3_NATURE_CNN", "SB3_WITHOUT_TIMEOUT_HANDLING"]
