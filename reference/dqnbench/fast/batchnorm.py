"""Training-mode BatchNorm for channels-last tensors on the CPU, with its statistics summed accurately.

PyTorch's CPU kernel for channels-last BatchNorm in training mode adds each channel's N*H*W values one at a
time in float32. On the seed's screens (differences of two frames: about 90 % zeros) the first conv's output is
mostly its bias, and over the 99,072 values per channel of a batch of 128 that running sum drifts: the batch
mean comes out 1.2e-4 off (0.04916 for 0.04904), and normalising by a standard deviation of ~0.05-0.1 turns it
into gradients 4e-3 away from the reference's (contiguous) step. Everywhere else (evaluation mode, other
layouts, CUDA, reduced or mixed precision, inside torch.compile with inductor) this module is `nn.BatchNorm2d`
unchanged. Its backward pass is once-differentiable: asking for a second derivative raises.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _per_channel(values: Tensor) -> Tensor:
    return values[None, :, None, None]


class _TwoPassBatchNorm(torch.autograd.Function):
    """Training-mode batch norm from two-pass statistics; returns (output, mean, biased variance)."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        batch, channels = x.shape[:2]
        count = x.numel() // channels
        # Each sample's sums first, then the batch's: short sums, and N x C of them to share among threads (one
        # sum over all N*H*W values per channel runs on one thread, at twice the time with one thread here).
        mean = x.sum(dim=(2, 3)).sum(0).div_(count)
        centred = x - _per_channel(mean)
        # Channels-last: each sample's (H*W, channels) rows are a view, and the diagonals of their Gram matrices
        # are its channels' sums of squares, accumulated in blocks by one batched GEMM, parallel over the batch
        # (square() then sum() takes half as long again; one GEMM over all N*H*W rows runs on one thread).
        rows = centred.permute(0, 2, 3, 1).reshape(batch, -1, channels)
        var = torch.bmm(rows.transpose(1, 2), rows).sum(0).diagonal().div(count)
        zero = torch.zeros_like(mean)
        # Evaluation mode applies the statistics it is given in one fused pass.
        out = torch.batch_norm(centred, weight, bias, zero, var, False, 0.0, eps, True)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(centred, weight, zero, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable  # the saved statistics carry no graph: no second derivative
    def backward(ctx: Any, grad_out: Tensor, *_: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        centred, weight, zero, invstd = ctx.saved_tensors
        wanted = list(ctx.needs_input_grad[:3])
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_out, centred, weight, None, None, zero, invstd, True, ctx.eps, wanted
        )
        return grad_x, grad_weight, grad_bias, None


class AccurateBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose training-mode statistics on channels-last CPU input are summed accurately."""

    def forward(self, x: Tensor) -> Tensor:
        accurate = (
            # torch.compile's inductor lowers nn.BatchNorm2d to reductions of its own (Welford), accurate already.
            not torch.compiler.is_compiling()
            and self.training
            and x.device.type == "cpu"
            # Mixed precision (autocast, a bf16 input) is nn.BatchNorm2d's to handle.
            and x.dtype in (torch.float32, torch.float64)
            and (self.weight is None or x.dtype == self.weight.dtype)
            and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and x.numel() > x.shape[1]  # one value per channel: let nn.BatchNorm2d raise its error
        )
        if not accurate:
            return super().forward(x)
        out, mean, var = _TwoPassBatchNorm.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            assert self.running_mean is not None and self.running_var is not None
            assert self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                count = x.numel() // x.shape[1]
                # As ATen updates them: the running variance takes the unbiased batch variance.
                self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var * (count / (count - 1)), alpha=momentum)
        return out


def accurate_batchnorm(net: nn.Module) -> nn.Module:
    """`net` with each `nn.BatchNorm2d` made, in place, an `AccurateBatchNorm2d`: the same module object, so its
    parameters (an optimiser built before still updates them), buffers and hooks are kept."""
    for module in net.modules():
        if type(module) is nn.BatchNorm2d:
            # The subclass adds behaviour, not state: changing the class is the whole conversion.
            module.__class__ = AccurateBatchNorm2d
    return net
