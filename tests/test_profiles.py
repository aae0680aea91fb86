"""profiles/default applies without being named, also as the tests run Snakemake (another
working directory, the Snakefile named): a job killed half-way is re-run. Its keep-going is
shown by tests/test_workflow_faults.py::test_a_corrupt_raw_file_is_refused_and_other_runs_are_kept,
which does not ask for it.
"""

import os
import signal
import subprocess
import time

from factories import TINY
from workflow_runner import ENV, job_counts, snakemake, snakemake_command


def test_a_job_killed_half_way_is_planned_again(tmp_path):
    # A synthetic dataset: one job with no input, killed with Snakemake while it runs.
    target = "results/data/clusters_a.safetensors"
    command = snakemake_command(tmp_path, "--cores", "1", target, configfile=TINY)
    job = subprocess.Popen(
        command,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    markers = tmp_path / ".snakemake/incomplete"
    try:
        deadline = time.monotonic() + 120
        while not (markers.is_dir() and any(p.is_file() for p in markers.rglob("*"))):
            assert job.poll() is None and time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    # What the killed job had written: up to date by its times, complete only by its marker.
    (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / target).write_bytes(b"half")
    done = snakemake(tmp_path, "-n", target, configfile=TINY)
    # Without rerun-incomplete Snakemake stops here (IncompleteFilesException).
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_counts(done.stdout) == {"prepare_dataset": 1, "total": 1}
