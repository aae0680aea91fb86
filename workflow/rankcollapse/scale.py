"""The smoke scale of a config (``scale: smoke``): every study, dataset, model, loss, rule and
paper-B setting of the config kept, the work shrunk, so that a config's every path runs on a
CPU in minutes before it is launched at full scale.

Derived from the validated config (defaults filled) each time it is read, never written as a
second file, so it cannot drift from the config it shrinks. Idempotent: the smoke scale of a
smoke-scale config is itself.

Imported by the Snakefile, so it needs nothing beyond the standard library.
"""

from __future__ import annotations

import copy

# Samples of an image dataset's subsets, and of a synthetic dataset per class: every class
# of a 10-class subset drawn at random is present (for the fixed subset seeds of the configs).
TRAIN_SAMPLES = 200
TEST_SAMPLES = 100
PER_CLASS = 20
TEST_PER_CLASS = 10
EPOCHS = 1
CONVERGENCE_STEPS = 4
RECORD_EVERY = 2
PROBE_STEPS = 10
FINETUNE_EPOCHS = 1


def _capped(value: int | None, cap: int) -> int:
    """``value`` lowered to ``cap`` (None, meaning all, becomes ``cap``)."""
    return cap if value is None else min(value, cap)


def _kept(values: list, wanted: set) -> list:
    """The values in ``wanted``, in config order."""
    return [v for v in values if v in wanted]


def _smoke_dataset(dataset: dict) -> None:
    if dataset["source"] == "gaussian_clusters":
        dataset["per_class"] = _capped(dataset["per_class"], PER_CLASS)
        dataset["test_per_class"] = _capped(dataset["test_per_class"], TEST_PER_CLASS)
    else:
        dataset["train_size"] = _capped(dataset["train_size"], TRAIN_SAMPLES)
        dataset["test_size"] = _capped(dataset["test_size"], TEST_SAMPLES)


def _ends(grid: list[float]) -> list[float]:
    """The two ends of a λ grid: 0 or the smallest λ, and the largest (where training fails,
    in the paper config); one λ when the grid has one."""
    return _kept(grid, {grid[0], grid[-1]})


def _smoke_study(study: dict, paired: dict[str, set]) -> None:
    seeds, grid = study["seeds"], study["weight_decay"]
    if paired["seeds"]:
        # Compared with a self-supervised study (claim U6 pairs runs seed for seed, λ for λ):
        # its paired seeds and λ, and the upper end of its grid so that it is still a sweep.
        study["seeds"] = _kept(seeds, paired["seeds"]) or seeds[:1]
        kept = _kept(grid, {*paired["weight_decay"], grid[-1]})
        study["weight_decay"] = kept if len(kept) > 1 else _kept(grid, {*kept, grid[0]})
    else:
        study["seeds"] = seeds[:1]
        study["weight_decay"] = _ends(grid)
    optimizer = study["optimizer"]
    optimizer["epochs"] = min(optimizer["epochs"], EPOCHS)
    optimizer["decay_horizon"] = None
    convergence = study["convergence"]
    convergence["steps"] = min(convergence["steps"], CONVERGENCE_STEPS)
    convergence["record_every"] = min(convergence["record_every"], RECORD_EVERY)
    pretraining = study["pretraining"]
    pretraining["probe_steps"] = min(pretraining["probe_steps"], PROBE_STEPS)
    pretraining["finetune_epochs"] = min(pretraining["finetune_epochs"], FINETUNE_EPOCHS)


def _smoke_utilization(utilization: dict) -> None:
    # The headline energy (MLU, claims U1-U4) and the lowest, so that the energy search
    # still has a choice to make.
    headline = utilization["energy"]
    utilization["energies"] = sorted({min(utilization["energies"]), headline})
    compress = utilization["compress_energies"]
    if compress:
        # The energy claim U4 reads: the headline energy if runs are compressed at it, else
        # the largest compression energy.
        utilization["compress_energies"] = [headline if headline in compress else max(compress)]
    utilization["calibration_samples"] = min(utilization["calibration_samples"], TRAIN_SAMPLES)
    utilization["finetune_epochs"] = min(utilization["finetune_epochs"], FINETUNE_EPOCHS)


def smoke_scale(config: dict) -> dict:
    """The smoke scale of a validated ``config``:

    - datasets: image subsets of ``TRAIN_SAMPLES`` / ``TEST_SAMPLES``, synthetic data of
      ``PER_CLASS`` / ``TEST_PER_CLASS`` samples per class (each at most the config's own);
    - studies: the first seed and the two ends of the λ grid; a supervised study compared
      with a self-supervised one instead keeps the seeds and λ values its runs are paired with
      (claim U6 pairs runs seed for seed, λ for λ) and the upper end of its grid (both ends
      where that leaves one λ); ``EPOCHS`` epoch(s) and no
      decay horizon; at most ``CONVERGENCE_STEPS`` L-BFGS iterations recorded every
      ``RECORD_EVERY``; at most ``PROBE_STEPS`` probe iterations and ``FINETUNE_EPOCHS``
      fine-tuning epoch(s);
    - paper B: the headline energy and the lowest of ``utilization.energies``; compression at
      the energy claim U4 reads (the headline energy if it is a compression energy, else the
      largest); ``TRAIN_SAMPLES`` calibration samples and ``FINETUNE_EPOCHS`` fine-tuning
      epoch(s) of each compressed model.

    Models, losses, objectives, optimizers' rates and batch sizes, measures, the headline
    energy, the energy search, threads, device, figures and claims are the config's own.
    """
    smoke = copy.deepcopy(config)
    for dataset in smoke["datasets"].values():
        _smoke_dataset(dataset)
    # What a self-supervised study keeps, the supervised study it is compared with keeps too.
    paired = {name: {"seeds": set(), "weight_decay": set()} for name in smoke["studies"]}
    for study in smoke["studies"].values():
        partner = study["pretraining"]["compare_with"]
        if study["objective"] != "supervised" and partner in paired:
            paired[partner]["seeds"].add(study["seeds"][0])
            paired[partner]["weight_decay"].update(_ends(study["weight_decay"]))
    for name, study in smoke["studies"].items():
        _smoke_study(study, paired[name])
    _smoke_utilization(smoke["utilization"])
    return smoke
