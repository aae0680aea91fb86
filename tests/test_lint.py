"""The project's own style gates: ruff, snakefmt and snakemake --lint."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", "."],
        ["snakemake", "--lint"],
    ],
    ids=" ".join,
)
def test_clean(command):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


UNSAFE_LOADERS = ("import pickle", "torch.load(", "yaml.load(", "np.load(", "yaml.unsafe_load")


def test_no_pickle_based_loading():
    sources = [
        *REPO.glob("workflow/**/*.py"),
        *REPO.glob("workflow/**/*.smk"),
        *REPO.glob("notebooks/*.py"),
    ]
    found = [
        f"{path.relative_to(REPO)}: {needle}"
        for path in sources
        for needle in UNSAFE_LOADERS
        if needle in path.read_text()
    ]
    assert not found, found
