"""Other DQN implementations behind the conformance kit's adapter protocol, each as `dqnbench.peers.<name>:ADAPTER`.

- `sb3`: Stable-Baselines3's `DQN` (``pip install 'dqnbench[sb3]'``).
- `torchrl`: TorchRL's `DQNLoss`, `QValueActor` and replay buffer (``pip install 'dqnbench[torchrl]'``).
- `tianshou`: Tianshou's `DQN` algorithm and `ReplayBuffer` (``pip install 'dqnbench[tianshou]'``).
- `cleanrl_style`: a DQN written the way CleanRL's ``dqn.py`` is, without dqnbench (no extra needed).

Each adapter runs the library's own code and declares where the library differs from the reference by
design (`DQNAdapter.declared_differences`), so the conformance matrix shows those apart from bugs::

    dqnbench check --dqn-impl=dqnbench.peers.torchrl
"""

PEERS = ("sb3", "torchrl", "tianshou", "cleanrl_style")
"""The peer modules, each exposing ADAPTER."""
