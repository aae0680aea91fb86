"""Rule export_archive: write the results archive of a finished run of a config (see
:mod:`.archive` for its layout) and the SHA-256 of the tar, to publish beside it.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from importlib import metadata
from itertools import chain
from pathlib import Path

import yaml

from . import archive, files

README = """\
# Results archive of the rank-collapse pipeline

Made by `make archive` at commit {commit} from the config in `config.yaml` (hash {config_hash}):
{runs} runs of {studies}. `manifest.json` lists the SHA-256 of every file; `environment.txt`
the Python packages that made them; `claims.md` the verdicts as built.

In a fresh clone of the repository at that commit:

    make import ARCHIVE=path/to/this.tar    # verifies every file, unpacks into results/
    make run                                # builds only the figures, claims and report
    make spot-check RUNS=1 SEED=0           # re-trains one run at random and compares

The second command runs no data, training or measure job: the tables are the sources.
`results/claims.md` then equals `results/archive/claims.md`.
"""


def environment() -> str:
    """``name==version`` of every installed distribution, sorted: the environment's lock."""
    found = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}
    return "".join(f"{name}=={version}\n" for name, version in sorted(found.items()) if name)


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def export_archive(files_in, claims, config, out, checksum, log) -> None:
    names = sorted(set(files_in))
    commit = files.git_commit()
    config_text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    config_hash = archive.sha256_bytes(config_text.encode())[:16]
    runs = sorted({r for r in map(archive.run_id, names) if r})
    extra = {
        archive.CONFIG: config_text.encode(),
        f"{archive.ARCHIVE_DIR}/environment.txt": environment().encode(),
        f"{archive.ARCHIVE_DIR}/README.md": README.format(
            commit=commit,
            config_hash=config_hash,
            runs=len(runs),
            studies=", ".join(sorted(config["studies"])),
        ).encode(),
        **{f"{archive.ARCHIVE_DIR}/{Path(c).name}": Path(c).read_bytes() for c in claims},
    }
    manifest = {
        "format": archive.FORMAT,
        "version": archive.VERSION,
        "git_commit": commit,
        "config_hash": config_hash,
        "runs": runs,
        "trained_at": sorted(
            {
                files.read_json(n).get("git_commit", "unknown")
                for n in names
                if n.endswith("metadata.json")
            }
        ),
        "files": {},  # filled as each file is written, so that each is read once
    }

    def write(tmp: str) -> None:
        archived = chain(sorted(extra.items()), ((n, Path(n).read_bytes()) for n in names))
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in archived:
                manifest["files"][name] = {"bytes": len(data), "sha256": archive.sha256_bytes(data)}
                add(tar, name, data)
            add(tar, archive.MANIFEST, json.dumps(manifest, indent=2).encode())

    files.write_atomic(out, write)
    digest = archive.sha256_file(out)
    files.write_text(checksum, f"{digest}  {Path(out).name}\n")
    size = Path(out).stat().st_size
    log(f"{out}: {len(manifest['files'])} files, {len(runs)} runs, {size / 1e6:.1f} MB")
    log(f"SHA-256 {digest} (in {checksum}); publish it beside the archive")
