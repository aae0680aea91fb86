import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole DAG of tests/configs/tiny.yaml, run locally once per session (2 cores)."""
    workdir = tmp_path_factory.mktemp("tiny")
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [
            str(bin_dir / "snakemake"),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(REPO / "tests/configs/tiny.yaml"),
            "--cores",
            "2",
        ],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir
