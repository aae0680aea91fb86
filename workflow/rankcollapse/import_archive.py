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


def verified(archive_path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, every file's bytes by name), each file checked against the manifest."""
    found = archive.members(archive_path)
    with tarfile.open(archive_path) as tar:
        manifest = read_manifest(archive_path, tar, found)
        listed = manifest["files"]
        if extra := sorted(set(found) - set(listed) - {archive.MANIFEST}):
            raise DataError(f"{archive_path}: {extra[0]} is not in its manifest. {REFETCH}")
        if missing := sorted(set(listed) - set(found)):
            raise DataError(f"{archive_path}: {missing[0]} is listed but missing. {REFETCH}")
        contents = {}
        for name, entry in sorted(listed.items()):
            data = tar.extractfile(found[name]).read()
            digest = archive.sha256_bytes(data)
            if digest != entry["sha256"]:
                raise DataError(
                    f"{archive_path}: {name} is not what was archived: its SHA-256 is "
                    f"{digest}, the manifest records {entry['sha256']}. The archive is damaged "
                    f"or was altered. {REFETCH}"
                )
            contents[name] = data
    contents[archive.MANIFEST] = json.dumps(manifest, indent=2).encode()
    return manifest, contents


def import_archive(archive_path, dest, log) -> None:
    dest = Path(dest)
    if taken := [p for p in OCCUPIED if (dest / p).exists()]:
        raise DataError(
            f"{dest / taken[0]} already exists: an archive is imported into a checkout without "
            f"results. Move {dest / 'results'} away (or import into a fresh clone), then run "
            "the import again."
        )
    manifest, contents = verified(archive_path)
    for name, data in contents.items():
        files.write_atomic(dest / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
    here = files.git_commit()
    log(
        f"{archive_path}: {len(contents)} files verified and unpacked into {dest / 'results'}; "
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
