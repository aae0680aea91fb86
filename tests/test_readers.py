"""Readers of the raw formats: IDX (plain or gzipped) and the CIFAR-10 binary archive."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from factories import idx_bytes, write_cifar_archive
from rankcollapse import readers
from rankcollapse.errors import DataError


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "raw.gz"
    path.write_bytes(gzip.compress(b"x" * 10_000)[:20])
    with pytest.raises(DataError, match="raw.gz"):
        readers.read_maybe_gz(path)


def test_read_idx_round_trip():
    array = np.arange(3 * 4 * 5).reshape(3, 4, 5).astype(np.uint8)
    tensor = readers.read_idx(idx_bytes(array))
    assert tensor.dtype == torch.uint8
    assert torch.equal(tensor, torch.from_numpy(array))


@pytest.mark.parametrize("length", [75, 56, 10, 2])
def test_read_idx_truncated_buffer_raises(length):
    buffer = idx_bytes(np.zeros((3, 4, 5)))  # 16 header bytes + 60 data bytes
    with pytest.raises(DataError, match="truncated"):
        readers.read_idx(buffer[:length])


def test_read_idx_rejects_other_types():
    buffer = bytearray(idx_bytes(np.zeros(4)))
    buffer[2] = 0x0D
    with pytest.raises(DataError, match="0x0d"):
        readers.read_idx(bytes(buffer))


# --- fetch_raw ------------------------------------------------------------------------------


# --- CIFAR-10 -------------------------------------------------------------------------------


def cifar_batch(first_label: int, records: int = 3) -> bytes:
    """A binary-version batch: label byte, then 3072 pixel bytes whose value encodes the record."""
    rows = [
        bytes([(first_label + i) % 10]) + bytes([(first_label + i) % 256]) * 3072
        for i in range(records)
    ]
    return b"".join(rows)


def fake_cifar_batches() -> dict[str, bytes]:
    """Five training batches and a test batch of three records each."""
    batches = {f"data_batch_{i}.bin": cifar_batch(3 * (i - 1)) for i in range(1, 6)}
    return batches | {"test_batch.bin": cifar_batch(7)}


def test_load_cifar10_binary(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", fake_cifar_batches())
    tensors = readers.load_cifar10_binary(archive, expected_md5=None)
    assert tensors["train_x"].shape == (15, 3, 32, 32) and tensors["train_x"].dtype == torch.uint8
    assert tensors["test_x"].shape == (3, 3, 32, 32)
    assert tensors["train_y"].dtype == torch.int64
    assert tensors["train_y"].tolist() == [i % 10 for i in range(15)]
    assert tensors["test_y"].tolist() == [7, 8, 9]
    assert int(tensors["train_x"][4].unique()) == 4
    assert readers.load_cifar10_binary(archive, expected_md5=readers.md5_of(archive))[
        "test_y"
    ].numel()


def test_load_cifar10_truncated_batch_raises(tmp_path):
    batches = fake_cifar_batches()
    batches["data_batch_3.bin"] = batches["data_batch_3.bin"][:-100]
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", batches)
    with pytest.raises(DataError, match="data_batch_3.bin"):
        readers.load_cifar10_binary(archive, expected_md5=None)


def test_load_cifar10_wrong_md5_raises(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", fake_cifar_batches())
    with pytest.raises(DataError, match=readers.CIFAR10_BINARY_MD5):
        readers.load_cifar10_binary(archive)
