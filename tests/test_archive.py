"""The results archive of a reviewer: export, import, spot-check (archive.py, export_archive.py,
import_archive.py, spot_check.py), end to end on the tiny run and on its parts.
"""

import re
import shutil
import subprocess
import tarfile

import pandas as pd
import pytest
from rankcollapse import archive, files
from rankcollapse.errors import DataError
from rankcollapse.spot_check import choose, metadata_differences, table_differences
from workflow_runner import BIN, ENV, REPO, cli, snakemake

ARCHIVE = "results/results-archive.tar"
CHECKED = ["tiny/clusters_a/wd~0.001/seed~0", "tiny/clusters_b/wd~0/seed~0"]


def test_member_names_must_stay_below_results():
    assert archive.safe_member("results/tables/s/layers.parquet")
    for name in ("/etc/passwd", "results/../x", "other/file", "results"):
        assert not archive.safe_member(name)
    assert archive.run_id("results/runs/s/d/wd~0.001/seed~2/compress/e.parquet") == (
        "s/d/wd~0.001/seed~2"
    )
    assert archive.run_id("results/tables/s/layers.parquet") is None


def test_runs_are_drawn_reproducibly_or_named():
    runs = [f"s/d/wd~{w}/seed~0" for w in (0, 0.1, 1, 10)]
    drawn = choose(runs, [], 2, seed=5)
    assert drawn == choose(runs, [], 2, seed=5) and len(set(drawn)) == 2
    assert set(drawn) <= set(runs)
    assert {tuple(choose(runs, [], 2, seed=s)) for s in range(20)} != {tuple(drawn)}
    assert choose(runs, [runs[3]], 1, seed=0) == [runs[3]]
    with pytest.raises(DataError, match="not in the archive"):
        choose(runs, ["s/d/wd~5/seed~0"], 1, seed=0)
    with pytest.raises(DataError, match="between 1 and"):
        choose(runs, [], 5, seed=0)


def test_differences_name_the_column_and_ignore_timing():
    old = pd.DataFrame({"a": [1.0, float("nan"), 3.0], "seconds": [1.0, 2.0, 3.0]})
    assert table_differences(old, old.assign(seconds=[9.0, 9.0, 9.0])) == []
    changed = table_differences(old, old.assign(a=[1.0, float("nan"), 3.5]))
    assert changed == ["a: 1 of 3 values, largest difference 0.5"]
    meta = {"spec": {"seed": 0}, "train_seconds": 1.0, "status": "finished"}
    assert metadata_differences(meta, {**meta, "train_seconds": 5.0}) == []
    assert metadata_differences(meta, {**meta, "spec": {"seed": 1}}) == [
        "spec.seed: 0 archived, 1 now"
    ]


def planned_jobs(done: subprocess.CompletedProcess) -> dict[str, int]:
    """The job counts of a dry run's job-stats table."""
    found = re.findall(r"^(\w+)\s+(\d+)$", done.stdout + done.stderr, flags=re.MULTILINE)
    return {rule: int(count) for rule, count in found if rule != "total"}


def snakemake_here(workdir, *args):
    """Snakemake in ``workdir`` with no --configfile: an imported archive's own config."""
    command = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *args]
    return subprocess.run(command, cwd=workdir, env=ENV, capture_output=True, text=True)


def run_cli(workdir, *args):
    done = cli(*args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = done.communicate()
    return done.returncode, out + err


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """A copy of the tiny run with its archive exported (the one job planned)."""
    source = tmp_path_factory.mktemp("archive") / "source"
    shutil.copytree(tiny_run, source, symlinks=True)
    tiny = REPO / "tests/configs/tiny.yaml"
    planned = snakemake(source, "-n", "--cores", "2", ARCHIVE, configfile=tiny)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert planned_jobs(planned) == {"export_archive": 1}
    done = snakemake(source, "--cores", "2", ARCHIVE, configfile=tiny)
    assert done.returncode == 0, done.stderr[-3000:]
    return source


def test_import_rebuilds_figures_and_claims_without_training(exported, tmp_path):
    code, out = run_cli(tmp_path, "import-archive", str(exported / ARCHIVE), "--dest", ".")
    assert code == 0, out
    plan = snakemake_here(tmp_path, "-n", "--cores", "2")
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = set(planned_jobs(plan))
    assert {"figure", "figure_utilization", "claims", "claims_overview"} <= jobs
    assert not jobs & {"fetch_raw", "prepare_dataset", "train", "measure", "aggregate", "utilize"}
    done = snakemake_here(tmp_path, "--cores", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    built = tmp_path / "results"
    for name in ("claims.md", "claims.json"):
        assert (built / name).read_bytes() == (exported / "results" / name).read_bytes()
    assert (built / "claims.md").read_bytes() == (built / "archive/claims.md").read_bytes()
    for table in (exported / "results/tables/tiny").iterdir():
        assert (built / "tables/tiny" / table.name).read_bytes() == table.read_bytes()
    for figure in ("rank_vs_variability", "bound", "utilization_per_layer"):
        assert (built / f"figures/tiny/{figure}.png").stat().st_size > 0
    # Another config on top of an imported archive is refused, with the way out.
    other = snakemake_here(tmp_path, "-n", "--configfile", str(REPO / "config/config.yaml"))
    said = other.stdout + other.stderr
    assert other.returncode != 0 and "imported results archive" in said
    assert "Traceback" not in said

    # Spot-check: one run as archived (equal in every value), one whose archived table was
    # altered after the import (the difference named, column and size).
    altered = built / "runs" / CHECKED[1] / "layers.parquet"
    table = files.read_table(altered)
    table.loc[table.index[0], "tail_K"] *= 1.01
    files.write_table(altered, table)
    code, out = run_cli(
        tmp_path, "spot-check", *("--runs", "1", "--seed", "0", "--cores", "2"),
        *("--run", CHECKED[0], "--run", CHECKED[1]),
    )  # fmt: skip
    assert code == 1, out
    assert f"{CHECKED[0]}: equal to the archive in every value" in out
    assert f"{CHECKED[1]}: DIFFERS" in out
    assert "layers.parquet: tail_K: 1 of 3 values" in out and "changed since the import" in out
    assert "Traceback" not in out


def test_a_damaged_archive_is_refused_naming_the_file(exported, tmp_path):
    damaged = tmp_path / "damaged.tar"
    shutil.copy(exported / ARCHIVE, damaged)
    name = "results/tables/tiny/layers.parquet"
    with tarfile.open(damaged) as tar:
        offset = tar.getmember(name).offset_data
    with open(damaged, "r+b") as file:
        file.seek(offset + 100)
        byte = file.read(1)
        file.seek(offset + 100)
        file.write(bytes([byte[0] ^ 0xFF]))
    dest = tmp_path / "clone"
    dest.mkdir()
    code, out = run_cli(dest, "import-archive", str(damaged), "--dest", ".")
    assert code == 1 and f"{name} is not what was archived" in out and "Traceback" not in out
    assert not (dest / "results").exists()  # nothing unpacked
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes((exported / ARCHIVE).read_bytes()[: offset + 300])
    code, out = run_cli(dest, "import-archive", str(truncated), "--dest", ".")
    assert code == 1 and "truncated" in out and "Traceback" not in out
    assert not (dest / "results").exists()
    # An import over results already there is refused too.
    code, out = run_cli(exported, "import-archive", str(exported / ARCHIVE), "--dest", ".")
    assert code == 1 and "already exists" in out
