"""The smoke scale: every path of a config kept, only the work shrunk, and derived, not copied."""

import copy

import pytest
from factories import SCHEMA, validated
from rankcollapse import scale
from rankcollapse.config import validate_config
from workflow_runner import REPO

CONFIGS = sorted(
    str(p.relative_to(REPO))
    for p in [*REPO.glob("config/*.yaml"), *REPO.glob("tests/configs/*.yaml")]
)
# What the smoke scale may change, and nothing else.
SHRUNK_DATASET_KEYS = {"train_size", "test_size", "per_class", "test_per_class"}
SHRUNK_STUDY_KEYS = {"seeds", "weight_decay"}
SHRUNK_NESTED = {
    "optimizer": {"epochs", "decay_horizon"},
    "convergence": {"steps", "record_every"},
    "pretraining": {"probe_steps", "finetune_epochs"},
}
SHRUNK_UTILIZATION = {"energies", "compress_energies", "calibration_samples", "finetune_epochs"}


def without(mapping: dict, keys: set) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys}


@pytest.fixture(scope="module")
def paper():
    full = validated(REPO / "config/paper.yaml")
    return full, scale.smoke_scale(full)


@pytest.mark.parametrize("path", CONFIGS)
def test_smoke_scale_changes_only_the_work(path):
    full = validated(REPO / path)
    smoke = scale.smoke_scale(copy.deepcopy(full))
    assert smoke == scale.smoke_scale(copy.deepcopy(smoke))  # idempotent
    checked = copy.deepcopy(smoke)
    validate_config(checked, SCHEMA)  # still a valid config, and nothing was left unfilled
    assert checked == smoke
    assert without(smoke, {"datasets", "studies", "utilization"}) == without(
        full, {"datasets", "studies", "utilization"}
    )
    assert without(smoke["utilization"], SHRUNK_UTILIZATION) == without(
        full["utilization"], SHRUNK_UTILIZATION
    )
    assert smoke["datasets"].keys() == full["datasets"].keys()
    for name, dataset in smoke["datasets"].items():
        assert without(dataset, SHRUNK_DATASET_KEYS) == without(
            full["datasets"][name], SHRUNK_DATASET_KEYS
        )
    assert smoke["studies"].keys() == full["studies"].keys()
    for name, study in smoke["studies"].items():
        original = full["studies"][name]
        assert without(study, SHRUNK_STUDY_KEYS | SHRUNK_NESTED.keys()) == without(
            original, SHRUNK_STUDY_KEYS | SHRUNK_NESTED.keys()
        )
        for section, keys in SHRUNK_NESTED.items():
            assert without(study[section], keys) == without(original[section], keys)
        assert set(study["seeds"]) <= set(original["seeds"])
        assert set(study["weight_decay"]) <= set(original["weight_decay"])
        assert study["optimizer"]["epochs"] <= original["optimizer"]["epochs"]
        assert study["convergence"]["steps"] <= original["convergence"]["steps"]
        assert len(study["weight_decay"]) >= min(2, len(original["weight_decay"]))
    energies = smoke["utilization"]["energies"]
    assert set(energies) <= set(full["utilization"]["energies"])
    assert smoke["utilization"]["energy"] in energies
    assert set(smoke["utilization"]["compress_energies"]) <= set(
        full["utilization"]["compress_energies"]
    )
    assert bool(smoke["utilization"]["compress_energies"]) == bool(
        full["utilization"]["compress_energies"]
    )


def test_paper_config_at_smoke_scale(paper):
    full, smoke = paper
    for study in smoke["studies"].values():
        assert study["seeds"] == [0]
        assert study["optimizer"]["epochs"] == 1 and study["optimizer"]["decay_horizon"] is None
    grid = full["studies"]["mlp_ce"]["weight_decay"]
    assert smoke["studies"]["mlp_ce"]["weight_decay"] == [grid[0], grid[-1]] == [0, 0.1]
    # The supervised ViT keeps the λ its self-supervised twin is compared at (claim U6), and
    # the upper end of its grid.
    assert smoke["studies"]["vit_tiny"]["weight_decay"] == [1e-4, 1e-3]
    assert smoke["studies"]["vit_tiny_simclr"]["weight_decay"] == [1e-4]
    assert smoke["studies"]["mlp_ce"]["convergence"]["steps"] == scale.CONVERGENCE_STEPS
    assert smoke["studies"]["vit_tiny"]["convergence"]["steps"] == 0  # none stays none
    assert smoke["studies"]["vit_tiny"]["model"] == full["studies"]["vit_tiny"]["model"]
    assert smoke["datasets"]["cifar10"] == {
        **full["datasets"]["cifar10"],
        "train_size": scale.TRAIN_SAMPLES,
        "test_size": scale.TEST_SAMPLES,
    }
    assert smoke["datasets"]["clusters_std1"]["per_class"] == scale.PER_CLASS
    assert smoke["utilization"]["search"]["enabled"] is True
    # The headline energy, and the lowest for the search to choose; compression at the
    # headline energy, which claim U4 reads.
    assert smoke["utilization"]["energies"] == [0.8, 0.99]
    assert smoke["utilization"]["compress_energies"] == [0.99]
    assert smoke["measures"]["batch_size"] == 4000 and smoke["threads"] == full["threads"]


def test_the_smoke_scale_keeps_seed_and_weight_decay_pairs_of_a_compared_study():
    config = validated(REPO / "config/paper.yaml")
    config["studies"]["vit_tiny"]["seeds"] = [3, 4, 5]
    config["studies"]["vit_tiny_simclr"]["seeds"] = [5]
    config["studies"]["vit_tiny_simclr"]["weight_decay"] = [1e-5, 3e-4]
    config["studies"]["vit_tiny"]["weight_decay"] = [0, 1e-5, 1e-4, 3e-4, 1e-3]
    smoke = scale.smoke_scale(config)
    assert smoke["studies"]["vit_tiny"]["seeds"] == [5]
    assert smoke["studies"]["vit_tiny"]["weight_decay"] == [1e-5, 3e-4, 1e-3]
    # Paired at the upper end of the grid: the lower end too, so that it is still a sweep.
    config["studies"]["vit_tiny_simclr"]["weight_decay"] = [1e-3]
    smoke = scale.smoke_scale(config)
    assert smoke["studies"]["vit_tiny"]["weight_decay"] == [0, 1e-3]


def test_compression_at_smoke_scale_is_at_the_energy_claim_u4_reads():
    config = validated(REPO / "config/paper.yaml")
    config["utilization"]["compress_energies"] = [0.9, 0.95]
    assert scale.smoke_scale(config)["utilization"]["compress_energies"] == [0.95]
    config["utilization"]["compress_energies"] = []
    assert scale.smoke_scale(config)["utilization"]["compress_energies"] == []


def test_a_config_smaller_than_the_smoke_scale_is_not_grown():
    config = validated(REPO / "tests/configs/tiny.yaml")
    config["datasets"]["clusters_a"].update(per_class=5, test_per_class=3)
    config["datasets"]["mnist_small"].update(train_size=50, test_size=30)
    config["studies"]["tiny"]["convergence"]["steps"] = 2
    smoke = scale.smoke_scale(config)
    assert smoke["datasets"]["clusters_a"] == config["datasets"]["clusters_a"]
    assert smoke["datasets"]["mnist_small"] == config["datasets"]["mnist_small"]
    assert smoke["studies"]["tiny"]["convergence"]["steps"] == 2
    assert smoke["datasets"]["clusters_b"]["per_class"] == scale.PER_CLASS  # 50 shrunk
