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
from .files import load_tensors, save_tensors

MODEL, MOMENTUM = "model.", "momentum."
BATCH_ORDER, GLOBAL_RNG = "rng.batch_order", "rng.torch"


@dataclass
class Saved:
    tensors: dict[str, torch.Tensor]
    progress: dict[str, int]
    history: list[dict]


def save(
    path: Path,
    config_hash: str,
    progress: dict[str, int],
    history: list[dict],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_order: torch.Generator,
) -> None:
    """Write the checkpoint atomically: a kill while writing leaves the previous one intact."""
    tensors = {MODEL + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]):
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"{MOMENTUM}{i}"] = buffer.detach().cpu().contiguous()
    tensors[BATCH_ORDER] = batch_order.get_state()
    tensors[GLOBAL_RNG] = torch.get_rng_state()
    metadata = {
        "config_hash": config_hash,
        "progress": json.dumps(progress),
        "history": json.dumps(history),
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
    return Saved(tensors, progress, history)


def restore(
    saved: Saved, model: nn.Module, optimizer: torch.optim.Optimizer, batch_order: torch.Generator
) -> dict[str, int]:
    """Put the saved state into a freshly built model, optimiser and generator; return the
    progress (SGD epochs and full-batch steps done).
    """
    tensors = saved.tensors
    model.load_state_dict({k[len(MODEL) :]: v for k, v in tensors.items() if k.startswith(MODEL)})
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        if f"{MOMENTUM}{i}" in tensors:
            optimizer.state[p]["momentum_buffer"] = tensors[f"{MOMENTUM}{i}"].to(p.device)
    batch_order.set_state(tensors[BATCH_ORDER])
    torch.set_rng_state(tensors[GLOBAL_RNG])
    return saved.progress
