"""The conformance kit: check any DQN implementation against the reference, property by property.

- `dqnbench.conformance.adapter`: the `DQNAdapter` protocol an implementation fills in, `REFERENCE`, `load_adapter`.
- `dqnbench.conformance.checks`: one `check_*` per property, `run_check` / `run_all`.
- `dqnbench.conformance.plugin`: the pytest plugin (`--dqn-impl`, `--conformance-json`, the summary table).
- `dqnbench.conformance.golden`: the shipped golden data and `dqnbench golden --out DIR`.
- `dqnbench.conformance.example`: a worked example, a user's own DQN and its adapter.
- `dqnbench.conformance.cli`: `dqnbench check`, a front to the command below.
- `dqnbench.peers`: adapters for other DQN libraries (SB3, TorchRL, Tianshou, a CleanRL-style DQN).

    python -m pytest --pyargs dqnbench.conformance --dqn-impl=package.module:object
    dqnbench check --dqn-impl=package.module:object

This package's own import is light (no torch): the pytest plugin imports it in every pytest run.
"""

REFERENCE_SPEC = "dqnbench.conformance.adapter:REFERENCE"
"""The `--dqn-impl` value that selects dqnbench's own implementation (the default)."""
DEFAULT_OBJECT = "ADAPTER"
"""The object `--dqn-impl=package.module` names when no ``:object`` is given."""
