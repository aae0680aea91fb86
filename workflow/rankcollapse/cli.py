"""Command line of the pipeline: each Snakemake rule runs one subcommand of the same name
(dashes for underscores), which calls the function of that name in the module of that name.
Only argument parsing lives here; every value comes from the rule (defaults: the schema).
Two commands are a reviewer's, run by make rather than by a rule (BY_HAND); the same holds
for them, with the values from the Makefile.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from .errors import DataError

BY_HAND = ("import-archive", "spot-check")


def log(message: str) -> None:
    print(message, flush=True)


def _run_files(s: argparse.ArgumentParser) -> None:
    """The files of one trained run that a per-run command reads."""
    s.add_argument("--data", required=True, help="the run's dataset (safetensors)")
    s.add_argument("--model", required=True, help="the run's weights (safetensors)")
    s.add_argument("--metadata", required=True, help="the run's metadata.json")


def _numbers(s: argparse.ArgumentParser, name: str, kind=int, **kwargs) -> None:
    s.add_argument(name, type=kind, required=True, **kwargs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rankcollapse", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("fetch-raw", help="acquire and verify a source's raw files")
    s.add_argument("--source", required=True)
    s.add_argument("--dest", required=True)
    s.add_argument("--mirror", required=True, help="mirror root folder, or '' for none")
    s.add_argument("--download", action=argparse.BooleanOptionalAction, required=True)
    s.add_argument("--offline", action=argparse.BooleanOptionalAction, required=True)
    s.add_argument("--cifar10-url", required=True, help="(cifar10) address, or '' (official)")
    s.add_argument("--cifar10-md5", required=True, help="(cifar10) md5, or '' (published)")

    s = sub.add_parser("prepare-dataset", help="write a dataset as tensors (safetensors)")
    s.add_argument("--spec", type=json.loads, required=True, help="the dataset's entry (JSON)")
    s.add_argument("--raw", required=True, help="folder of verified raw files, or ''")
    s.add_argument("--out", required=True)

    s = sub.add_parser("train", help="train a pack of runs of one study and dataset")
    s.add_argument(
        "--runs",
        type=json.loads,
        nargs="+",
        required=True,
        help="per run (JSON): its spec and the paths of its model, history, metadata, "
        "checkpoint and log",
    )
    s.add_argument("--data", required=True)
    s.add_argument("--device", required=True, choices=["auto", "cpu", "cuda"])
    _numbers(s, "--threads")
    _numbers(s, "--checkpoint-every", help="checkpoint after every N-th record (0: never)")
    s.add_argument("--divergence", required=True, choices=["record", "fail"])

    s = sub.add_parser("measure", help="measure one trained run")
    _run_files(s)
    s.add_argument("--layers", required=True, help="output: one row per layer (parquet)")
    s.add_argument("--spectra", required=True, help="output: spectra (safetensors)")
    _numbers(s, "--eps", float, nargs="+")
    _numbers(s, "--batch-size")
    _numbers(s, "--threads")

    s = sub.add_parser("aggregate", help="tidy tables of a study's runs")
    for runs in ("--layers", "--metadata", "--history", "--spectra"):
        s.add_argument(runs, nargs="+", required=True, help="one file per run, in run order")
    for output in ("--layers-table", "--history-table", "--spectra-table"):
        s.add_argument(output, required=True)

    s = sub.add_parser("utilize", help="utilized rank of every layer of one run (paper B)")
    _run_files(s)
    s.add_argument("--table", required=True, help="output: one row per layer and energy")
    s.add_argument("--moments", required=True, help="output: C_in per layer (safetensors)")
    _numbers(s, "--energies", float, nargs="+")
    _numbers(s, "--calibration-samples")
    _numbers(s, "--batch-size")
    _numbers(s, "--threads")

    s = sub.add_parser("compress", help="factorize one run to its utilized ranks, fine-tune")
    _run_files(s)
    s.add_argument("--moments", required=True, help="the run's C_in per layer (safetensors)")
    s.add_argument("--energy", required=True, help="an energy in (0, 1], or 'search'")
    s.add_argument("--table", required=True, help="output: one row per method and stage")
    _numbers(s, "--search-energies", float, nargs="+")
    _numbers(s, "--tolerance", float, help="(search) largest validation accuracy drop")
    _numbers(s, "--finetune-epochs")
    _numbers(s, "--finetune-lr", float)
    _numbers(s, "--batch-size")
    s.add_argument("--device", required=True, choices=["auto", "cpu", "cuda"])
    _numbers(s, "--threads")

    s = sub.add_parser("aggregate-utilization", help="tidy paper-B tables of a study's runs")
    s.add_argument("--utilization", nargs="+", required=True, help="each run's table")
    s.add_argument("--compression", nargs="*", required=True, help="each compression table")
    s.add_argument("--utilization-table", required=True)
    s.add_argument("--compression-table", required=True)

    s = sub.add_parser("claims", help="verdict on claims C1-C5, P and U1-U6 from the study tables")
    s.add_argument("--tables", nargs="+", required=True, help="layers tables of the studies")
    s.add_argument("--utilization-tables", nargs="*", required=True)
    s.add_argument("--compression-tables", nargs="*", required=True)
    s.add_argument("--thresholds", type=json.loads, required=True, help="claims section (JSON)")
    s.add_argument("--markdown", required=True)
    s.add_argument("--json-path", required=True)

    s = sub.add_parser("export-archive", help="the results archive of a finished run's config")
    s.add_argument("--files", dest="files_in", nargs="+", required=True, help="files archived")
    s.add_argument("--claims", nargs="+", required=True, help="claims.md and claims.json")
    s.add_argument("--config", type=json.loads, required=True, help="resolved config (JSON)")
    s.add_argument("--out", required=True, help="output: the archive (tar)")
    s.add_argument("--checksum", required=True, help="output: its SHA-256 (text)")

    s = sub.add_parser("import-archive", help="verify a results archive and unpack it")
    s.add_argument("archive_path", metavar="ARCHIVE", help="the tar written by `make archive`")
    s.add_argument("--dest", required=True, help="the checkout to unpack into")

    s = sub.add_parser("spot-check", help="re-run archived runs from scratch and compare")
    _numbers(s, "--runs", help="how many runs to draw at random")
    _numbers(s, "--seed", help="seed of the random draw")
    s.add_argument("--run", action="append", help="a run to check (study/dataset/wd~λ/seed~s)")
    s.add_argument("--cores", required=True, help="Snakemake's --cores for the re-run")
    return p


def main(argv: list[str] | None = None) -> None:
    args = vars(parser().parse_args(argv))
    name = args.pop("command").replace("-", "_")
    command = getattr(importlib.import_module(f"{__package__}.{name}"), name)
    try:
        command(**args, log=log)
    except DataError as error:
        sys.exit(f"error: {error}")
