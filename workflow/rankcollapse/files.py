"""Every file the pipeline reads or writes, in one place: atomic writes, tensors
(safetensors), tables (parquet), JSON, and a trained run's files (metadata with provenance,
weights, per-run tables). No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import safetensors
import torch
from safetensors.torch import save_file

from .errors import DataError
from .features import Features, to_features
from .models import build_model

Tensors = dict[str, torch.Tensor]
# Where a file keeps the SHA-256 of its content, verified by every reader: a tensor of that
# name in safetensors, a schema metadata key in parquet, the last key of a JSON object.
DIGEST = "sha256"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path | str, write: Callable[[str], object]) -> None:
    """Call ``write(tmp)`` then rename tmp to ``path``, so a killed job leaves no half file.
    The file gets the mode a plain write would (0666 less the umask), not the temporary
    file's 0600, so collaborators on a shared file system can read results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def corrupt(path: Path | str, problem: str) -> DataError:
    """The error for a bad file: what is wrong, and the command that rebuilds it (the files
    made from it are then older than it, so the next plain run rebuilds them too).
    """
    rebuild = f"snakemake --cores all --force {shlex.quote(str(path))}"
    return DataError(
        f"{path}: {problem}. Rebuild it with `{rebuild}`, then run snakemake again (what was "
        "made from it is rebuilt, being older)."
    )


