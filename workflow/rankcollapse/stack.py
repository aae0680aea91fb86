"""A stack of M runs of one architecture, trained as one: each parameter stacked along a
leading run axis, one vectorised forward and backward (``torch.func.vmap``) for all runs.

Each run's module keeps its parameters as views into the stack, so that whatever reads a run
(its residuals, its checkpoint, its convergence phase afterwards) reads the stacked values
without a copy. Runs are independent: nothing mixes two runs' numbers, so one that turns NaN
leaves the others as they were.

On the CPU a run's numbers do not depend on what it is stacked with: every stacked matrix
product runs one run's slice on one thread, whatever M and the thread count. A stack of one
would hand its products to multi-threaded kernels, which round differently, so a stack of one
computes on one thread (:func:`Stack.computing`).
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from .losses import per_sample_loss

# vmap has no batching rule for CPU attention kernels and runs them once per run instead:
# correct, and said once per process in a warning that would only alarm a reader of the log.
warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")


class Stack:
    """The runs ``models`` (one architecture, one device and dtype) stacked; ``models[i]``'s
    parameters become views of slice i.
    """

    def __init__(self, models: list[nn.Module]):
        self.models = models
        self.names = [name for name, _ in models[0].named_parameters()]
        with torch.no_grad():
            self.params = {
                name: torch.stack([dict(m.named_parameters())[name] for m in models])
                for name in self.names
            }
        for i, model in enumerate(models):
            for name, p in model.named_parameters():
                p.data = self.params[name][i]
        # The architecture alone (no storage): what functional_call runs with each slice.
        self.base = copy.deepcopy(models[0]).to("meta")
        self.device = next(iter(self.params.values())).device

    def __len__(self) -> int:
        return len(self.models)

    @contextlib.contextmanager
    def computing(self):
        """Where the stack's work runs: a stack of one on one CPU thread (module docstring)."""
        if len(self) > 1 or self.device.type != "cpu" or torch.get_num_threads() == 1:
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def _batch_gradients(self, loss: dict, reduce_mean: bool, scale: float = 1.0):
        """vmap-ed ∇ of each run's loss on its own batch: the batch mean (``reduce_mean``) or
        the sum divided by ``scale``; also each run's loss and correct count.
        """

        def run_loss(params, x, y):
            out = functional_call(self.base, params, (x,))
            losses = per_sample_loss(out, y, **loss)
            value = losses.mean() if reduce_mean else losses.sum() / scale
            return value, (value.detach(), (out.argmax(1) == y).sum())

        return vmap(grad_and_value(run_loss, has_aux=True), in_dims=(0, 0, 0))

    def gradients(self, x: torch.Tensor, y: torch.Tensor, loss: dict):
        """For batches x (M × B × …) and labels y (M × B), one per run: each run's gradient of
        its batch mean loss (a dict of M × … tensors), mean loss (M) and correct count (M).
        """
        step = self._batch_gradients(loss, reduce_mean=True)
        grads, (_, (value, correct)) = step(self.params, x, y)
        return grads, value, correct

    def objective(self, x: torch.Tensor, y: torch.Tensor, loss: dict, wd: torch.Tensor, chunk=4096):
        """As :func:`.convergence.objective` for every run at once, on the full batch (x, y)
        shared by all: each run's mean loss (M) and F = mean loss + (λ/2) ‖θ‖² (M), with ∇F
        left in each run's module's ``.grad`` (views of stacked tensors).
        """
        n, m = x.shape[0], len(self)
        step = self._batch_gradients(loss, reduce_mean=False, scale=n)
        total = {name: torch.zeros_like(p) for name, p in self.params.items()}
        mean_loss = torch.zeros(m, dtype=x.dtype, device=x.device)
        for xb, yb in zip(x.split(chunk), y.split(chunk), strict=True):
            shape = (m, *xb.shape)
            grads, (_, (value, _)) = step(self.params, xb.expand(shape), yb.expand(m, -1))
            for name in self.names:
                total[name] += grads[name]
            mean_loss += value
        penalty = torch.zeros(m, dtype=x.dtype, device=x.device)
        for name, p in self.params.items():
            decay = wd.view(-1, *[1] * (p.dim() - 1))
            total[name] += decay * p
            penalty += (p**2).flatten(1).sum(1)
        for i, model in enumerate(self.models):
            for name, p in model.named_parameters():
                p.grad = total[name][i]
        return mean_loss, mean_loss + 0.5 * wd * penalty
