"""Cluster execution: profiles/slurm through snakemake-executor-plugin-slurm.

The submit side runs without a cluster: stand-ins for the SLURM commands record the `sbatch` call
the real plugin builds from the real profile. The real test brings up a one-node SLURM cluster
with accounting (tests/support/slurm_cluster.py), runs part of the tiny workflow through it, and
checks that every job went through `sbatch`, that the compress and measure jobs asked for CPUs
and no GPU (as accounting recorded their submission), and that weights, histories, measures and
the compression table equal those of a local run.
"""

import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import slurm_cluster
import yaml
from workflow_runner import BIN, REPO, TRAIN_PACK, snakemake_command

TINY = REPO / "tests/configs/tiny.yaml"
PROFILE = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
TRAIN_TARGET = "results/runs/tiny/clusters_a/wd~0.001/seed~0/model.safetensors"
COMPRESS_TARGET = "results/runs/tiny/clusters_a/wd~0.001/seed~0/compress/energy~0.99.parquet"


def test_profile_comments_every_entry():
    # Each setting has a comment above it, or opens the block whose first entry follows.
    lines = (REPO / "profiles/slurm/config.yaml").read_text().splitlines()
    for number, line in enumerate(lines[1:], start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            previous = lines[number - 1].strip()
            assert previous.startswith("#") or previous.endswith(":"), line
    assert PROFILE["executor"] == "slurm"
    assert PROFILE["retries"] >= 1 and PROFILE["latency-wait"] > 0 and PROFILE["jobs"] > 0
    # Account and partition are the user's to give: none is set for them.
    assert "slurm_account" not in PROFILE["default-resources"]
    assert "slurm_partition" not in PROFILE["default-resources"]


def test_default_profile_holds_nothing_cluster_or_gpu_specific():
    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert not {"executor", "resources", "default-resources", "set-resources", "jobs"} & set(
        default
    )


def site_profile(folder: Path, train=None, **resources) -> Path:
    """profiles/slurm with the site's account and partitions filled in, as a user would.

    (Edited in a copy: `--default-resources` or `--set-resources` on the command line would
    replace the profile's whole block, not add to it.)
    """
    profile = {**PROFILE, "default-resources": {**PROFILE["default-resources"], **resources}}
    sets = PROFILE["set-resources"]
    profile["set-resources"] = {**sets, "train": {**sets["train"], **(train or {})}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def snakemake(workdir: Path, *args: str, env: dict, timeout: float = 600, configfile: Path = TINY):
    command = snakemake_command(workdir, *args, configfile=configfile)
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


RECORDER = """#!/bin/sh
# Stand-in for {name}: records its arguments, one per line, in a file of its own.
n=$(ls "{record}" | wc -l)
printf '%s\\n' "$@" > "{record}/$n.{name}"
{action}
"""


@pytest.fixture
def recorded_sbatch(tmp_path):
    """SLURM's commands replaced by recorders; sbatch refuses, so nothing waits for a job."""
    fake, record = tmp_path / "bin", tmp_path / "record"
    fake.mkdir()
    record.mkdir()
    actions = {
        "sbatch": "echo 'sbatch: error: recorded, not submitted' >&2; exit 1",
        "sacctmgr": f"echo {ACCOUNT}",  # the account is valid
        "sacct": "exit 0",
        "squeue": "exit 0",
        "sinfo": "exit 0",
        "scontrol": "exit 0",
    }
    for name, action in actions.items():
        script = fake / name
        script.write_text(RECORDER.format(name=name, record=record, action=action))
        script.chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(fake), str(BIN), os.environ["PATH"]])}
    return env, record


ACCOUNT, GPU_PARTITION = "proj42", "gpu-test"


def sbatch_calls(record: Path) -> list[list[str]]:
    calls = sorted(record.glob("*.sbatch"), key=lambda p: int(p.name.split(".")[0]))
    return [p.read_text().splitlines() for p in calls]


