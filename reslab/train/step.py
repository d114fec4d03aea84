"""One optimizer step, shared by the trainer and the throughput benchmark."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from reslab.tasks.common import autocast_context, flat_outputs


class TrainStep:
    """``step(x, y)``: forward, loss, backward, (clip), SGD step, (EMA) on one global batch.

    Args:
        net: what runs forward — the model, or its DDP / ``torch.compile`` wrapper.
        model: the plain model (its parameters are clipped; the EMA reads it).
        optimizer, criterion: the optimizer (its lr set by the caller) and the training loss.
        accumulate: split the batch into this many micro-batches ``x[j::accumulate]``
            (strided, so that micro-batch j holds what rank j of ``accumulate`` ranks would get
            from the DeviceLoader; accumulate=W in one process reproduces W DDP ranks).
        grad_clip: max global gradient norm, 0 = off.
        bf16: autocast to bfloat16 (CUDA, or CPU: the trainer decides where it pays off).
        ema: a :class:`~reslab.train.ema.ModelEMA` to update after each step, or None.
        ddp: the DistributedDataParallel wrapper when there is one (its ``no_sync`` skips the
            all-reduce of all but the last micro-batch).
        flatten: the task's view of outputs and targets as ``(n, K)`` logits and ``(n,)`` targets
            (:meth:`reslab.tasks.Task.flatten`; default: images and tokens).

    Returns ``(loss·n, wrong)`` as 0-d tensors on the device: the caller sums them without a
    host sync and reads them only now and then.
    """

    def __init__(self, net: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, *,
                 accumulate: int = 1, grad_clip: float = 0.0, bf16: bool = False, ema=None, ddp=None,
                 flatten=flat_outputs) -> None:
        self.net, self.model, self.optimizer, self.criterion = net, model, optimizer, criterion
        self.flatten = flatten
        self.accumulate, self.grad_clip, self.bf16, self.ema, self.ddp = accumulate, grad_clip, bf16, ema, ddp

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float (B, C, H, W) on the device and y: int64 (B,); tokens x, y: int64 (B, T); masks y: (B, H, W)."""
        self.optimizer.zero_grad(set_to_none=True)
        parts = self.accumulate
        loss_sum = torch.zeros((), device=x.device)
        wrong = torch.zeros((), dtype=torch.int64, device=x.device)
        for j in range(parts):
            xj, yj = (x, y) if parts == 1 else (x[j::parts], y[j::parts])
            skip_sync = self.ddp is not None and j < parts - 1
            with self.ddp.no_sync() if skip_sync else contextlib.nullcontext():
                with autocast_context(x.device, self.bf16):
                    logits, yj = self.flatten(self.net(xj).float(), yj)
                    loss = self.criterion(logits, yj)
                (loss / parts).backward()
            loss_sum += loss.detach() * yj.numel()
            wrong += (logits.detach().argmax(dim=1) != yj).sum()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss_sum, wrong
