# Helpers of every rules file: config validation, wildcard constraints, targets, resources.
import functools
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The rules call the package beside this folder (`python -m rankcollapse`). It is put on the
# path here, for this process and the jobs it starts, so that no environment (the project's
# virtualenv, a `--use-conda` environment, a cluster node) needs it installed.
PACKAGE_DIR = str(Path(workflow.current_basedir).parent)
sys.path.insert(0, PACKAGE_DIR)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [PACKAGE_DIR]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)

from rankcollapse.archive import CONFIG as ARCHIVE_CONFIG
from rankcollapse.config import (
    ConfigError,
    dataset_spec,
    energy_label,
    load_config_file,
    run_spec,
    validate_config,
    wd_label,
)
from rankcollapse.scale import smoke_scale

try:
    for path in workflow.configfiles:
        load_config_file(path)
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
if config["scale"] == "smoke":
    config.update(smoke_scale(config))

if FROM_ARCHIVE and config != load_config_file(ARCHIVE_CONFIG):
    raise WorkflowError(
        "results/ holds an imported results archive (results/archive/manifest.json) made with "
        "another config than this one: run `snakemake --cores all` without --configfile or "
        "--config to build its figures, or move results/ away to run this config from scratch."
    )

FIGURES = [
    "rank_vs_weight_decay",
    "variability_vs_weight_decay",
    "rank_vs_variability",
    "proportionality",
    "spectra",
    "bound",
    "rank_vs_spread",
    "training_curves",
    "stationarity",
]
# Paper B (utilized rank): only for the studies in utilization.studies.
FIGURES_UTILIZATION = [
    "utilization_per_layer",
    "mlu_vs_weight_decay",
    "compression",
    "subspace_ranks",
]
RUN_DIR = "results/runs/{study}/{dataset}/wd~{wd}/seed~{seed}"
RUN_ID = "{study}/{dataset}/wd~{wd}/seed~{seed}"


def one_of(values):
    """A wildcard pattern matching exactly these values (already checked to be safe path
    components by the schema), so that a target naming anything else is refused up front
    ("No rule to produce ...") instead of failing inside an input function.
    """
    return "|".join(re.escape(str(v)) for v in sorted(set(values), key=str)) or "(?!)"


wildcard_constraints:
    study=one_of(config["studies"]),
    dataset=one_of(config["datasets"]),
    # λ as written by wd_label (%g): 0, 0.001, 1e-05, ...; nothing else reaches a shell.
    wd=one_of(
        wd_label(w) for s in config["studies"].values() for w in s["weight_decay"]
    ),
    seed=one_of(seed for s in config["studies"].values() for seed in s["seeds"]),
    source=r"mnist|fashion_mnist|cifar10",
    figure="|".join(FIGURES),
    figure_b="|".join(FIGURES_UTILIZATION),
    energy=r"(0|1)(\.[0-9]+)?|search",


def study_runs(study):
    """Wildcard values of every run of a study."""
    s = config["studies"][study]
    return [
        {"study": study, "dataset": d, "wd": wd_label(wd), "seed": seed}
        for d in s["datasets"]
        for wd in s["weight_decay"]
        for seed in s["seeds"]
    ]


def training_packs():
    """The runs each training job trains, in DAG order: per study and dataset, its runs (λ,
    then seed) in packs of at most training.pack. Only supervised MLPs are packed: a stacked
    CNN would round unlike a single one, a stacked ViT (vmap) trains slower than its runs one
    by one on a CPU, and pre-training is not stacked (docs/performance.md).
    """
    packs = []
    for study, s in config["studies"].items():
        stackable = s["model"]["arch"] == "mlp" and s["objective"] == "supervised"
        size = config["training"]["pack"] if stackable else 1
        for dataset in s["datasets"]:
            runs = [run for run in study_runs(study) if run["dataset"] == dataset]
            packs += [runs[i : i + size] for i in range(0, len(runs), size)]
    return packs


def pack_rule_name(index, pack):
    """A training job's rule: train_<study>_<n>, n counting the packs of the whole config."""
    study = re.sub(r"\W", "_", pack[0]["study"])
    return f"train_{study}_{index}"


def pack_runs_json(pack):
    """Each run of a pack as the train command reads it: its spec and its files."""
    return [
        json.dumps(
            {
                "spec": run_spec(config, **run),
                "model": f"{RUN_DIR}/model.safetensors".format(**run),
                "history": f"{RUN_DIR}/history.csv".format(**run),
                "metadata": f"{RUN_DIR}/metadata.json".format(**run),
                # Not an output: it exists only while the job runs, so that a killed job resumes.
                "checkpoint": f"{RUN_DIR}/checkpoint.safetensors".format(**run),
                "log": f"results/logs/train/{RUN_ID}.log".format(**run),
            }
        )
        for run in pack
    ]


def study_run_files(study, name):
    """A file of every run of a study, e.g. its layers.parquet, in run order."""
    return [f"{RUN_DIR}/{name}".format(**run) for run in study_runs(study)]


# ---------------------------------------------------------------- paper B (utilized rank)
UTILIZATION = config["utilization"]


def compared_studies():
    """Claim U6's pairs: each self-supervised study in utilization.studies that names, in
    pretraining.compare_with, the supervised study its runs are compared with.
    """
    return {
        name: s["pretraining"]["compare_with"]
        for name, s in config["studies"].items()
        if s["objective"] != "supervised"
        and s["pretraining"]["compare_with"]
        and name in UTILIZATION["studies"]
    }