def option(args: list[str], name: str) -> str | None:
    """The value of an sbatch option given as `--name=value` or `--name value`."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name:
            return args[i + 1]
    return None


def pack_rules(workdir: Path, env: dict) -> list[str]:
    """The tiny config's training rules (one per pack of runs), as `--list-rules` names them."""
    done = snakemake(workdir, "--list-rules", env=env)
    return [name for name in done.stdout.split() if TRAIN_PACK.fullmatch(name)]


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_sbatch_options_of_a_training_job_are_what_the_profile_says(
    tmp_path, recorded_sbatch, device
):
    env, record = recorded_sbatch
    workdir = tmp_path / "work"
    (workdir / "results/data").mkdir(parents=True)
    (workdir / "results/data/clusters_a.safetensors").touch()  # the one input, already there
    profile = site_profile(
        tmp_path / "profile",
        train={"slurm_partition": GPU_PARTITION},
        slurm_account=ACCOUNT,
        slurm_partition="cpu",
    )
    done = snakemake(
        workdir,
        "--profile",
        str(profile),
        # The executor waits this long before its first look at the queue, also on the way out.
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--allowed-rules",
        *pack_rules(workdir, env),
        "--config",
        f"device={device}",
        "--",
        TRAIN_TARGET,
        env=env,
        timeout=120,
    )
    assert done.returncode != 0  # every submission refused by the recorder
    calls = sbatch_calls(record)
    # One job, submitted once more on the retry that the profile allows.
    assert len(calls) == 1 + PROFILE["retries"], done.stderr[-3000:]
    threads = yaml.safe_load(TINY.read_text()).get("threads", {}).get("train", 1)
    for attempt, args in enumerate(calls, start=1):
        assert option(args, "-A") == ACCOUNT
        assert option(args, "-p") == GPU_PARTITION
        assert option(args, "-t") == "120"  # the train rule's runtime, in minutes
        assert option(args, "--mem") == str(4000 * attempt)  # more memory on the retry
        assert re.fullmatch(r"rule_train_tiny_\d+", option(args, "--comment"))
        if device == "cuda":
            assert option(args, "--gpus") == "1"
            cpus_per_gpu = PROFILE["set-resources"]["train"]["cpus_per_gpu"]
            assert option(args, "--cpus-per-gpu") == str(cpus_per_gpu)
            assert option(args, "--cpus-per-task") is None
        else:
            assert option(args, "--gpus") is None and option(args, "--cpus-per-gpu") is None
            assert option(args, "--cpus-per-task") == str(threads)


# --- the real cluster -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node SLURM cluster with accounting, stopped by PID when the module's tests end."""
    if os.geteuid() != 0:
        pytest.skip("SLURM test needs root to install and run slurmctld/slurmd/slurmdbd/munged")
    try:
        slurm_cluster.install()
    except slurm_cluster.Unavailable as error:
        if os.environ.get("CI") == "true":  # CI runs as root on Debian: there, it must run
            pytest.fail(f"SLURM test cannot run in CI: {error}")
        pytest.skip(f"SLURM test cannot run here: {error}")
    root = tmp_path_factory.mktemp("slurm")
    running = slurm_cluster.Cluster(root)
    try:
        try:
            running.start()
        except slurm_cluster.Unavailable as error:
            if os.environ.get("CI") == "true":
                pytest.fail(f"SLURM test cannot run in CI: {error}")
            pytest.skip(f"SLURM test cannot run here: {error}")
        yield running
    finally:
        running.stop()


# Columns that may say how or where a row was made rather than what was measured (the commit
# differs when the tree changes between the two runs); every other column is compared exactly.
PROVENANCE = {"git_commit", "host", "hostname", "timestamp", "seconds"}


def assert_same_tables(remote: pd.DataFrame, local: pd.DataFrame) -> None:
    assert list(remote.columns) == list(local.columns)
    compared = [c for c in local.columns if c not in PROVENANCE]
    pd.testing.assert_frame_equal(remote[compared], local[compared], check_exact=True)


