"""Running the repository's Snakefile, or one of its rules' commands, from a test."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def snakemake_command(workdir: Path, *args: str, configfile: Path) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]


def snakemake(
    workdir: Path, *args: str, configfile: Path, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile in ``workdir``; ``env`` adds to the environment."""
    command = snakemake_command(workdir, *args, configfile=configfile)
    return subprocess.run(command, env={**ENV, **(env or {})}, capture_output=True, text=True)


JOB = re.compile(r"^(?:local)?rule (\w+):$", re.MULTILINE)


TRAIN_PACK = re.compile(r"train_\w+_\d+")


def planned_jobs(stdout: str) -> list[dict]:
    """The jobs a dry run (``-n -p``) prints: each job's rule, output, resources (text values)
    and shell command; a pack of training runs's rule as ``train``.
    """
    jobs = []
    starts = list(JOB.finditer(stdout))
    for match, end in zip(starts, [m.start() for m in starts[1:]] + [len(stdout)], strict=True):
        fields = {}
        for line in stdout[match.end() : end].splitlines():
            key, _, value = line.strip().partition(": ")
            fields.setdefault(key, value)
        shell = fields.get("Shell command")
        resources = dict(
            item.partition("=")[::2] for item in fields.get("resources", "").split(", ") if item
        )
        jobs.append(
            {
                # A pack's rule (train_<study>_<n>) as `train`, the rule all packs share.
                "rule": "train" if TRAIN_PACK.fullmatch(match.group(1)) else match.group(1),
                "output": fields.get("output", ""),
                "resources": resources,
                "shell": None if shell == "None" else shell,
            }
        )
    return jobs


def job_counts(stdout: str) -> dict[str, int]:
    """The "Job stats" table of a dry run: jobs per rule, and ``total``."""
    table = stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [row.split() for row in table.splitlines()]
    counts: dict[str, int] = {}
    for row in rows:
        if len(row) == 2 and row[1].isdigit():
            # Each pack of runs is a rule of its own (train_<study>_<n>): counted as `train`.
            rule = "train" if TRAIN_PACK.fullmatch(row[0]) else row[0]
            counts[rule] = counts.get(rule, 0) + int(row[1])
    return counts


CLI_ENV = {**ENV, "PYTHONPATH": str(REPO / "workflow")}


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """``python -m rankcollapse ARGS``, as a rule runs it."""
    command = [sys.executable, "-m", "rankcollapse", *args]
    return subprocess.Popen(command, env=CLI_ENV, text=True, **kwargs)


def train_command(spec: str, data: Path, run_dir: Path, checkpoint_every: int) -> list[str]:
    """The arguments of ``train`` for one run whose files go to ``run_dir``, as the rule
    gives them.
    """
    files = {
        name: str(run_dir / f"{name}.{ext}")
        for name, ext in (("model", "safetensors"), ("history", "csv"), ("metadata", "json"))
    }
    files |= {"checkpoint": str(run_dir / "checkpoint.safetensors"), "log": str(run_dir / "log")}
    run = json.dumps({"spec": json.loads(spec), **files})
    return [
        "train",
        *("--runs", run, "--data", str(data)),
        *("--device", "cpu", "--threads", "1", "--divergence", "record"),
        *("--checkpoint-every", str(checkpoint_every)),
    ]


def run_files(data: Path, run_dir: Path) -> list[str]:
    """The arguments naming a trained run's files, for measure, utilize and compress."""
    return [
        *("--data", str(data)),
        *("--model", str(run_dir / "model.safetensors")),
        *("--metadata", str(run_dir / "metadata.json")),
    ]
