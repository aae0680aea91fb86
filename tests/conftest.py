import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
# Helpers shared by the tests: factories, workflow_runner, slurm_cluster.
sys.path.insert(0, str(REPO / "tests" / "support"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole DAG of tests/configs/tiny.yaml, run locally once per session (2 cores)."""
    from workflow_runner import snakemake

    workdir = tmp_path_factory.mktemp("tiny")
    done = snakemake(workdir, "--cores", "2", configfile=REPO / "tests/configs/tiny.yaml")
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir
