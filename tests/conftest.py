"""Session-wide set-up of the test suite."""

# pytester's in-process runs (tests/test_bench_suite.py) drop the modules a run imported when it ends. Two
# kinds cannot be imported twice: torch._inductor.test_operators (imported by torchvision through
# torch._dynamo) registers torch operators, and a second dqnbench.registry would not recognise the
# Implementation class of the first. The conformance plugin imports torch and the kit only in runs that use
# them, so the suite imports them once, before any in-process run.
import dqnbench.conformance.checks
import dqnbench.parts
import dqnbench.registry  # noqa: F401
