"""Files: tensors round-trip, and a truncated file is an error naming it."""

import os
import stat

import pandas as pd
import pytest
import torch
from factories import small_dataset
from rankcollapse import files
from rankcollapse.errors import DataError


def test_save_load_dataset_round_trip(tmp_path):
    tensors = small_dataset()
    path = tmp_path / "set.safetensors"
    files.save_tensors(path, tensors, {"spec": '{"source": "mnist"}'})
    loaded, metadata = files.load_tensors(path)
    assert metadata == {"spec": '{"source": "mnist"}'}
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert [p.name for p in tmp_path.iterdir()] == ["set.safetensors"]  # no temp file left


def test_load_truncated_dataset_raises(tmp_path):
    path = tmp_path / "set.safetensors"
    files.save_tensors(path, small_dataset())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as caught:
        files.load_tensors(path)
    assert str(path) in str(caught.value) and "Rebuild it with" in str(caught.value)


def flip(path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_payload_byte_is_refused_naming_the_file(tmp_path):
    tensors, table = small_dataset(), pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]})
    files.save_tensors(tmp_path / "t.safetensors", tensors)
    files.write_table(tmp_path / "t.parquet", table)
    files.write_json(tmp_path / "t.json", {"epochs_run": 3, "status": "finished"})
    digest = files.write_history(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.5}])
    assert files.read_table(tmp_path / "t.parquet").equals(table)
    assert files.read_json(tmp_path / "t.json") == {"epochs_run": 3, "status": "finished"}
    assert files.read_history(tmp_path / "h.csv", digest)["loss"].tolist() == [0.5]
    flip(tmp_path / "t.safetensors", -1)  # the last byte of the last tensor
    flip(tmp_path / "t.json", (tmp_path / "t.json").read_text().index("3"))
    flip(tmp_path / "h.csv", -3)
    for read in (
        lambda: files.load_tensors(tmp_path / "t.safetensors"),
        lambda: files.read_json(tmp_path / "t.json"),
        lambda: files.read_history(tmp_path / "h.csv", digest),
    ):
        with pytest.raises(DataError, match="is not what was written"):
            read()


def test_a_table_or_json_without_its_hash_is_refused(tmp_path):
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "t.parquet")
    (tmp_path / "t.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="has no content hash"):
        files.read_table(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="has no content hash"):
        files.read_json(tmp_path / "t.json")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_are_written_with_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        files.write_json(tmp_path / "t.json", {"a": 1})
        files.save_tensors(tmp_path / "t.safetensors", small_dataset())
    finally:
        os.umask(old)
    for name in ("t.json", "t.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
