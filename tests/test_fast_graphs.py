"""The CUDA-graphed optimisation step computes the fast step: loss, gradients and update within 1e-5.

Its body (`StaticStep`: fixed-shape buffers, next states located through `rows`) is checked on the CPU against
`fast_optimize_step`; the capture and replay (`GraphedStep`) on CUDA, over batches with different numbers of
final transitions and a target sync between them.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dqnbench.config import DQNConfig
from dqnbench.fast.gpu_check import random_batch
from dqnbench.fast.graphs import GraphedStep, StaticStep
from dqnbench.fast.learner import FoldedTarget, fast_optimize_step, td_update, use_foreach
from dqnbench.fast.memory import DenseBatch, ScreenBatch
from dqnbench.fast.parts import FAST_PARTS, make_network
from dqnbench.fast.vector import VectorTrainer
from dqnbench.learner import Batch, make_target, optimize_step, sync_target
from dqnbench.nets import DQN
from dqnbench.train import make_optimizer, train
from support import assert_as_accurate_as_reference, assert_same_step, float64_step, needs_cuda, screen_batch
from test_fast_vector import assert_device_counters_follow_the_host


def _twins(device: str = "cpu") -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    first = make_network(40, 90, 2).to(device)
    second = copy.deepcopy(first)
    return first, second


def _optimizer(net: nn.Module, kind: str = "rmsprop") -> torch.optim.Optimizer:
    params = net.parameters()
    optimizer = torch.optim.RMSprop(params, lr=0.01) if kind == "rmsprop" else torch.optim.Adam(params, lr=1e-4)
    use_foreach(optimizer)
    return optimizer


def _static_step(net: nn.Module, *, double_dqn: bool = False) -> StaticStep:
    return StaticStep(
        net,
        FoldedTarget(make_target(net)),
        _optimizer(net),
        batch_size=16,
        state_shape=(3, 40, 90),
        gamma=0.999,
        double_dqn=double_dqn,
    )


def _all_continuing(batch: Batch) -> Batch:
    """`batch` with no final transition (K = B: every row of the next-state buffer is used)."""
    mask = torch.ones_like(batch.non_final_mask)
    return Batch(batch.states, batch.actions, batch.rewards, mask, torch.rand_like(batch.states) - 0.5)


@pytest.mark.parametrize("double_dqn", [False, True], ids=["dqn", "double_dqn"])
@pytest.mark.parametrize("final_every", [1, 3, 0], ids=["all-final", "some-final", "none-final"])
def test_static_step_equals_the_fast_step(double_dqn, final_every):
    eager, static = _twins()
    batch = random_batch(16, final_every=final_every) if final_every else _all_continuing(random_batch(16))
    expected = fast_optimize_step(
        eager, FoldedTarget(make_target(eager)), _optimizer(eager), batch, gamma=0.999, double_dqn=double_dqn
    )
    step = _static_step(static, double_dqn=double_dqn)
    # Stale rows from an earlier, larger batch must not leak into this one's targets.
    step.next_states.fill_(1e3)
    step.load(batch)
    assert_same_step(f"StaticStep(final_every={final_every})", eager, static, expected, step())


def test_static_step_on_a_dense_batch_equals_the_dense_fast_step():
    eager, static = _twins()
    seed_batch = random_batch(16, final_every=4)
    next_states = torch.rand(16, 3, 40, 90)
    dense = DenseBatch(
        states=seed_batch.states,
        actions=seed_batch.actions,
        rewards=seed_batch.rewards,
        continues=seed_batch.non_final_mask,
        next_states=next_states,
    )
    eager_optimizer = _optimizer(eager)
    targets = dense.targets(FoldedTarget(make_target(eager)), 0.999)
    expected = td_update(eager, eager_optimizer, dense.states, dense.actions, targets, 1.0)
    step = _static_step(static)
    step.load_dense(dense)
    assert_same_step("StaticStep.load_dense", eager, static, expected, step())


def test_static_step_refuses_another_batch_shape():
    _, net = _twins()
    step = _static_step(net)
    with pytest.raises(ValueError, match=r"StaticStep: batch states \(8, 3, 40, 90\), expected \(16, 3, 40, 90\)"):
        step.load(random_batch(8))


def test_graphed_step_refuses_a_cpu_policy():
    net, _ = _twins()
    with pytest.raises(ValueError, match="GraphedStep: the policy is on cpu; CUDA graphs need a CUDA device"):
        GraphedStep(net, FoldedTarget(make_target(net)), _optimizer(net), gamma=0.999)


def test_graphed_step_refuses_optimizers_whose_warm_up_it_cannot_undo():
    net, other = _twins()
    with pytest.raises(ValueError, match="GraphedStep: optimizer NAdam is not supported; use one of RMSprop, Adam"):
        GraphedStep(net, FoldedTarget(make_target(net)), torch.optim.NAdam(net.parameters()), gamma=0.999)
    both = torch.optim.RMSprop([*net.parameters(), *other.parameters()])
    with pytest.raises(ValueError, match="the optimizer updates parameters outside the policy"):
        GraphedStep(net, FoldedTarget(make_target(net)), both, gamma=0.999)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is absent")
def test_training_with_cuda_graphs_is_refused_without_cuda_before_writing_anything(tmp_path):
    config = DQNConfig(impl="fast", cuda_graph=True, episodes=1).replace(out=tmp_path / "run")
    with pytest.raises(RuntimeError, match="--cuda-graph needs CUDA, and this run would train on cpu"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists(), "a refused run left its output folder behind"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"impl": "reference"}, "impl='reference'"),
        ({"impl": "fast", "compile": True}, "compile=True"),
        ({"impl": "fast", "device": "cpu"}, "device='cpu'"),
    ],
)
def test_cuda_graph_option_is_refused_where_it_cannot_run(changes, named):
    with pytest.raises(
        ValueError, match=rf"cuda_graph=True needs impl='fast', compile=False and a CUDA device .*{named}"
    ):
        DQNConfig(cuda_graph=True, **changes)


def test_cuda_graph_option_is_refused_with_a_learning_rate_schedule():
    with pytest.raises(ValueError, match="cuda_graph=True captures the learning rate as a constant"):
        DQNConfig(impl="fast", cuda_graph=True, learning_rate_final=1e-5, max_env_steps=1000)


def test_cuda_graph_option_selects_the_graphed_step():
    if torch.cuda.is_available():
        policy = make_network(40, 90, 2).to("cuda")
        config = DQNConfig(impl="fast", cuda_graph=True, device="cuda")
        step = FAST_PARTS.make_optimize(
            policy, make_target(policy), make_optimizer(policy.parameters(), config), config
        )
        assert isinstance(step, GraphedStep), f"make_optimize with cuda_graph=True returned {type(step).__name__}"
    else:
        policy = make_network(40, 90, 2)
        config = DQNConfig(impl="fast", cuda_graph=True)
        with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
            FAST_PARTS.make_optimize(policy, make_target(policy), make_optimizer(policy.parameters(), config), config)


def _in_lockstep(source: nn.Module, source_opt, dest: nn.Module, dest_opt) -> None:
    """Copy one network's parameters, buffers and optimizer averages into the other's tensors, in place (a graph
    keeps reading the same memory), so that rounding noise from one step does not carry into the next. The
    step counts are left alone: each side must count its own (Adam's bias correction depends on them)."""
    with torch.no_grad():
        for mine, theirs in zip(dest.state_dict().values(), source.state_dict().values(), strict=True):
            mine.copy_(theirs)
        for p_dest, p_source in zip(dest.parameters(), source.parameters(), strict=True):
            for key, value in dest_opt.state[p_dest].items():
                if key != "step":
                    value.copy_(source_opt.state[p_source][key])


def _batches(device: str) -> list[Batch]:
    batches = [random_batch(32, final_every=every, seed=seed) for seed, every in enumerate((5, 1, 3, 7))]
    return [batch.to(device) for batch in (*batches[:2], _all_continuing(random_batch(32, seed=9)), *batches[2:])]


def _screen_batches(device: str) -> list[ScreenBatch]:
    """`ScreenMemory`'s batches: uint8 screens, a next state in every row (the graphed step's dense path)."""
    g = torch.Generator().manual_seed(0)
    return [
        ScreenBatch(
            screens=torch.randint(0, 256, (32, 3, 3, 40, 90), dtype=torch.uint8, generator=g),
            actions=torch.randint(0, 2, (32, 1), generator=g),
            rewards=torch.ones(32),
            non_final_mask=torch.arange(32) % every != 0 if every else torch.ones(32, dtype=torch.bool),
            stack=False,
        ).to(device)
        for every in (5, 1, 0, 3, 7)
    ]


@pytest.fixture
def full_float32():
    """CUDA convolutions and matmuls in float32, deterministic: by default cuDNN may use TF32 (10-bit mantissa),
    whose rounding differs between algorithms, and the eager and graphed steps evaluate the target on different
    batch shapes."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic = saved


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
@pytest.mark.parametrize("memory", ["seed-layout", "screen-memory"])
@pytest.mark.parametrize("double_dqn", [False, True], ids=["dqn", "double_dqn"])
@pytest.mark.cuda
@needs_cuda
@pytest.mark.usefixtures("full_float32")
def test_graphed_step_equals_the_fast_step_on_cuda(double_dqn, memory, optimizer):
    eager, graphed = _twins("cuda")
    eager_target, graphed_target = make_target(eager), make_target(graphed)
    eager_opt, graphed_opt = _optimizer(eager, optimizer), _optimizer(graphed, optimizer)
    eager_folded = FoldedTarget(eager_target)
    step = GraphedStep(graphed, FoldedTarget(graphed_target), graphed_opt, gamma=0.999, double_dqn=double_dqn)
    for i, batch in enumerate(_batches("cuda") if memory == "seed-layout" else _screen_batches("cuda")):
        if i == 3:
            sync_target(eager, eager_target)
            sync_target(graphed, graphed_target)
        expected = fast_optimize_step(eager, eager_folded, eager_opt, batch, gamma=0.999, double_dqn=double_dqn)
        got = step(batch)
        assert_same_step(f"GraphedStep call {i + 1}", eager, graphed, expected, got)
        _in_lockstep(eager, eager_opt, graphed, graphed_opt)
    assert step.graph is not None, "the step never captured a graph"


@pytest.mark.parametrize("graphed", [False, True], ids=["eager", "graphed"])
@pytest.mark.cuda
@needs_cuda
@pytest.mark.usefixtures("full_float32")
def test_cuda_steps_equal_the_cpu_reference_step_on_screen_differences(graphed):
    """On the seed's real states (batch 128), where a BatchNorm summing naively drifts: CUDA against the CPU
    reference, as close to the float64 step as the reference itself (elementwise 1e-5 is not a property of
    float32 across devices here)."""
    batch = screen_batch()
    torch.manual_seed(0)
    reference = DQN(40, 90, 2)
    fast = make_network(40, 90, 2)
    fast.load_state_dict(reference.state_dict())
    fast.to("cuda")
    exact, exact_loss = float64_step(reference, batch, gamma=0.999, lr=0.01)
    reference_opt = torch.optim.RMSprop(reference.parameters(), lr=0.01)
    optimize_step(reference, make_target(reference), reference_opt, batch, gamma=0.999)
    target, optimizer = FoldedTarget(make_target(fast)), _optimizer(fast)
    if graphed:
        got = GraphedStep(fast, target, optimizer, gamma=0.999)(batch.to("cuda"))
    else:
        got = fast_optimize_step(fast, target, optimizer, batch.to("cuda"), gamma=0.999)
    fast.to("cpu")  # parameters and their gradients
    call = f"{'GraphedStep' if graphed else 'fast_optimize_step'} on CUDA"
    assert_as_accurate_as_reference(call, exact, reference, fast, exact_loss, got.cpu())


@pytest.mark.cuda
@needs_cuda
def test_graphed_step_refuses_to_replay_a_changed_learning_rate_or_mode():
    net, _ = _twins("cuda")
    optimizer = _optimizer(net)
    step = GraphedStep(net, FoldedTarget(make_target(net)), optimizer, gamma=0.999)
    batch = random_batch(32).to("cuda")
    step(batch)
    optimizer.param_groups[0]["lr"] = 0.001
    with pytest.raises(
        ValueError, match=r"GraphedStep: \(learning rates, policy.training\) changed from \(\[0.01\], True\)"
    ):
        step(batch)
    optimizer.param_groups[0]["lr"] = 0.01
    net.eval()
    with pytest.raises(ValueError, match=r"changed from \(\[0.01\], True\) to \(\[0.01\], False\)"):
        step(batch)


@pytest.mark.cuda
@needs_cuda
def test_training_with_cuda_graphs_runs(tmp_path):
    config = DQNConfig(
        impl="fast", cuda_graph=True, device="cuda", episodes=50, max_env_steps=300, batch_size=32, learning_starts=32
    ).replace(out=tmp_path / "run")
    result = train(config, progress=False)
    assert result.total_steps == 300, f"{result.total_steps} steps, expected 300"
    trainer = VectorTrainer(config, envs=8, device=torch.device("cuda"))
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    # 3 calls fill most of a batch of 32; the 4th runs 3 warm-up vector steps, captures one and replays it; 26
    # more replay it: 33 vector steps, 30 of them with an optimisation step.
    trainer.run(30)
    assert trainer.graph is not None, "the vector step was never captured"
    counted = (trainer.env_steps, trainer.optimize_steps)
    assert counted == (33 * 8, 30), f"(env steps, optimisation steps) = {counted}, expected (264, 30)"
    assert_device_counters_follow_the_host(trainer)
    assert trainer.loss is not None and bool(torch.isfinite(trainer.loss)), f"loss {trainer.loss}"
    moved = [not torch.equal(b, p) for b, p in zip(before, trainer.policy.parameters(), strict=True)]
    assert all(moved), f"parameters left unchanged by the replayed steps: {moved}"
    # The screens the graph keeps as the environments' last two are what the ring stored last for them.
    last = (trainer.memory.next - torch.arange(8, 0, -1)) % trainer.memory.capacity
    stored = trainer.memory.screens[last.to("cuda")]
    continuing = ~trainer.memory.final[last.to("cuda")]
    torch.testing.assert_close(stored[continuing, 2], trainer.current[continuing], rtol=0, atol=0)


@pytest.mark.parametrize("stack", [False, True], ids=["difference", "stack"])
def test_screen_batch_dense_form_holds_the_materialized_batch(stack):
    g = torch.Generator().manual_seed(1)
    span = 4 if stack else 2
    batch = ScreenBatch(
        screens=torch.randint(0, 256, (8, span + 1, 3, 40, 90), dtype=torch.uint8, generator=g),
        actions=torch.randint(0, 2, (8, 1), generator=g),
        rewards=torch.ones(8),
        non_final_mask=torch.tensor([True, False, True, True, False, True, True, True]),
        stack=stack,
    )
    seed, dense = batch.materialize(), batch.dense()
    torch.testing.assert_close(dense.states, seed.states, rtol=0, atol=0, msg=lambda m: f"dense().states: {m}")
    torch.testing.assert_close(
        dense.next_states[dense.continues],
        seed.non_final_next_states,
        rtol=0,
        atol=0,
        msg=lambda m: f"dense().next_states of the non-final rows vs materialize(): {m}",
    )
