"""The conformance kit: check any DQN implementation against the reference, property by property.

- `dqnbench.conformance.adapter`: the `DQNAdapter` protocol an implementation fills in, `REFERENCE`, `load_adapter`.
- `dqnbench.conformance.checks`: one `check_*` per property, `run_check` / `run_all`.
- `dqnbench.conformance.plugin`: the pytest plugin (`--dqn-impl`, `--conformance-json`, the summary table).
- `dqnbench.conformance.golden`: the shipped golden data and `dqnbench golden --out DIR`.
- `dqnbench.conformance.example`: a worked example, a user's own DQN and its adapter.

    python -m pytest --pyargs dqnbench.conformance --dqn-impl=package.module:object
"""
