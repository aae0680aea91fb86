"""Running the repository's Snakefile, or one of its rules' commands, from a test."""

import os
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


def snakemake(workdir: Path, *args: str, configfile: Path) -> subprocess.CompletedProcess:
    command = snakemake_command(workdir, *args, configfile=configfile)
    return subprocess.run(command, env=ENV, capture_output=True, text=True)


CLI_ENV = {**ENV, "PYTHONPATH": str(REPO / "workflow")}


def cli(*args: str, **kwargs) -> subprocess.Popen:
    """``python -m rankcollapse ARGS``, as a rule runs it."""
    command = [sys.executable, "-m", "rankcollapse", *args]
    return subprocess.Popen(command, env=CLI_ENV, text=True, **kwargs)


def train_command(spec: str, data: Path, run_dir: Path, checkpoint_every: int) -> list[str]:
    """The arguments of ``train`` for one run whose files go to ``run_dir``, as the rule
    gives them.
    """
    return [
        "train",
        *("--spec", spec, "--data", str(data)),
        *("--model", str(run_dir / "model.safetensors")),
        *("--history", str(run_dir / "history.csv")),
        *("--metadata", str(run_dir / "metadata.json")),
        *("--checkpoint-path", str(run_dir / "checkpoint.safetensors")),
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
