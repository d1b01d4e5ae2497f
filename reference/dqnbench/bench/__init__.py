"""Benchmark support: recorded facts, implementations under test, workloads, and the regression gate.

The benchmarks themselves live in the repository's `benchmarks/` folder (run with `pytest benchmarks/`);
this package holds what they share and what must be importable and tested: `facts` (machine and process
facts), `subjects` (implementations as benchmark parameters), `workload` (the data a benchmark runs on),
`measure` (the timed call), `history` (the run store) and `compare` (the gate).
"""
