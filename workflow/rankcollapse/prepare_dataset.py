"""Rule ``prepare_dataset``: one dataset of the config as tensors in one safetensors file.
Synthetic clusters are drawn (:mod:`rankcollapse.synthetic`); MNIST-like data and CIFAR-10 are
read from their verified raw files (:mod:`rankcollapse.readers`) and subset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from . import files
from .config import CIFAR10_ARCHIVE
from .errors import DataError
from .fetch_raw import RAW_FILES, verify_raw
from .files import Tensors
from .readers import load_cifar10_binary, load_mnist_like, md5_of
from .synthetic import gaussian_clusters


def _random_rows(n: int, size: int | None, name: str, generator: torch.Generator) -> torch.Tensor:
    """Sorted random indices of ``size`` of ``n`` rows (all rows when size is None)."""
    if size is None:
        return torch.arange(n)
    if not 0 < size <= n:
        raise ValueError(f"{name}={size} is not between 1 and the {n} samples available")
    return torch.randperm(n, generator=generator)[:size].sort().values


def subset(tensors: Tensors, train_size: int | None, test_size: int | None, seed: int) -> Tensors:
    """Simple random subsets of the train and test sets (original order kept); None keeps all."""
    generator = torch.Generator().manual_seed(seed)
    train = _random_rows(len(tensors["train_x"]), train_size, "train_size", generator)
    test = _random_rows(len(tensors["test_x"]), test_size, "test_size", generator)
    rows = {"train": train, "test": test}
    return {key: value[rows[key.split("_")[0]]] for key, value in tensors.items()}


def verify_raw_folder(source: str, raw: Path) -> None:
    """Every raw file of ``source`` in the folder ``fetch_raw`` filled, against its official
    checksum (it may have changed since it was fetched).
    """
    for spec in RAW_FILES[source]:
        try:
            verify_raw(raw / spec.name, spec)
        except DataError:
            raise files.corrupt(raw, f"{spec.name} there fails its official checksum") from None


def verify_cifar10_archive(raw: Path, md5: str) -> None:
    """The archive in the folder ``fetch_raw`` filled, against its md5 (as for MNIST)."""
    try:
        found = md5_of(raw / CIFAR10_ARCHIVE)
    except OSError as error:
        raise files.corrupt(raw, f"{CIFAR10_ARCHIVE} there cannot be read ({error})") from None
    if found != md5:
        raise files.corrupt(raw, f"{CIFAR10_ARCHIVE} there has md5 {found}, expected {md5}")


def dataset_tensors(spec: dict, raw: str | None) -> Tensors:
    """The train and test tensors of a dataset's config entry."""
    source = spec["source"]
    if source == "gaussian_clusters":
        keys = ("classes", "dim", "per_class", "test_per_class", "std", "clusters_per_class")
        return gaussian_clusters(
            **{k: spec[k] for k in keys}, separation=spec["separation"], seed=spec["seed"]
        )
    if source == "cifar10":
        verify_cifar10_archive(Path(raw), spec["archive_md5"])
        tensors = load_cifar10_binary(Path(raw) / CIFAR10_ARCHIVE, expected_md5=None)
    else:
        verify_raw_folder(source, Path(raw))
        tensors = load_mnist_like(Path(raw))
    return subset(tensors, spec["train_size"], spec["test_size"], spec["seed"])


def prepare_dataset(
    spec: dict, raw: str | None, out: str, log: Callable[[str], None] = print
) -> None:
    """Write the dataset of ``spec`` (its config entry, with its name) to ``out``."""
    tensors = dataset_tensors(spec, raw)
    for key, value in tensors.items():
        log(f"{key}: {tuple(value.shape)} {value.dtype}")
    files.save_tensors(out, tensors, {"spec": json.dumps(spec, sort_keys=True)})
