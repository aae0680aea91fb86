"""Running the repository's Snakefile, or one of its rules' commands, from a test."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
