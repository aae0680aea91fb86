"""A training run's checkpoint: one safetensors file with everything a resumed run needs to
end bitwise where an uninterrupted one ends (weights, momentum buffers, RNG states, progress,
history), tagged with the run's config hash so that no other run's checkpoint is reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import DataError
from .files import load_tensors, save_tensors, weights_dtype

MODEL, OPTIMIZER = "model.", "optimizer."
BATCH_ORDER, GLOBAL_RNG = "rng.batch_order", "rng.torch"


@dataclass
class Saved:
    tensors: dict[str, torch.Tensor]
    progress: dict[str, int]
    history: list[dict]
    optimizer_state: str
    # A finished run's result (status, reason, certificate, fine-tuned accuracy); else None.
    finished: dict | None = None

    def optimizer_state_dict(self) -> dict | None:
        """The saved optimiser state as ``state_dict()`` gave it (SGD's momentum buffers, or
        L-BFGS's directions, steps and counters); None after the linear probe.
        """
        return decode(json.loads(self.optimizer_state), self.tensors)

    def load_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Put the saved optimiser state into ``optimizer``, a fresh one of the same kind."""
        optimizer.load_state_dict(self.optimizer_state_dict())


def encode(value, tensors: dict[str, torch.Tensor]):
    """``value`` (an optimiser's state dict: nested dicts and lists of tensors, numbers, text,
    None) as JSON, each tensor moved into ``tensors`` and replaced by a reference to its key.
    JSON keeps Python floats exactly.
    """
    if isinstance(value, torch.Tensor):
        key = f"{OPTIMIZER}{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"tensor": key}
    if isinstance(value, dict):
        return {"dict": [[k, encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return {"list": [encode(v, tensors) for v in value]}
    return {"value": value}


def decode(encoded, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`encode` (dict keys keep their type: parameter indices are ints)."""
    ((kind, content),) = encoded.items()
    if kind == "tensor":
        return tensors[content]
    if kind == "dict":
        return {k: decode(v, tensors) for k, v in content}
    if kind == "list":
        return [decode(v, tensors) for v in content]
    return content


def save(
    path: Path,
    config_hash: str,
    progress: dict[str, int],
    history: list[dict],
    model: nn.Module,
    optimizer_state: dict | None,
    batch_order: torch.Generator,
    finished: dict | None = None,
) -> None:
    """Write the checkpoint atomically: a kill while writing leaves the previous one intact.
    ``optimizer_state`` is an optimiser's ``state_dict()``, or None after a phase that leaves
    nothing to resume (the linear probe, a finished run). ``finished``: the result of a run
    that is done, so that a resumed job writes it instead of training again.
    """
    tensors = {MODEL + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_tensors: dict[str, torch.Tensor] = {}
    optimizer_state = encode(optimizer_state, optimizer_tensors)
    tensors.update(optimizer_tensors)
    tensors[BATCH_ORDER] = batch_order.get_state()
    tensors[GLOBAL_RNG] = torch.get_rng_state()
    metadata = {
        "config_hash": config_hash,
        "progress": json.dumps(progress),
        "history": json.dumps(history),
        "optimizer": json.dumps(optimizer_state),
        "finished": json.dumps(finished),
    }
    save_tensors(path, tensors, metadata)


def load(path: Path, config_hash: str, log: Callable[[str], None]) -> Saved | None:
    """The checkpoint at ``path`` if there is one for this config hash; else None, with the
    reason logged. Another config's checkpoint means a fresh start; one that fails its content
    hash is never resumed from: it is set aside as ``<path>.corrupt`` and the run starts afresh.
    """
    if not path.exists():
        return None
    try:
        tensors, metadata = load_tensors(path)
        progress, history = json.loads(metadata["progress"]), json.loads(metadata["history"])
        optimizer_state = metadata["optimizer"]
        finished = json.loads(metadata.get("finished", "null"))
    except (DataError, KeyError, ValueError) as error:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log(f"checkpoint {path} is unusable ({error}); set aside as {aside}, starting afresh")
        return None
    if metadata.get("config_hash") != config_hash:
        log(
            f"checkpoint {path} belongs to config {metadata.get('config_hash')}, "
            f"not {config_hash}; starting afresh"
        )
        return None
    return Saved(tensors, progress, history, optimizer_state, finished)


def restore(saved: Saved, model: nn.Module, batch_order: torch.Generator) -> dict[str, int]:
    """Put the saved weights (in the precision they were saved in) and RNG states into a
    freshly built model and generator; return the progress (per phase, the epochs,
    iterations or probe done). The optimiser's state is loaded by :meth:`Saved.load_optimizer` into
    the optimiser of the phase the run resumes in.
    """
    weights = {k[len(MODEL) :]: v for k, v in saved.tensors.items() if k.startswith(MODEL)}
    model.to(weights_dtype(weights))
    model.load_state_dict(weights)
    batch_order.set_state(saved.tensors[BATCH_ORDER])
    torch.set_rng_state(saved.tensors[GLOBAL_RNG])
    return saved.progress
