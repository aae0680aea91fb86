"""`make spot-check`: re-train and re-measure chosen runs of an imported results archive from
scratch, through the workflow, in a folder of their own, and compare every file with the
archived one: equal in every value (bit for bit; timing fields left out), or the differences.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import archive, files
from .errors import DataError

REPO = Path(__file__).resolve().parents[2]
WORKDIR = "results/spot_check"


def choose(runs: list[str], chosen: list[str], count: int, seed: int) -> list[str]:
    """The runs named (each must be archived), else ``count`` drawn at random with ``seed``."""
    if unknown := [r for r in chosen if r not in runs]:
        raise DataError(
            f"run {unknown[0]!r} is not in the archive; its runs are listed under 'runs' in "
            f"{archive.MANIFEST} (e.g. {runs[0]!r})."
        )
    if chosen:
        return list(dict.fromkeys(chosen))
    if not 1 <= count <= len(runs):
        raise DataError(f"--runs {count}: choose between 1 and the archive's {len(runs)} runs.")
    return sorted(random.Random(seed).sample(sorted(runs), count))


def table_differences(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Columns whose values differ (NaN equal to NaN), with how many cells and by how much."""
    old, new = (t.drop(columns=[c for c in t if c in archive.NOT_COMPARED]) for t in (old, new))
    if list(old.columns) != list(new.columns) or len(old) != len(new):
        return [f"shape or columns differ: {old.shape} {list(old.columns)} vs {new.shape}"]
    found = []
    for name in old.columns:
        a, b = old[name].reset_index(drop=True), new[name].reset_index(drop=True)
        same = (a == b) | (a.isna() & b.isna())
        if not same.all():
            text = f"{name}: {int((~same).sum())} of {len(a)} values"
            if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
                diff = np.abs(a.astype(float) - b.astype(float))[~same]
                text += f", largest difference {np.nanmax(diff.to_numpy(), initial=0):.3g}"
            found.append(text)
    return found


def tensor_differences(old: dict, new: dict) -> list[str]:
    if sorted(old) != sorted(new):
        return [f"tensor names differ: {sorted(old)} vs {sorted(new)}"]
    found = []
    for name in sorted(old):
        a, b = old[name], new[name]
        same = a.shape == b.shape and a.dtype == b.dtype
        if same and a.is_floating_point():
            same = bool(((a == b) | (a.isnan() & b.isnan())).all())
        elif same:
            same = torch.equal(a, b)
        if not same:
            found.append(f"tensor {name}")
    return found


def both_nan(a, b) -> bool:
    """NaN, written for a value a run does not have (a fine-tuning it did not do), equals NaN."""
    return all(isinstance(v, float) and math.isnan(v) for v in (a, b))


def metadata_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted((set(old) | set(new)) - archive.VOLATILE_KEYS):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += metadata_differences(a, b, f"{prefix}{key}.")
        elif a != b and not both_nan(a, b):
            found.append(f"{prefix}{key}: {a!r} archived, {b!r} now")
    return found


def differences(old: Path, new: Path) -> list[str]:
    """What differs between the archived file ``old`` and the re-made ``new``."""
    if old.suffix == ".parquet":
        return table_differences(files.read_table(old), files.read_table(new))
    if old.suffix == ".safetensors":
        return tensor_differences(files.load_tensors(old)[0], files.load_tensors(new)[0])
    if old.name == "metadata.json":
        return metadata_differences(files.read_json(old), files.read_json(new))
    if old.name == "history.csv":
        return table_differences(pd.read_csv(old), pd.read_csv(new))
    return [] if old.read_bytes() == new.read_bytes() else ["bytes differ"]


def spot_check(runs, run, seed, cores, log) -> None:
    if not Path(archive.MANIFEST).is_file():
        raise DataError(
            f"no {archive.MANIFEST} here: run this in a checkout where an archive was imported "
            "(`make import ARCHIVE=path/to/archive.tar`)."
        )
    manifest = json.loads(Path(archive.MANIFEST).read_text())
    chosen = choose(manifest["runs"], run or [], runs, seed)
    work = Path(WORKDIR)
    targets = [name for name in sorted(manifest["files"]) if archive.run_id(name) in chosen]
    for run_name in chosen:  # from scratch: nothing of an earlier spot-check is reused
        shutil.rmtree(work / "results/runs" / run_name, ignore_errors=True)
    log(f"spot-check of {len(chosen)} run(s): {', '.join(chosen)}; re-made in {work}/")
    command = [
        *(sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")),
        *("--directory", str(work), "--configfile", str(Path(archive.CONFIG).resolve())),
        *("--cores", str(cores), *targets),
    ]
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "snakemake.log", "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise DataError(
            f"the re-run failed; its Snakemake log is {work / 'snakemake.log'} (the failing "
            "job's own log is named there)."
        )
    differing = {}
    for name in targets:
        found = differences(Path(name), work / name)
        if archive.sha256_file(name) != manifest["files"][name]["sha256"]:
            found.append("and this copy was changed since the import (SHA-256 not the manifest's)")
        if found:
            differing[name] = found
    lines = [f"- {name}: " + "; ".join(found) for name, found in differing.items()]
    for run_name in chosen:
        ok = not any(archive.run_id(n) == run_name for n in differing)
        log(f"{run_name}: " + ("equal to the archive in every value" if ok else "DIFFERS"))
    if differing:
        raise DataError(
            f"{len(differing)} of {len(targets)} archived files differ from what this checkout "
            f"(commit {files.git_commit()}; trained at {', '.join(manifest['trained_at'])}) "
            "produces:\n" + "\n".join(lines) + "\nEqual values are expected on the CPU at the "
            "archive's commit; on another commit, device or thread count, compare the sizes of "
            "the differences with the effects the figures show."
        )
    log(
        f"all {len(targets)} files equal in every value ({', '.join(sorted(archive.NOT_COMPARED))}"
        f" left out; trained at {', '.join(manifest['trained_at'])}, re-made at "
        f"{files.git_commit()})"
    )
