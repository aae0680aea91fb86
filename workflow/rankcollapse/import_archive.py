"""`make import`: verify a results archive against its manifest, then unpack it into a checkout,
whose workflow then builds only the figures, claims and report from the archived tables.
Nothing is written unless every file matches.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from . import archive, files
from .errors import DataError

# What an import must not mix with: results of another run already in the checkout.
OCCUPIED = ("results/tables", "results/runs", archive.ARCHIVE_DIR)
REFETCH = "Download it again and compare its SHA-256 with the published one; nothing was unpacked."


def read_manifest(archive_path, tar: tarfile.TarFile, found: dict) -> dict:
    if archive.MANIFEST not in found:
        raise DataError(f"{archive_path}: has no {archive.MANIFEST}: not a results archive.")
    try:
        manifest = json.loads(tar.extractfile(found[archive.MANIFEST]).read())
    except ValueError as error:
        raise DataError(
            f"{archive_path}: {archive.MANIFEST} is not JSON ({error}). {REFETCH}"
        ) from None
    if manifest.get("format") != archive.FORMAT or manifest.get("version") != archive.VERSION:
        raise DataError(
            f"{archive_path}: format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}; this checkout reads {archive.FORMAT!r} version "
            f"{archive.VERSION}: check out the commit the archive names "
            f"({manifest.get('git_commit')}) and import it there."
        )
    return manifest


def checked(archive_path, tar: tarfile.TarFile, member: tarfile.TarInfo, sha256: str) -> bytes:
    """A member's bytes, DataError unless their SHA-256 is the manifest's."""
    try:
        data = tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as error:
        raise DataError(
            f"{archive_path}: {member.name} cannot be read ({error}). {REFETCH}"
        ) from None
    if (digest := archive.sha256_bytes(data)) != sha256:
        raise DataError(
            f"{archive_path}: {member.name} is not what was archived: its SHA-256 is {digest}, "
            f"the manifest records {sha256}. The archive is damaged or was altered. {REFETCH}"
        )
    return data


def unpack(archive_path, dest: Path | None) -> dict:
    """The manifest, every file checked against it, one at a time; each written below
    ``dest`` when given (the second pass, after a first that writes nothing).
    """
    found = archive.members(archive_path)
    with tarfile.open(archive_path) as tar:
        manifest = read_manifest(archive_path, tar, found)
        listed = manifest["files"]
        if extra := sorted(set(found) - set(listed) - {archive.MANIFEST}):
            raise DataError(f"{archive_path}: {extra[0]} is not in its manifest. {REFETCH}")
        if missing := sorted(set(listed) - set(found)):
            raise DataError(f"{archive_path}: {missing[0]} is listed but missing. {REFETCH}")
        for name, entry in sorted(listed.items()):
            data = checked(archive_path, tar, found[name], entry["sha256"])
            if dest is not None:
                files.write_atomic(dest / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
        if dest is not None:
            data = tar.extractfile(found[archive.MANIFEST]).read()
            files.write_atomic(dest / archive.MANIFEST, lambda tmp: Path(tmp).write_bytes(data))
    return manifest


def import_archive(archive_path, dest, log) -> None:
    dest = Path(dest)
    if taken := [p for p in OCCUPIED if (dest / p).exists()]:
        raise DataError(
            f"{dest / taken[0]} already exists: an archive is imported into a checkout without "
            f"results. Move {dest / 'results'} away (or import into a fresh clone), then run "
            "the import again."
        )
    unpack(archive_path, None)
    manifest = unpack(archive_path, dest)
    here = files.git_commit()
    log(
        f"{archive_path}: {len(manifest['files']) + 1} files verified and unpacked into "
        f"{dest / 'results'}; "
        f"{len(manifest['runs'])} runs, config {manifest['config_hash']}, trained at "
        f"{', '.join(manifest['trained_at'])}, archived at {manifest['git_commit']}."
    )
    if {here} != set(manifest["trained_at"]):
        log(
            f"note: this checkout is at {here}; figures and claims are built by this code, and "
            "a spot-check compares this code's numbers with the archive's."
        )
    log(
        "next: `make run` builds the figures, claims and report; `make spot-check RUNS=1` "
        "re-trains a run and compares it with the archive."
    )