U6_PAIRS = compared_studies()


def study_compression_tables(study):
    """The compression table of every run of a study at every compression energy."""
    labels = [energy_label(e) for e in UTILIZATION["compress_energies"]]
    labels += ["search"] if UTILIZATION["search"]["enabled"] else []
    return [
        f"{RUN_DIR}/compress/energy~{label}.parquet".format(**run)
        for run in study_runs(study)
        for label in labels
    ]


def utilization_figures(study):
    """The paper-B figures of a study; compression only when runs are compressed."""
    if study not in UTILIZATION["studies"]:
        return []
    return [
        f
        for f in FIGURES_UTILIZATION
        if f != "compression"
        or UTILIZATION["compress_energies"]
        or UTILIZATION["search"]["enabled"]
    ]


def utilization_targets():
    """The paper-B tables and figures of every study listed in utilization.studies."""
    targets = []
    for study in UTILIZATION["studies"]:
        targets += [
            f"results/tables/{study}/{name}.parquet"
            for name in ("utilization", "compression")
        ]
        for figure in utilization_figures(study):
            targets += [
                f"results/figures/{study}/{figure}.{ext}" for ext in ("pdf", "png")
            ]
            targets.append(f"results/notebooks/{study}/{figure}.ipynb")
    for study in U6_PAIRS:
        targets += [
            f"results/figures/{study}/ssl_utilization.{ext}" for ext in ("pdf", "png")
        ]
        targets.append(f"results/notebooks/{study}/ssl_utilization.ipynb")
    return targets


def raw_input(wildcards):
    """What a dataset is prepared from: the folder of its verified raw files, or nothing
    (synthetic).
    """
    source = config["datasets"][wildcards.dataset]["source"]
    return [] if source == "gaussian_clusters" else f"results/raw/{source}"


def study_figures(study):
    """The figures of a study; rank_vs_spread only where it has synthetic data of ≥ 2 spreads;
    none for a self-supervised study, which paper A's claims do not read (figure_pretraining
    draws it beside its supervised study).
    """
    if config["studies"][study]["objective"] != "supervised":
        return []
    datasets = [config["datasets"][d] for d in config["studies"][study]["datasets"]]
    spreads = {d["std"] for d in datasets if d["source"] == "gaussian_clusters"}
    return [f for f in FIGURES if f != "rank_vs_spread" or len(spreads) >= 2]


# The one-page overview of every claim's statistics (rule claims_overview), first in the report.
CLAIMS_OVERVIEW = [
    "results/figures/claims_overview.pdf",
    "results/figures/claims_overview.png",
    "results/notebooks/claims_overview.ipynb",
]


def all_targets():
    targets = ["results/claims.md", *CLAIMS_OVERVIEW, *utilization_targets()]
    for study in config["studies"]:
        for figure in study_figures(study):
            targets += [
                f"results/figures/{study}/{figure}.{ext}" for ext in ("pdf", "png")
            ]
            targets.append(f"results/notebooks/{study}/{figure}.ipynb")
    return targets


def archive_files():
    """What the results archive holds besides its own files: every study table and, per run,
    what a figure, a claim or a spot-check reads (weights when archive.weights).
    """
    names = ["metadata.json", "history.csv", "layers.parquet", "spectra.safetensors"]
    names += ["model.safetensors"] if config["archive"]["weights"] else []
    found = []
    for study in config["studies"]:
        found += [
            f"results/tables/{study}/{t}.parquet"
            for t in ("layers", "history", "spectra")
        ]
        for name in names:
            found += study_run_files(study, name)
        if study in UTILIZATION["studies"]:
            found += [
                f"results/tables/{study}/{t}.parquet"
                for t in ("utilization", "compression")
            ]
            found += study_run_files(study, "utilization.parquet")
            found += study_compression_tables(study)
    return found


def train_gpus(device):
    """GPUs one training job asks for: 1 for a CUDA run, 0 for a CPU run.

    `cuda` always asks for one (what a cluster needs: the login node that builds the DAG often
    has no GPU); `cpu` never does, so a CPU-only cluster or laptop never waits for a GPU; `auto`
    asks for one only when the machine that builds the DAG sees a CUDA GPU, as training would
    then use it.
    """
    if device == "cuda":
        return 1
    if device == "cpu":
        return 0
    return int(cuda_visible())


@functools.cache
def cuda_visible():
    """Whether torch sees a CUDA GPU here; asked once, and only when a training job needs it."""
    import torch

    return torch.cuda.is_available()


def train_gpu(wildcards):
    """The `gpu` resource of a training job, from the config's device choice."""
    return train_gpus(config["device"])


def memory_mb(base):
    """Memory of a job in MB: `base`, and `base` once more on each retry (`--retries`)."""
    return lambda wildcards, attempt: base * attempt


def run_statistics_minutes(base):
    """Wall-clock limit of a run's measure or utilize job in minutes (sbatch -t): `base`, and
    4 × `base` for a ViT, every token of whose images is a row of every layer's statistics
    (1-2 hours on 4 threads at 50 000 images: README, "What the full scale costs").
    """

    def minutes(wildcards):
        vit = config["studies"][wildcards.study]["model"]["arch"] == "vit"
        return base * 4 if vit else base

    return minutes
