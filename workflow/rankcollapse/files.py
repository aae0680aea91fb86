"""Every file the pipeline reads or writes, in one place: atomic writes, tensors
(safetensors), tables (parquet), JSON, and a trained run's files (metadata with provenance,
weights, per-run tables). No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import safetensors
import torch
from safetensors.torch import save_file

from .errors import DataError
from .features import Features, to_features
from .models import build_model

Tensors = dict[str, torch.Tensor]
# safetensors cannot store an empty file: a run with nothing to store gets this one entry.
EMPTY = "none"


def write_atomic(path: Path | str, write: Callable[[str], object]) -> None:
    """Call ``write(tmp)`` then rename tmp to ``path``, so a killed job leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_tensors(path: Path | str, tensors: Tensors, metadata: dict[str, str] | None = None):
    """Write tensors (made contiguous) and string metadata as safetensors, atomically."""
    if bad := [key for key, value in (metadata or {}).items() if not isinstance(value, str)]:
        raise TypeError(f"safetensors metadata values must be str; not for {', '.join(bad)}")
    contiguous = {k: v.contiguous() for k, v in tensors.items()} or {EMPTY: torch.zeros(0)}
    write_atomic(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata))


def load_tensors(path: Path | str) -> tuple[Tensors, dict[str, str]]:
    """Tensors and metadata of a safetensors file; DataError when it is missing or corrupt."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys() if key != EMPTY}
            return tensors, file.metadata() or {}
    except (safetensors.SafetensorError, OSError) as error:
        raise DataError(
            f"cannot read {path}: {error}. The file is missing, truncated or corrupt: "
            "delete it and re-run (snakemake rebuilds it)."
        ) from error


def write_table(path: Path | str, table: pd.DataFrame) -> None:
    write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))


def read_table(path: Path | str) -> pd.DataFrame:
    return pd.read_parquet(path)


def read_tables(paths: list[str]) -> pd.DataFrame:
    """The parquet tables at ``paths`` one under the other (an empty table for no paths)."""
    frames = [read_table(p) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_text(path: Path | str, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: Path | str, value) -> None:
    write_text(path, json.dumps(value, indent=2))


def read_json(path: Path | str):
    return json.loads(Path(path).read_text())


def write_history(path: Path | str, rows: list[dict]) -> None:
    """A run's training history, one row per record, as CSV."""
    write_atomic(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))


def read_history(path: Path | str) -> pd.DataFrame:
    return pd.read_csv(path)


# ---------------------------------------------------------------- a trained run's files


def provenance(device: torch.device) -> dict:
    """Where and with what a result was made: git commit, versions, device, threads."""
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "git_commit": commit + ("-dirty" if dirty else ""),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def run_keys(meta: dict) -> dict:
    """Columns that identify a run and its provenance, on every row of its tables."""
    spec = meta["spec"]
    synthetic = spec["dataset"]["source"] == "gaussian_clusters"
    return {
        "study": spec["study"],
        "dataset": spec["dataset"]["name"],
        "dataset_std": spec["dataset"]["std"] if synthetic else float("nan"),
        "loss": spec["loss"],
        "weight_decay": spec["weight_decay"],
        "seed": spec["seed"],
        "status": meta["status"],
        "reason": meta["reason"],
        "epochs_run": meta["epochs_run"],
        "config_hash": spec["config_hash"],
        "git_commit": meta["git_commit"],
        "python": meta["python"],
        "torch": meta["torch"],
        "device": meta["device"],
    }


def write_run_table(path: Path | str, meta: dict, rows: list[dict]) -> pd.DataFrame:
    """A run's table: one row per layer (or one marked row for a run that did not finish),
    every row with the run's keys and provenance.
    """
    keys = run_keys(meta)
    table = pd.DataFrame([{**keys, **row} for row in rows] or [keys])
    write_table(path, table)
    return table


def save_model(path: Path | str, model: torch.nn.Module, config_hash: str) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_tensors(path, state, {"config_hash": config_hash})


def load_weights(path: Path | str) -> Tensors:
    return load_tensors(path)[0]


def load_features(path: Path | str, device: torch.device) -> Features:
    """A prepared dataset file as float features on ``device``."""
    return to_features(load_tensors(path)[0], device)


def load_run(metadata: Path | str, weights: Path | str, data: Path | str, device: torch.device):
    """A trained run's metadata, its dataset as features, and its model on ``device``."""
    meta = read_json(metadata)
    features = load_features(data, device)
    model = build_model(meta["spec"]["model"], tuple(meta["in_shape"]), meta["classes"])
    model.load_state_dict(load_weights(weights))
    return meta, features, model.to(device)
