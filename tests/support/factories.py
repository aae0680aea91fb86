"""Small problems, run specs and real runs' files shared by the tests."""

import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import torch
import yaml
from rankcollapse import config as configs
from rankcollapse.claims.report import plain
from rankcollapse.config import load_config_file, spec_hash, validate_config
from rankcollapse.features import Features
from rankcollapse.measures import variability_summary
from rankcollapse.prepare_dataset import prepare_dataset
from rankcollapse.statistics import EmbeddingStats
from rankcollapse.train import train


def clusters(n=40, classes=3, dim=5, spread=0.3, seed=0) -> Features:
    """Well-separated Gaussian clusters; the first samples double as the test set."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    x = centres[y] + spread * torch.randn(n, dim, generator=g)
    return Features(x, y, x[: n // 5], y[: n // 5], classes)


def run_spec(
    wd=1e-3,
    seed=0,
    epochs=5,
    arch="mlp",
    width=16,
    activation="relu",
    convergence=None,
    tol=0.01,
    **optimizer,
) -> dict:
    """A training spec as the workflow writes it, for a tiny model (no convergence phase
    unless ``convergence`` sets its steps).
    """
    model = {"arch": arch, "depth": 3, "width": width, "bias": False, "channels": [2, 3]}
    model["activation"] = activation
    if activation == "softplus":
        model["beta"] = 5.0
    spec = {
        "model": model,
        "optimizer": {
            "lr": 0.05,
            "momentum": 0.9,
            "batch_size": 8,
            "epochs": epochs,
            "schedule": "cosine",
            "milestones": [],
            "gamma": 0.1,
            "decay_horizon": None,
            "max_epochs": 1000,
            **optimizer,
        },
        "convergence": {
            "steps": 0,
            "record_every": 10,
            "history_size": 50,
            "dtype": "float64",
            "max_seconds": None,
            **(convergence or {}),
        },
        "stationarity": {"tol": tol},
        "loss": "cross_entropy",
        "target_scale": 1.0,
        "weight_decay": wd,
        "seed": seed,
    }
    return {**spec, "config_hash": spec_hash(spec)}


def images(n=48, classes=3, size=8, seed=0) -> Features:
    """Noisy images of one channel whose class is a bright square in corner 0, 1 or 2; the
    first fifth double as the test set.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.3 * torch.randn(n, 1, size, size, generator=g)
    half = size // 2
    for k in range(classes):
        row, col = divmod(k, 2)
        x[y == k, :, row * half : (row + 1) * half, col * half : (col + 1) * half] += 2.0
    return Features(x, y, x[: n // 5], y[: n // 5], classes)


PRETRAINING = {
    "temperature": 0.5,
    "projection_dim": 8,
    "crop_scale": 0.5,
    "jitter": 0.4,
    "probe_steps": 20,
    "finetune_epochs": 1,
    "finetune_lr": 0.01,
}


def pretraining_spec(wd=1e-3, seed=0, epochs=4, **pretraining) -> dict:
    """The spec of a self-supervised run (SimCLR, then a linear probe) of a one-block ViT on
    the 8 × 8 :func:`images`.
    """
    spec = run_spec(wd=wd, seed=seed, epochs=epochs)
    del spec["config_hash"]
    spec["model"] = {
        "arch": "vit",
        **{"depth": 1, "width": 16, "bias": True, "dim": 8, "heads": 2},
        **{"patch_size": 4, "pool": "cls"},
    }
    spec["objective"] = "simclr"
    spec["pretraining"] = {**PRETRAINING, **pretraining}
    return {**spec, "config_hash": spec_hash(spec)}


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX buffer holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"


def claims_defaults() -> dict:
    """The claims thresholds as the schema sets them by default."""
    schema = yaml.safe_load(SCHEMA.read_text())
    return {k: v["default"] for k, v in schema["properties"]["claims"]["properties"].items()}


def stats_of(z: torch.Tensor, y: torch.Tensor, classes: int, batch: int = 3) -> dict:
    """Variability measures of embeddings z with labels y, streamed in batches of ``batch``."""
    acc = EmbeddingStats(classes, z.shape[1])
    for zb, yb in zip(z.split(batch), y.split(batch), strict=True):
        acc.add_to_means(zb, yb)
    acc.finish_means()
    for zb, yb in zip(z.split(batch), y.split(batch), strict=True):
        acc.add_to_spread(zb, yb)
    return variability_summary(acc)


def as_written(claim):
    """A claim function whose record comes back as the report writes it (JSON-ready)."""
    return lambda *args: plain(claim(*args))


LOSS = {"loss": "cross_entropy", "target_scale": 1.0}


def trained_mlp():
    """A 3-layer MLP trained briefly on clusters, and its data, both in float64."""
    from rankcollapse.train import train_run

    data = clusters(n=120, classes=3, dim=12)
    spec = {**run_spec(wd=1e-3, epochs=10, width=24), "study": "t"}
    model = train_run(spec, data, torch.device("cpu"), log=lambda _: None).model
    as_double = Features(
        data.train_x.double(), data.train_y, data.test_x.double(), data.test_y, data.classes
    )
    return model.double(), as_double


def small_dataset() -> dict[str, torch.Tensor]:
    """Ten training and six test samples whose values are their indices."""
    return {
        "train_x": torch.arange(10).float().unsqueeze(1),
        "train_y": torch.arange(10),
        "test_x": torch.arange(6).float().unsqueeze(1),
        "test_y": torch.arange(6),
    }


TINY = Path(__file__).resolve().parents[2] / "tests/configs/tiny.yaml"
RUN_FILES = ("model.safetensors", "history.csv", "metadata.json", "checkpoint.safetensors")


def quiet(_: str) -> None:
    """A log that prints nothing."""


def validated(path: Path) -> dict:
    """A config file as validated (defaults filled in)."""
    config = load_config_file(path)
    validate_config(config, SCHEMA)
    return config


def tiny_config(*studies: str) -> dict:
    """tests/configs/tiny.yaml as validated (defaults filled in); only ``studies``, and no
    paper B section, when some are named.
    """
    config = yaml.safe_load(TINY.read_text())
    if studies:
        config["studies"] = {name: config["studies"][name] for name in studies}
        del config["utilization"]
    validate_config(config, SCHEMA)
    return config


def train_alone(spec: dict, data: str, run: Path, threads: int = 1, checkpoint_every: int = 0):
    """The rule's own function training one run (a pack of one) into folder ``run``."""
    names = ("model", "history", "metadata", "checkpoint")
    files = {n: str(run / f) for n, f in zip(names, RUN_FILES, strict=True)}
    files["log"] = str(run / "train.log")
    train([{"spec": spec, **files}], data, "cpu", threads, checkpoint_every, "record", quiet)


def trained_run(root: Path, config: dict, dataset: str, wd: str, threads: int = 1) -> dict:
    """One run (study tiny, seed 0) of a validated config on a synthetic dataset, trained by
    the rule's own function once the dataset is prepared: the paths of the dataset ("data")
    and of the run's files, by name.
    """
    data = root / f"{dataset}.safetensors"
    if not data.exists():
        prepare_dataset(configs.dataset_spec(config, dataset), None, str(data), quiet)
    run = root / "tiny" / dataset / f"wd~{wd}"
    paths = {"data": str(data), **{name: str(run / name) for name in RUN_FILES}}
    spec = configs.run_spec(config, "tiny", dataset, wd, "0")
    train_alone(spec, str(data), run, threads)
    return paths


def write_cifar_archive(path: Path, batches: dict[str, bytes]) -> Path:
    """A tar.gz laid out like cifar-10-binary.tar.gz holding ``batches``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def cifar10_archive(path: Path, per_batch: int = 60, test: int = 120, seed: int = 0) -> Path:
    """A small archive in CIFAR-10's binary format: five training batches of ``per_batch``
    records and a test batch of ``test``, labels cycling through the 10 classes, random pixels
    whose brightness grows with the class (so that the classes can be learned)."""
    generator = np.random.default_rng(seed)

    def batch(records: int) -> bytes:
        labels = np.arange(records) % 10
        pixels = generator.integers(0, 160, size=(records, 3 * 32 * 32)) + 10 * labels[:, None]
        return np.concatenate([labels[:, None], pixels], axis=1).astype(np.uint8).tobytes()

    batches = {f"data_batch_{i}.bin": batch(per_batch) for i in range(1, 6)}
    return write_cifar_archive(path, batches | {"test_batch.bin": batch(test)})