def assert_same_run(remote: Path, local: Path) -> None:
    """A run made on the cluster is the local one: the same weights, byte for byte, the same
    history (its timings aside) and the same measures.
    """
    weights = [(d / "model.safetensors").read_bytes() for d in (remote, local)]
    assert weights[0] == weights[1], f"{remote}: other weights than the local run's"
    histories = [pd.read_csv(d / "history.csv") for d in (remote, local)]
    assert_same_tables(*histories)
    assert_same_tables(*(pd.read_parquet(d / "layers.parquet") for d in (remote, local)))


SACCT_FIELDS = "JobID,State,Account,Comment,ReqTRES,SubmitLine"


def sacct_jobs(out: str) -> list[dict[str, str]]:
    """`sacct -X -n -P -o SACCT_FIELDS` as one dict per job, with its rule (from the comment
    the plugin gives each job) and the sbatch options of its submit line (the words before the
    job's command, which the plugin passes last, as --wrap).
    """
    names = SACCT_FIELDS.split(",")
    jobs = []
    for line in out.splitlines():
        if line:
            job = dict(zip(names, line.split("|", len(names) - 1), strict=True))
            job["rule"] = re.match(r"rule_(.+?)(_wildcards_.*)?$", job["Comment"]).group(1)
            job["options"] = job["SubmitLine"].split(" --wrap=", 1)[0].split()
            jobs.append(job)
    return jobs


def assert_asks_for_cpus_only(job: dict[str, str], threads: int, mem_mb: int) -> None:
    """A job of a device=cpu run asked for `threads` CPUs and no GPU: in its sbatch options
    and in what the scheduler recorded as requested (ReqTRES, e.g. cpu=1,mem=4000M,node=1).
    """
    options = job["options"]
    what = f"{job['rule']} job {job['JobID']}: {' '.join(options)}"
    assert option(options, "--cpus-per-task") == str(threads), what
    for gpu_option in ("--gpus", "-G", "--gres", "--cpus-per-gpu", "--gpus-per-node"):
        assert option(options, gpu_option) is None, what
    requested = dict(item.split("=", 1) for item in job["ReqTRES"].split(","))
    assert requested["cpu"] == str(threads) and requested["mem"] == f"{mem_mb}M", job["ReqTRES"]
    assert not any(name.startswith("gres/") for name in requested), job["ReqTRES"]


def shell_commands(log: str, rule: str) -> list[str]:
    """The shell commands Snakemake printed for the jobs of `rule` it submitted."""
    return re.findall(rf"^Shell command: (python -m rankcollapse {rule} .*)$", log, re.M)


