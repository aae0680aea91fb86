"""Files: tensors round-trip, and a truncated file is an error naming it."""

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
    assert str(path) in str(caught.value) and "re-run" in str(caught.value)
