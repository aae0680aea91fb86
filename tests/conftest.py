import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
# Helpers shared by the tests: factories, workflow_runner, slurm_cluster.
sys.path.insert(0, str(REPO / "tests" / "support"))


# The modules that read the tiny DAG's outputs (the session fixture below).
TINY_RUN_READERS = {
    p.name for p in (REPO / "tests").glob("test_*.py") if "tiny_run" in p.read_text()
}


# The longest chains of work, started first and on different workers: the paper config's
# smoke-scale DAG, and the tiny DAG with the modules that read it.
FIRST = ["test_paper_smoke.py", "tiny_run"]


def scope_of(module: str) -> str:
    return "tiny_run" if Path(module).name in TINY_RUN_READERS else Path(module).name


def pytest_collection_modifyitems(items):
    """Collection order is the order in which scopes are handed to workers (below)."""
    rank = {scope: i for i, scope in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(scope_of(item.nodeid.split("::", 1)[0]), len(FIRST)))


def pytest_xdist_make_scheduler(config, log):
    """`make test` spreads the modules over the cores (pytest-xdist, ``--dist loadscope``): a
    module runs on one worker, so that its module-scoped fixtures are built once, and the
    modules that read the tiny DAG run on one worker together, so that the DAG is built once
    and no two tests use its folder at the same time. Scopes are handed out in collection
    order (not by their number of tests), so that the two DAGs start at once.
    """
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid.split("::", 1)[0])

    return Scheduling(config, log)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole DAG of tests/configs/tiny.yaml, run locally once per session (2 cores)."""
    from workflow_runner import snakemake

    workdir = tmp_path_factory.mktemp("tiny")
    done = snakemake(workdir, "--cores", "2", configfile=REPO / "tests/configs/tiny.yaml")
    assert done.returncode == 0, done.stderr[-5000:]
    return workdir