@pytest.mark.workflow
def test_tiny_workflow_on_a_real_slurm_cluster_matches_a_local_run(cluster, tiny_run, tmp_path):
    started = time.monotonic()
    workdir = tmp_path / "work"
    workdir.mkdir()
    # The tiny study cut to one λ and two datasets (a real one, fetched, and a synthetic one),
    # on the CPU: the whole chain from raw data to a figure, and one compression, in 11 jobs.
    # Its runs are the local run's runs (same run specs; the device is not part of a spec), so
    # their weights, histories and measures must be the same.
    config = yaml.safe_load(TINY.read_text())
    config["device"] = "cpu"
    study = config["studies"]["tiny"]
    study["datasets"], study["weight_decay"] = ["mnist_small", "clusters_a"], [1.0e-3]
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(config))
    profile = site_profile(
        tmp_path / "profile", slurm_account=slurm_cluster.ACCOUNT, slurm_partition="debug"
    )
    # Groups of 2: the one-node test cluster has the CPUs of this machine (2 in CI).
    grouped = yaml.safe_load((profile / "config.yaml").read_text())
    grouped["group-components"] = ["run_statistics=2"]
    (profile / "config.yaml").write_text(yaml.safe_dump(grouped))
    env = {**cluster.env, "PATH": os.pathsep.join([str(BIN), cluster.env["PATH"]])}
    done = snakemake(
        workdir,
        "--profile",
        str(profile),
        "--slurm-init-seconds-before-status-checks",
        "2",
        # The test's jobs take seconds: check often (a cluster's profile keeps the default).
        "--seconds-between-status-checks",
        "2",
        "--latency-wait",
        "5",
        "results/tables/tiny/layers.parquet",
        "results/figures/tiny/rank_vs_variability.pdf",
        COMPRESS_TARGET,
        env=env,
        timeout=900,
        configfile=tmp_path / "cluster.yaml",
    )
    assert done.returncode == 0, done.stderr[-6000:] + cluster.logs()

    # Every job of the DAG went through sbatch: accounting lists each one.
    planned = Counter(
        dict(
            (m.group(1), int(m.group(2)))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", done.stderr, re.M)
            if m.group(1) not in ("all", "total", "job", "count")
        )
    )
    sacct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-o", SACCT_FIELDS, "-S", "2000-01-01"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "sacct.txt").write_text(sacct)  # kept beside the run, for a look after a failure
    jobs = sacct_jobs(sacct)
    submitted = Counter(job["rule"] for job in jobs)
    assert sum(planned.values()) == 11, planned
    # Each rule's jobs went as one submission each, but measure's and utilize's: they went in
    # groups of 2 (the profile's `groups`), so fewer submissions than jobs.
    statistics = planned["measure"] + planned["utilize"]
    groups = {rule: n for rule, n in submitted.items() if rule.startswith("run_statistics")}
    assert statistics == 3 and sum(groups.values()) == 2, (submitted, planned)
    alone = {rule: n for rule, n in planned.items() if rule not in ("measure", "utilize")}
    assert {r: n for r, n in submitted.items() if r not in groups} == alone, (submitted, planned)
    print(f"SLURM submissions: {sum(planned.values())} jobs, {len(jobs)} submissions")
    assert {job["State"] for job in jobs} == {"COMPLETED"}
    assert {job["Account"] for job in jobs} == {slurm_cluster.ACCOUNT}

    # The submit side of a device=cpu run: train and compress (which fine-tunes on the training
    # device) and measure asked for their threads as CPUs and for no GPU; no job asked for one.
    threads = config.get("threads", {})
    for job in jobs:
        if TRAIN_PACK.fullmatch(job["rule"]) or job["rule"] == "compress":
            assert_asks_for_cpus_only(job, threads.get("train", 1), 4000)
        elif job["rule"] in groups:  # jobs side by side: their CPUs and memory summed
            together = int(dict(i.split("=", 1) for i in job["ReqTRES"].split(","))["cpu"])
            assert together in (1, 2), job["ReqTRES"]
            assert_asks_for_cpus_only(job, together * threads.get("measure", 1), together * 4000)
    assert not any("gres/" in job["ReqTRES"] for job in jobs)
    # Compress and train were told to run on the CPU, and compress says it did.
    for rule in ("compress", "train"):
        commands = shell_commands(done.stderr, rule)
        assert commands and all(" --device cpu " in c for c in commands), (rule, commands)

    # The same runs as the local run of the same config: same seeds, one thread per job on
    # the CPU in both, so bit for bit.
    for dataset in study["datasets"]:
        run = f"results/runs/tiny/{dataset}/wd~0.001/seed~0"
        assert_same_run(workdir / run, tiny_run / run)
    compression = pd.read_parquet(workdir / COMPRESS_TARGET)
    assert set(compression["device"]) == {"cpu"}
    assert_same_tables(compression, pd.read_parquet(tiny_run / COMPRESS_TARGET))
    assert len(pd.read_parquet(workdir / "results/tables/tiny/layers.parquet")) == 6
    assert (workdir / "results/figures/tiny/rank_vs_variability.pdf").stat().st_size > 0
    print(f"tiny workflow on SLURM: {len(jobs)} jobs in {time.monotonic() - started:.0f} s")
