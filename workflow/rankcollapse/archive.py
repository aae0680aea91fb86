"""The results archive: what a finished run of a config leaves for a reviewer, in one tar.

Paths inside the tar are those of a checkout, so that unpacking it into a fresh clone puts every
file where the workflow expects it:

- ``results/archive/manifest.json``: format, version, git commit, config hash, and the size and
  SHA-256 of every other file of the tar;
- ``results/archive/config.yaml``: the resolved config (schema defaults filled in);
- ``results/archive/environment.txt``: the Python packages that made it (``name==version``);
- ``results/archive/claims.md``, ``claims.json``: the verdicts as built, to compare with;
- ``results/archive/README.md``: what the archive is and how to use it;
- ``results/tables/<study>/*.parquet`` and each run's ``metadata.json``, ``history.csv``,
  ``layers.parquet``, ``spectra.safetensors`` (paper B: ``utilization.parquet``,
  ``compress/*.parquet``), weights only when asked for.

A workflow run in a folder holding ``results/archive/manifest.json`` reads the archive's tables
as its sources (see the Snakefile): only figures, claims and the report are built.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
from pathlib import Path, PurePosixPath

from .errors import DataError

FORMAT = "rankcollapse results archive"
VERSION = 1
ARCHIVE_DIR = "results/archive"
MANIFEST = f"{ARCHIVE_DIR}/manifest.json"
CONFIG = f"{ARCHIVE_DIR}/config.yaml"
# A run's folder, as RUN_DIR in common.smk writes it.
RUN_DIR = re.compile(r"results/runs/([^/]+)/([^/]+)/wd~([^/]+)/seed~([^/]+)")
# Values that record when, how long or by which commit, not what: left out of a spot-check's
# comparison (the commits are reported beside it).
NOT_COMPARED = frozenset({"seconds", "train_seconds", "git_commit"})
# Metadata keys that hash or name such values, or the run's own history of restarts.
VOLATILE_KEYS = NOT_COMPARED | {"history_sha256", "resumed_from", "sha256"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_id(path: str) -> str | None:
    """``study/dataset/wd~λ/seed~s`` of a file inside a run's folder, else None."""
    match = RUN_DIR.match(path)
    return None if match is None else match.group(0).removeprefix("results/runs/")


def safe_member(name: str) -> bool:
    """Whether a tar member's name is a relative path below ``results/``, with no ``..``."""
    path = PurePosixPath(name)
    return (
        not path.is_absolute()
        and ".." not in path.parts
        and path.parts[:1] == ("results",)
        and len(path.parts) > 1
    )


def members(archive: Path | str) -> dict[str, tarfile.TarInfo]:
    """The regular files of a tar by name; DataError when it cannot be read or holds
    anything else (a link, a device, a path outside ``results/``).
    """
    try:
        with tarfile.open(archive) as tar:
            found = tar.getmembers()
    except (OSError, tarfile.TarError) as error:
        raise DataError(
            f"{archive}: cannot be read as a results archive ({error}): missing, truncated or "
            "not a tar. Download it again and compare its SHA-256 with the published one."
        ) from None
    bad = [m.name for m in found if not (m.isfile() and safe_member(m.name)) and not m.isdir()]
    if bad:
        raise DataError(
            f"{archive}: holds {bad[0]!r}, which is not a plain file below results/; this is "
            "not an archive written by `make archive`, and nothing was unpacked."
        )
    return {m.name: m for m in found if m.isfile()}
