"""The fast optimisation step over fixed-shape buffers, replayed as one CUDA graph.

On a GPU a batch-128 step of this small network is launch-bound: ~150 kernels of a few microseconds each,
and the host's time to issue them is the step's time. A CUDA graph issues them all with one call. Capture
needs every shape fixed and no host-device synchronisation inside the step, but the seed's batch keeps next
states only for the K transitions that continue, K varying per batch (`Batch.non_final_next_states`). So:

- a batch from `ScreenMemory` already holds a next state in every row (`ScreenBatch.dense`), used as it is;
  otherwise the K next states are copied into the first K rows of a B-row buffer, and `rows` (the inclusive
  cumulative sum of the non-final mask, minus one) says which buffer row holds each transition's next state;
  it is computed on the device, so the host never reads K's layout;
- the target evaluates all B rows (in eval mode every row is independent, so stale rows change nothing),
  and `torch.where` on the mask drops the values of final transitions, as the seed's zero fill does;
- the optimiser runs with `capturable=True`, which keeps its step count on the device.

The result equals `fast_optimize_step` within 1e-5 with TF32 off (`tests/test_fast_graphs.py`, CUDA; with
TF32, cuDNN's rounding differs between the two steps' target passes, which evaluate different batch shapes).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dqnbench.fast.learner import FoldedTarget, td_update, use_foreach
from dqnbench.fast.memory import DenseBatch, ScreenBatch
from dqnbench.learner import Batch, ReplayBatch, bellman_targets, best_next_values

WARMUP_STEPS = 3
"""Eager steps on a side stream before capture, so that lazy initialisation (cuBLAS/cuDNN handles, the
optimiser's state) happens outside the graph; their effects on the networks are undone."""


class StaticStep:
    """One optimisation step that reads its batch from buffers of fixed shape (the graph's body).

    `load(batch)` copies a seed-layout batch into the buffers; `load_dense` a `DenseBatch` (a next state per row).
    `__call__()` runs the step on whatever the buffers hold and returns the loss tensor (a buffer too).
    """

    def __init__(
        self,
        policy: nn.Module,
        target: FoldedTarget,
        optimizer: torch.optim.Optimizer,
        *,
        batch_size: int,
        state_shape: tuple[int, int, int],
        gamma: float,
        grad_clip: float = 1.0,
        double_dqn: bool = False,
    ) -> None:
        self.policy, self.target, self.optimizer = policy, target, optimizer
        self.gamma, self.grad_clip, self.double_dqn = gamma, grad_clip, double_dqn
        device = next(policy.parameters()).device
        shape = (batch_size, *state_shape)
        self.states = torch.zeros(shape, device=device).contiguous(memory_format=torch.channels_last)
        # Zeros, not empty: rows beyond K are read by the target (then masked), and must stay finite.
        self.next_states = torch.zeros_like(self.states)
        self.actions = torch.zeros((batch_size, 1), dtype=torch.long, device=device)
        self.rewards = torch.zeros(batch_size, device=device)
        self.continues = torch.zeros(batch_size, dtype=torch.bool, device=device)
        self.rows = torch.zeros(batch_size, dtype=torch.long, device=device)

    def _check(self, states: Tensor) -> None:
        if states.shape != self.states.shape:
            raise ValueError(
                f"StaticStep: batch states {tuple(states.shape)}, expected {tuple(self.states.shape)}; "
                "a CUDA-graphed step is captured for one batch size and screen shape"
            )

    def load(self, batch: Batch) -> None:
        """Copy a seed-layout batch (K next states for the K non-final transitions) into the buffers."""
        self._check(batch.states)
        size = self.states.shape[0]
        self.states.copy_(batch.states)
        self.next_states[: batch.non_final_next_states.shape[0]].copy_(batch.non_final_next_states)
        self.actions.copy_(batch.actions)
        self.rewards.copy_(batch.rewards)
        self.continues.copy_(batch.non_final_mask)
        torch.cumsum(self.continues, dim=0, out=self.rows)
        self.rows.sub_(1).clamp_(0, size - 1)

    def load_dense(self, batch: DenseBatch) -> None:
        """Copy a batch with a next state in every row (rows that do not continue are ignored)."""
        self._check(batch.states)
        self.states.copy_(batch.states)
        self.next_states.copy_(batch.next_states)
        self.actions.copy_(batch.actions)
        self.rewards.copy_(batch.rewards)
        self.continues.copy_(batch.continues)
        torch.arange(self.rows.shape[0], out=self.rows)

    def _next_state_values(self) -> Tensor:
        best = best_next_values(self.target, self.next_states, self.policy if self.double_dqn else None)
        return best[self.rows]

    def __call__(self) -> Tensor:
        targets = bellman_targets(self.rewards, self._next_state_values(), self.continues, self.gamma)
        return td_update(self.policy, self.optimizer, self.states, self.actions, targets, self.grad_clip)


ZERO_INITIALISED_OPTIMIZERS = (torch.optim.RMSprop, torch.optim.Adam, torch.optim.AdamW)
"""Optimizers whose state is all zeros before their first step (step count, averages, momentum)."""


class GraphedStep:
    """`fast_optimize_step` as a CUDA graph: captured at the first batch, replayed for every later one.

    The batch size and screen shape of the first batch are fixed from then on, and so are the optimizer's
    learning rates and the policy's train/eval mode: a later call that finds them changed raises instead of
    replaying the old ones. The target may change between calls (`sync_target`): its folded copy is refreshed
    in place before each replay.
    """

    def __init__(
        self,
        policy: nn.Module,
        target: FoldedTarget,
        optimizer: torch.optim.Optimizer,
        *,
        gamma: float,
        grad_clip: float = 1.0,
        double_dqn: bool = False,
    ) -> None:
        if type(optimizer) not in ZERO_INITIALISED_OPTIMIZERS:
            names = ", ".join(kind.__name__ for kind in ZERO_INITIALISED_OPTIMIZERS)
            raise ValueError(
                f"GraphedStep: optimizer {type(optimizer).__name__} is not supported; use one of {names} (their "
                "state starts at zero, which is how the warm-up before capture is undone), or fast_optimize_step"
            )
        owned = {id(param) for param in policy.parameters()}
        if any(id(param) not in owned for group in optimizer.param_groups for param in group["params"]):
            raise ValueError(
                "GraphedStep: the optimizer updates parameters outside the policy, which the warm-up before "
                "capture would train without undoing; give it the policy's parameters only"
            )
        device = next(policy.parameters()).device
        if device.type != "cuda":
            raise ValueError(
                f"GraphedStep: the policy is on {device}; CUDA graphs need a CUDA device "
                "(move the networks with .to('cuda'), or use fast_optimize_step)"
            )
        use_foreach(optimizer)
        make_capturable(optimizer, device)
        self.policy, self.target, self.optimizer = policy, target, optimizer
        self.gamma, self.grad_clip, self.double_dqn = gamma, grad_clip, double_dqn
        self.step: StaticStep | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: Tensor | None = None
        self.captured_with: tuple[list[float], bool] | None = None
        """The learning rates and the policy's training flag the graph was recorded with."""

    def __call__(self, batch: ReplayBatch) -> Tensor:
        if isinstance(batch, ScreenBatch):
            # Its dense form needs no host-device synchronisation (materialize's boolean indexing does).
            return self.dense(batch.dense())
        seed_batch = batch.materialize()
        step = self._prepared(seed_batch.states.shape[0], tuple(seed_batch.states.shape[1:]))
        step.load(seed_batch)
        return self._replay()

    def dense(self, batch: DenseBatch) -> Tensor:
        """The step on a batch with a next state in every row."""
        step = self._prepared(batch.states.shape[0], tuple(batch.states.shape[1:]))
        step.load_dense(batch)
        return self._replay()

    def _settings(self) -> tuple[list[float], bool]:
        return [float(group["lr"]) for group in self.optimizer.param_groups], self.policy.training

    def _prepared(self, batch_size: int, state_shape: tuple[int, ...]) -> StaticStep:
        if len(state_shape) != 3:
            raise ValueError(f"GraphedStep: states of shape {state_shape} per transition; expected (C, H, W)")
        if self.step is None:
            channels, height, width = state_shape
            self.step = StaticStep(
                self.policy,
                self.target,
                self.optimizer,
                batch_size=batch_size,
                state_shape=(channels, height, width),
                gamma=self.gamma,
                grad_clip=self.grad_clip,
                double_dqn=self.double_dqn,
            )
        return self.step

    def _replay(self) -> Tensor:
        assert self.step is not None
        self.target.refresh()
        if self.graph is None or self.loss is None:
            self.graph, self.loss = self._capture(self.step)
            self.captured_with = self._settings()
        elif self._settings() != self.captured_with:
            raise ValueError(
                f"GraphedStep: (learning rates, policy.training) changed from {self.captured_with} to "
                f"{self._settings()} since the graph was captured, which would replay the old ones; "
                "make a new GraphedStep after changing them"
            )
        self.graph.replay()
        return self.loss.clone()

    def _capture(self, step: StaticStep) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        saved = _snapshot(self.policy, self.optimizer)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                step()
        torch.cuda.current_stream().wait_stream(side)
        _restore(saved, self.policy, self.optimizer)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = step()
        return graph, loss


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Switch `optimizer` to the form a CUDA graph can replay: its step counts on the device, read there."""
    for group in optimizer.param_groups:
        group["capturable"] = True
    for entry in optimizer.state.values():
        # An optimizer that already stepped eagerly counts its steps on the host; capturable needs them here.
        if isinstance(entry.get("step"), Tensor):
            entry["step"] = entry["step"].to(device, torch.float32)


Snapshot = tuple[list[Tensor], dict[int, dict[str, Tensor]]]


def _snapshot(policy: nn.Module, optimizer: torch.optim.Optimizer) -> Snapshot:
    """Copies of the policy's parameters and buffers and of the optimizer's existing state tensors."""
    tensors = [t.detach().clone() for t in policy.state_dict().values()]
    state = {
        id(param): {key: value.clone() for key, value in entry.items() if isinstance(value, Tensor)}
        for param, entry in optimizer.state.items()
    }
    return tensors, state


def _restore(saved: Snapshot, policy: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Undo the warm-up in place (the graph will read these very tensors): state the warm-up created is
    zeroed, which is how RMSprop and Adam initialise it (step 0, zero averages)."""
    tensors, state = saved
    with torch.no_grad():
        for current, before in zip(policy.state_dict().values(), tensors, strict=True):
            current.copy_(before)
        for param, entry in optimizer.state.items():
            for key, value in entry.items():
                if isinstance(value, Tensor):
                    previous = state.get(id(param), {}).get(key)
                    if previous is None:
                        value.zero_()
                    else:
                        value.copy_(previous)
