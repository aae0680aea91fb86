"""Readers of the raw dataset formats: IDX files (MNIST, Fashion-MNIST; plain or gzipped)
and the CIFAR-10 binary archive, read into uint8 image and int64 label tensors. CIFAR-10 is
read from its binary version, never from the Python-object version, so no untrusted objects
are ever deserialised.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .config import CIFAR10_BINARY_MD5
from .errors import DataError
from .files import Tensors

CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"

CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch.bin"
CIFAR10_SHAPE = (3, 32, 32)
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32  # one label byte, then the channel-major image
CIFAR10_CLASSES = 10

IDX_UBYTE = 0x08
MNIST_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_IMAGE_SHAPE = (28, 28)


def md5_of(path: Path | str) -> str:
    """md5 hex digest of a file's bytes as stored, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_maybe_gz(path: Path | str) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(GZIP_MAGIC))
        if head == GZIP_MAGIC:
            with gzip.open(path, "rb") as file:
                return file.read()
        return Path(path).read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read {path}: {error}. Delete it if it exists and re-run "
            "(snakemake re-creates it), or point `data.mirror` at a good copy."
        ) from error


def read_idx(data: bytes) -> torch.Tensor:
    """Parse an unsigned-byte IDX buffer (magic 0, 0, 0x08, ndim; big-endian int32 dims)."""
    if len(data) < 4:
        raise DataError(f"IDX buffer of {len(data)} bytes is truncated inside its header")
    if data[:2] != b"\0\0":
        raise DataError("not an IDX buffer: it does not start with two zero bytes")
    if data[2] != IDX_UBYTE:
        raise DataError(f"IDX data type 0x{data[2]:02x} is not supported (only 0x08, uint8)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX buffer of {len(data)} bytes is truncated inside its header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"IDX buffer has {len(data)} bytes but its header {dims} says {expected}: "
            "the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())  # copy: the bytes are read-only


def load_mnist_like(raw_dir: Path | str) -> Tensors:
    """MNIST-format train/test sets: ``train_x`` uint8 N×28×28, ``train_y`` int64, same for test."""
    tensors = {}
    for split, (images_name, labels_name) in MNIST_SPLIT_FILES.items():
        images_path, labels_path = Path(raw_dir) / images_name, Path(raw_dir) / labels_name
        images = _read_idx_file(images_path)
        labels = _read_idx_file(labels_path)
        if images.ndim != 3 or tuple(images.shape[1:]) != MNIST_IMAGE_SHAPE:
            raise DataError(f"{images_path}: shape {tuple(images.shape)} is not N×28×28")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{labels_path}: {tuple(labels.shape)} labels for {len(images)} images")
        tensors[f"{split}_x"], tensors[f"{split}_y"] = images, labels.long()
    return tensors


def _read_idx_file(path: Path) -> torch.Tensor:
    """``read_idx`` of a file, naming the file when it is bad."""
    data = read_maybe_gz(path)  # its errors name the file already
    try:
        return read_idx(data)
    except DataError as error:
        raise DataError(f"{path}: {error}. Delete it and re-run.") from error


def _read_cifar10_members(archive: Path) -> dict[str, bytes]:
    """Bytes of the six batch files inside the archive (read, never extracted to disk)."""
    wanted = {*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH}
    contents = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                path = PurePosixPath(member.name)
                if member.isfile() and path.parent.name == CIFAR10_FOLDER and path.name in wanted:
                    contents[path.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read {archive}: {error}. Replace it with a good copy.") from error
    if absent := sorted(wanted - contents.keys()):
        raise DataError(
            f"{archive} lacks {CIFAR10_FOLDER}/{', '.join(absent)}: "
            "it is not the CIFAR-10 binary version"
        )
    return contents


def _parse_cifar10_records(data: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8 N×3×32×32) and labels (int64) of one CIFAR-10 binary batch."""
    if not data or len(data) % CIFAR10_RECORD_BYTES:
        raise DataError(
            f"{where}: {len(data)} bytes is not a whole number of {CIFAR10_RECORD_BYTES}-byte "
            "records; the archive is truncated or corrupt. Replace it with a good copy."
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)
    labels = torch.from_numpy(records[:, 0].astype(np.int64))
    if int(labels.max()) >= CIFAR10_CLASSES:
        raise DataError(f"{where}: label {int(labels.max())} is out of range; corrupt archive")
    images = torch.from_numpy(records[:, 1:].reshape(-1, *CIFAR10_SHAPE).copy())
    return images, labels


def load_cifar10_binary(
    archive: Path | str, expected_md5: str | None = CIFAR10_BINARY_MD5
) -> Tensors:
    """CIFAR-10 from the binary-version archive: ``*_x`` uint8 N×3×32×32, ``*_y`` int64.

    The archive's md5 is checked first unless ``expected_md5`` is None.
    """
    archive = Path(archive)
    if expected_md5 is not None:
        try:
            found = md5_of(archive)
        except OSError as error:
            raise DataError(f"cannot read {archive}: {error}") from error
        if found != expected_md5:
            raise DataError(
                f"{archive}: md5 is {found}, expected {expected_md5}. It is corrupt or not the "
                "CIFAR-10 binary version; delete it, or point `data.mirror` at a good copy."
            )
    members = _read_cifar10_members(archive)
    train = [_parse_cifar10_records(members[n], f"{archive}:{n}") for n in CIFAR10_TRAIN_BATCHES]
    test_x, test_y = _parse_cifar10_records(
        members[CIFAR10_TEST_BATCH], f"{archive}:{CIFAR10_TEST_BATCH}"
    )
    return {
        "train_x": torch.cat([x for x, _ in train]),
        "train_y": torch.cat([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }
