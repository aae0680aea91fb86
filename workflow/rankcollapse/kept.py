"""A trained run's files kept beside it, so that a pack retrained for another run's sake does
not train this one again.

Snakemake reruns a training job when its pack's runs change (another `training.pack`, a λ
added to the grid) and removes the job's outputs first; a run's numbers do not depend on its
pack, so what it trained before is still its result. Each run's weights, history and metadata
have hard links in ``<run>/.trained/`` (no extra disk), which outlive that removal; the rerun
puts them back when they are what training the run now would write: the same spec (config
hash), made at the same clean commit, on the same device and thread count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import files
from .errors import DataError

NAMES = ("model", "history", "metadata")


def folder(run: dict) -> Path:
    return Path(run["metadata"]).parent / ".trained"


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    os.link(source, target)


def keep(run: dict) -> None:
    """Hard links to the run's freshly written files (``run``: its spec and file paths)."""
    for name in NAMES:
        path = Path(run[name])
        _link(path, folder(run) / path.name)


def restore(
    run: dict, provenance: dict, log: Callable[[str], None], diverged_ok: bool = True
) -> bool:
    """Put the run's kept files back in place if they match ``run["spec"]`` and today's
    ``provenance`` (:func:`.files.provenance`), and, unless ``diverged_ok``, the run did not
    diverge (a job told to fail on divergence trains it again, and fails); True if they were.
    """
    kept = folder(run)
    try:
        meta = files.read_json(kept / "metadata.json")
    except (OSError, DataError, ValueError):
        return False
    commit = provenance["git_commit"]
    same = (
        meta.get("spec", {}).get("config_hash") == run["spec"]["config_hash"]
        and commit != "unknown"
        and not commit.endswith("-dirty")
        and all(meta.get(key) == provenance[key] for key in ("git_commit", "device", "threads"))
        and (diverged_ok or meta.get("status") != "diverged")
    )
    if not same or not all((kept / Path(run[name]).name).exists() for name in NAMES):
        return False
    for name in NAMES:
        target = Path(run[name])
        _link(kept / target.name, target)
        os.utime(target)  # newer than the job's inputs, as a file it wrote
    log(f"kept result of commit {commit[:12]} reused: same spec, device and threads")
    return True