def tensors_digest(tensors: Tensors, metadata: dict[str, str]) -> str:
    """SHA-256 of tensors (names, dtypes, shapes, bytes) and string metadata, in name order."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        digest.update(f"{key}={metadata[key]}\0".encode())
    for key in sorted(tensors):
        value = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tensors(path: Path | str, tensors: Tensors, metadata: dict[str, str] | None = None):
    """Write tensors (made contiguous) and string metadata as safetensors, atomically, with
    their content hash as one more tensor (safetensors writes its metadata in no fixed order,
    so a second metadata key would make the same content give different bytes).
    """
    metadata = dict(metadata or {})
    if bad := [key for key, value in metadata.items() if not isinstance(value, str)]:
        raise TypeError(f"safetensors metadata values must be str; not for {', '.join(bad)}")
    if DIGEST in tensors:
        raise ValueError(f"{DIGEST} is the name of the content hash, not of a tensor")
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    digest = bytes.fromhex(tensors_digest(contiguous, metadata))
    contiguous[DIGEST] = torch.frombuffer(bytearray(digest), dtype=torch.uint8)
    write_atomic(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata or None))


def load_tensors(path: Path | str) -> tuple[Tensors, dict[str, str]]:
    """Tensors and metadata of a safetensors file, verified against its content hash;
    DataError when it is missing, unreadable or not what was written.
    """
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            tensors = {key: file.get_tensor(key) for key in file.keys()}
            metadata = file.metadata() or {}
    except Exception as error:  # safetensors and torch raise several kinds on a damaged file
        raise corrupt(path, f"cannot be read ({error}): missing, truncated or corrupt") from None
    recorded = tensors.pop(DIGEST, None)
    if recorded is not None:
        whole = recorded.dtype == torch.uint8 and tuple(recorded.shape) == (32,)
        recorded = bytes(recorded.tolist()).hex() if whole else "(a malformed hash)"
    verify(path, recorded, tensors_digest(tensors, metadata))
    return tensors, metadata


def verify(path: Path | str, recorded: str | None, found: str) -> None:
    """DataError unless the content hash ``found`` is the one ``recorded`` at writing."""
    if recorded is None:
        raise corrupt(path, "has no content hash (not written by this pipeline, or edited)")
    if recorded != found:
        raise corrupt(
            path, f"is not what was written: its content hash is {found}, {recorded} was recorded"
        )


def frame_digest(table: pd.DataFrame) -> str:
    """SHA-256 of a table's column names, dtypes and values, in column order."""
    digest = hashlib.sha256()
    for name in table.columns:
        digest.update(f"{name}:{table[name].dtype}\0".encode())
        digest.update(pd.util.hash_pandas_object(table[name], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def write_table(path: Path | str, table: pd.DataFrame) -> None:
    """Write a table as parquet, atomically, with the content hash of the table a reader
    gets back (computed on its own round trip) in the file's schema metadata.
    """
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    arrow = pq.read_table(io.BytesIO(buffer.getvalue()))
    digest = frame_digest(arrow.to_pandas())
    arrow = arrow.replace_schema_metadata({**arrow.schema.metadata, DIGEST.encode(): digest})
    write_atomic(path, lambda tmp: pq.write_table(arrow, tmp))


def read_table(path: Path | str) -> pd.DataFrame:
    """A parquet table, verified against its content hash."""
    try:
        arrow = pq.read_table(path)
        table = arrow.to_pandas()
    except Exception as error:  # a damaged file breaks pyarrow in many ways (KeyError, ...)
        raise corrupt(path, f"cannot be read ({error}): missing, truncated or corrupt") from None
    recorded = (arrow.schema.metadata or {}).get(DIGEST.encode())
    verify(path, recorded and recorded.decode(errors="replace"), frame_digest(table))
    return table


def read_tables(paths: list[str]) -> pd.DataFrame:
    """The parquet tables at ``paths`` one under the other (an empty table for no paths)."""
    frames = [read_table(p) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_text(path: Path | str, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def json_digest(value: dict) -> str:
    """SHA-256 of a JSON object's canonical text (sorted keys), its own hash left out."""
    rest = {k: v for k, v in value.items() if k != DIGEST}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def write_json(path: Path | str, value: dict) -> None:
    """A JSON object, atomically, with its content hash as its last key."""
    write_text(path, json.dumps({**value, DIGEST: json_digest(value)}, indent=2))


def read_json(path: Path | str) -> dict:
    """A JSON object written by :func:`write_json`, verified against its content hash."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise corrupt(path, f"cannot be read ({error}): missing, truncated or corrupt") from None
    if not isinstance(value, dict):
        raise corrupt(path, "is not a JSON object")
    verify(path, value.get(DIGEST), json_digest(value))
    return {k: v for k, v in value.items() if k != DIGEST}


def write_history(path: Path | str, rows: list[dict]) -> str:
    """A run's training history, one row per record, as CSV; returns the SHA-256 of its
    bytes, which the run's metadata records.
    """
    data = pd.DataFrame(rows).to_csv(index=False).encode()
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
    return hashlib.sha256(data).hexdigest()


def read_history(path: Path | str, recorded: str) -> pd.DataFrame:
    """A run's history, verified against the SHA-256 its metadata recorded."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise corrupt(path, f"cannot be read ({error})") from None
    verify(path, recorded, hashlib.sha256(data).hexdigest())
    return pd.read_csv(io.BytesIO(data))


# ---------------------------------------------------------------- a trained run's files


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it."""
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return commit + ("-dirty" if dirty else "")


def provenance(device: torch.device) -> dict:
    """Where and with what a result was made: git commit, versions, device, threads."""
    return {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def certificate_keys(certificate: dict) -> dict:
    """A run's stationarity certificate as table columns."""
    return {
        "stationary": certificate["stationary"],
        "stationarity_tol": certificate["tol"],
        "certified_rel_residual": certificate["rel_residual_max"],
        "convergence_steps": certificate["steps"],
        "stop_reason": certificate["stop_reason"],
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
        "activation": spec["model"].get("activation", "gelu"),
        # Supervised, or self-supervised pre-training with a linear probe (paper B's U6).
        "objective": spec.get("objective", "supervised"),
        "finetune_test_acc": meta.get("finetune_test_acc", float("nan")),
        **certificate_keys(meta["certificate"]),
        "decay_exponent": meta["decay_exponent"],
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


def load_features(path: Path | str, device: torch.device) -> Features:
    """A prepared dataset file as float features on ``device``."""
    return to_features(load_tensors(path)[0], device)


def weights_dtype(state: Tensors) -> torch.dtype:
    """The precision weights were saved in (float64 after a float64 convergence phase)."""
    return next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)


def load_run(metadata: Path | str, weights: Path | str, data: Path | str, device: torch.device):
    """A trained run's metadata, its dataset as features, and its model on ``device``, both in
    the precision the weights were saved in (float64 after a float64 convergence phase, whose
    stationarity float32 rounding would undo).
    """
    meta = read_json(metadata)
    features = load_features(data, device)
    model = build_model(meta["spec"]["model"], tuple(meta["in_shape"]), meta["classes"])
    state, tags = load_tensors(weights)
    dtype = weights_dtype(state)
    model.to(dtype)
    features.train_x, features.test_x = features.train_x.to(dtype), features.test_x.to(dtype)
    if tags.get("config_hash") != meta["spec"]["config_hash"]:
        raise corrupt(
            weights,
            f"belongs to config {tags.get('config_hash')}, but {metadata} is of config "
            f"{meta['spec']['config_hash']}",
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # names or shapes that are not the model's
        raise corrupt(weights, f"does not fit the run's model ({error})") from None
    return meta, features, model.to(device)
