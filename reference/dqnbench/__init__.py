"""dqnbench: the classic pixel-CartPole DQN as a tested reference, a conformance kit and a benchmark suite."""

__version__ = "0.1.0"
