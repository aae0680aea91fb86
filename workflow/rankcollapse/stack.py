"""A stack of M runs of one architecture, trained as one: each parameter stacked along a
leading run axis, one forward and backward for all runs. An MLP (linear layers and
elementwise activations) runs as batched matrix products (``torch.bmm``) under ordinary
autograd; any other network through ``torch.func.vmap``, whose per-call overhead is several
times a small MLP's whole step (2.4 against 0.6 ms for the default synthetic-cluster MLP, one
run, one thread).

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


ELEMENTWISE = nn.ReLU | nn.Softplus | nn.GELU | nn.SiLU


def stackable_by_matmul(model: nn.Module) -> bool:
    """An MLP as :func:`.models.mlp` builds it: Flatten, linear layers, elementwise activations."""
    return isinstance(model, nn.Sequential) and all(
        isinstance(m, nn.Flatten | nn.Linear | ELEMENTWISE) for m in model
    )


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
        # The architecture alone (no storage): what the forward pass runs with each slice.
        self.base = copy.deepcopy(models[0]).to("meta")
        self.by_matmul = stackable_by_matmul(self.base)
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

    def _mlp_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Every run's MLP on its own batch: x (M × B × …) to logits (M × B × K)."""
        h = x
        for index, module in enumerate(self.base):
            if isinstance(module, nn.Flatten):
                h = h.flatten(2)
            elif isinstance(module, nn.Linear):
                weight = params[f"{index}.weight"].transpose(1, 2)
                bias = params.get(f"{index}.bias")
                h = (
                    torch.bmm(h, weight)
                    if bias is None
                    else torch.baddbmm(bias[:, None], h, weight)
                )
            else:
                h = module(h)
        return h

    def _losses(self, x: torch.Tensor, y: torch.Tensor, loss: dict, scale: float | None):
        """Each run's loss on its own batch (M): the batch mean (``scale`` None) or the sum
        divided by ``scale``; its gradients (a dict of M × … tensors) and correct counts (M).
        """
        if not self.by_matmul:
            return self._vmap_losses(x, y, loss, scale)
        params = {name: p.detach().requires_grad_() for name, p in self.params.items()}
        with torch.enable_grad():
            out = self._mlp_forward(params, x)
            m, b, k = out.shape
            losses = per_sample_loss(out.reshape(m * b, k), y.reshape(m * b), **loss).view(m, b)
            value = losses.mean(1) if scale is None else losses.sum(1) / scale
            grads = torch.autograd.grad(value.sum(), list(params.values()))
        correct = (out.detach().argmax(2) == y).sum(1)
        # A weight's gradient comes out transposed (of W^T's): laid out as the weight, the
        # update's elementwise kernels run at full speed.
        grads = [g.contiguous() for g in grads]
        return dict(zip(params, grads, strict=True)), (value.detach(), correct)

    def _vmap_losses(self, x: torch.Tensor, y: torch.Tensor, loss: dict, scale: float | None):
        """:meth:`_losses` for any network, through vmap."""

        def run_loss(params, xb, yb):
            out = functional_call(self.base, params, (xb,))
            losses = per_sample_loss(out, yb, **loss)
            value = losses.mean() if scale is None else losses.sum() / scale
            return value, (value.detach(), (out.argmax(1) == yb).sum())

        grads, (_, values) = vmap(grad_and_value(run_loss, has_aux=True))(self.params, x, y)
        return grads, values

    def gradients(self, x: torch.Tensor, y: torch.Tensor, loss: dict):
        """For batches x (M × B × …) and labels y (M × B), one per run: each run's gradient of
        its batch mean loss (a dict of M × … tensors), mean loss (M) and correct count (M).
        """
        grads, (value, correct) = self._losses(x, y, loss, None)
        return grads, value, correct

    def objective(self, x: torch.Tensor, y: torch.Tensor, loss: dict, wd: torch.Tensor, chunk=4096):
        """As :func:`.convergence.objective` for every run at once, on the full batch (x, y)
        shared by all: each run's mean loss (M) and F = mean loss + (λ/2) ‖θ‖² (M), with ∇F
        left in each run's module's ``.grad`` (views of stacked tensors).
        """
        n, m = x.shape[0], len(self)
        total = {name: torch.zeros_like(p) for name, p in self.params.items()}
        mean_loss = torch.zeros(m, dtype=x.dtype, device=x.device)
        for xb, yb in zip(x.split(chunk), y.split(chunk), strict=True):
            grads, (value, _) = self._losses(xb.expand(m, *xb.shape), yb.expand(m, -1), loss, n)
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
