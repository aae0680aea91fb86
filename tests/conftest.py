import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
# Helpers shared by the tests: factories, workflow_runner, slurm_cluster.
sys.path.insert(0, str(REPO / "tests" / "support"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """`make test` spreads the tests over the cores (pytest-xdist, ``--dist loadgroup``): a
    module stays on one worker, so that its module-scoped fixtures are built once, and the
    modules that read the tiny DAG's outputs share one, so that the DAG runs once.
    """
    reading = {item.module.__name__ for item in items if "tiny_run" in item.fixturenames}
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group("tiny_run" if module in reading else module))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole DAG of tests/configs/tiny.yaml, run locally once per session (2 cores)."""
    from workflow_runner import snakemake

    workdir = tmp_path_factory.mktemp("tiny")
    done = snakemake(workdir, "--cores", "2", configfile=REPO / "tests/configs/tiny.yaml")
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir
