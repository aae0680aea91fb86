"""Config validation: defaults filled in, every bad value refused with the key named."""

import copy
import functools
from pathlib import Path

import pytest
import yaml
from factories import claims_defaults
from rankcollapse.config import (
    ConfigError,
    load_config_file,
    run_spec,
    validate_config,
    wd_label,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate_config(config, SCHEMA)
    return config


@pytest.mark.parametrize(
    "path", ["config/config.yaml", "config/paper.yaml", "tests/configs/tiny.yaml"]
)
def test_shipped_configs_are_valid(path):
    validated(yaml.safe_load((REPO / path).read_text()))


def test_a_partial_claims_section_gets_the_schema_defaults_for_the_rest():
    config = validated({**TINY, "claims": {"max_rel_tail": 0.2}})
    assert config["claims"] == {**claims_defaults(), "max_rel_tail": 0.2}
    assert claims_defaults()["rank_measure"] == "rank_fro"  # the schema's own default


def test_defaults_are_filled_in():
    config = validated(TINY)
    study = config["studies"]["tiny"]
    assert study["seeds"] == [0]
    assert study["model"] == {
        "arch": "mlp",
        "depth": 3,
        "width": 32,
        "bias": False,
        "channels": [16, 32],
        "dim": 64,
        "heads": 4,
        "patch_size": 7,
        "pool": "cls",
        "activation": "relu",
        "beta": 5.0,
    }
    assert study["optimizer"]["lr"] == 0.05 and study["optimizer"]["schedule"] == "cosine"
    assert study["convergence"]["dtype"] == "float64" and study["convergence"]["tol"] is None
    assert config["training"]["stationarity"] == {"tol": 0.01}
    assert config["measures"]["eps"] == [0.1, 0.01, 0.001]
    assert config["device"] == "auto"


def test_a_run_spec_carries_the_tolerance_of_its_study_or_the_global_one():
    config = copy.deepcopy(TINY)
    config["studies"]["strict"] = {**config["studies"]["tiny"], "convergence": {"tol": 1e-4}}
    config = validated(config)
    dataset = config["studies"]["tiny"]["datasets"][0]
    tiny = run_spec(config, "tiny", dataset, "0.001", "0")
    strict = run_spec(config, "strict", dataset, "0.001", "0")
    assert tiny["stationarity"] == {"tol": 0.01} and strict["stationarity"] == {"tol": 1e-4}
    assert "tol" not in strict["convergence"] and tiny["config_hash"] != strict["config_hash"]
    # only the keys the architecture reads: no softplus sharpness for a ReLU net
    assert "beta" not in tiny["model"] and tiny["model"]["activation"] == "relu"


def with_change(path: list, value) -> dict:
    config = copy.deepcopy(TINY)
    node = config
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


BAD = {
    "a key of the former full-batch phase": (
        ["studies", "tiny", "optimizer", "full_batch_steps"],
        200,
        "studies.tiny.optimizer",
        "allowed keys: batch_size, decay_horizon",
    ),
    "a tolerance of 1 or more": (
        ["studies", "tiny", "convergence"],
        {"tol": 1.0},
        "studies.tiny.convergence.tol",
        "stricter",
    ),
    "an unknown activation": (
        ["studies", "tiny", "model", "activation"],
        "tanh",
        "studies.tiny.model.activation",
        "'softplus'",
    ),
    "a negative decay horizon": (
        ["studies", "tiny", "optimizer", "decay_horizon"],
        -1,
        "studies.tiny.optimizer.decay_horizon",
        "e^-h",
    ),
    "unknown dataset source": (
        ["datasets", "clusters_a", "source"],
        "imagenet",
        "datasets.clusters_a.source",
        "'mnist'",
    ),
    "negative weight decay": (
        ["studies", "tiny", "weight_decay"],
        [0, -0.1],
        "weight_decay[1]",
        "minimum of 0",
    ),
    "missing weight decay": (
        ["studies", "tiny", "weight_decay"],
        KeyError,
        "studies.tiny",
        "'weight_decay' is a required",
    ),
    "wrong type": (
        ["studies", "tiny", "optimizer", "epochs"],
        "ten",
        "optimizer.epochs",
        "not of type 'integer'",
    ),
    "zero epochs": (
        ["studies", "tiny", "optimizer", "epochs"],
        0,
        "optimizer.epochs",
        "minimum of 1",
    ),
    "empty grid": (["studies", "tiny", "weight_decay"], [], "weight_decay", "should be non-empty"),
    "unknown key": (["studies", "tiny", "epochs"], 3, "studies.tiny", "allowed keys:"),
    "undefined dataset": (
        ["studies", "tiny", "datasets"],
        ["cifar"],
        "studies.tiny.datasets",
        "'cifar' is not defined",
    ),
    "text that is no number": (
        ["studies", "tiny", "weight_decay"],
        [0, "1e-3x"],
        "weight_decay[1]",
        "not of type 'number'",
    ),
    "text that is not a finite number": (
        ["studies", "tiny", "weight_decay"],
        ["nan"],
        "weight_decay[0]",
        "not of type 'number'",
    ),
    "bad rank measure": (
        ["figures"],
        {"rank_measure": "rank_eps_0.5"},
        "figures.rank_measure",
        "allowed: rank_fro",
    ),
    "unknown device": (["device"], "tpu", "device", "'cuda'"),
    "unknown model": (["studies", "tiny", "model", "arch"], "resnet", "model.arch", "'mlp'"),
    "unknown loss": (["studies", "tiny", "loss"], "hinge", "studies.tiny.loss", "'mse'"),
    "non-numeric weight decay": (
        ["studies", "tiny", "weight_decay"],
        [0, "1e-3; rm -rf ~"],
        "weight_decay[1]",
        "not of type 'number'",
    ),
    "depth below one": (["studies", "tiny", "model", "depth"], 0, "model.depth", "minimum of 1"),
    "rank threshold outside (0, 1)": (
        ["measures"],
        {"eps": [0.1, 1.5]},
        "measures.eps[1]",
        "maximum of 1",
    ),
    "zero batch size": (
        ["studies", "tiny", "optimizer", "batch_size"],
        0,
        "optimizer.batch_size",
        "minimum of 1",
    ),
    "negative learning rate": (
        ["studies", "tiny", "optimizer", "lr"],
        -0.1,
        "optimizer.lr",
        "less than or equal to the minimum of 0",
    ),
    "negative seed": (["studies", "tiny", "seeds"], [-1], "studies.tiny.seeds[0]", "minimum of 0"),
    "same λ label twice": (
        ["studies", "tiny", "weight_decay"],
        [1e-3, 0.0010000001],
        "studies.tiny.weight_decay",
        "same path label twice",
    ),
    "unknown divergence policy": (
        ["training"],
        {"divergence": "ignore"},
        "training.divergence",
        "'record', 'fail'",
    ),
    "negative checkpoint interval": (
        ["training"],
        {"checkpoint_every": -1},
        "training.checkpoint_every",
        "minimum of 0",
    ),
    "unknown distance measure": (
        ["claims"],
        {"distance_measures": ["rank_fro"]},
        "claims.distance_measures[0]",
        "is not one of",
    ),
    "significance level above one half": (
        ["claims"],
        {"alpha": 0.6},
        "claims.alpha",
        "maximum of 0.5",
    ),
    "utilization energy outside (0, 1]": (
        ["utilization", "energies"],
        [0.9, 1.5],
        "utilization.energies[1]",
        "maximum of 1",
    ),
    "studies not a mapping": (["studies"], ["tiny"], "studies", "not of type 'object'"),
    # Holes found by a careless or hostile user: each was accepted and failed later, or never.
    "weight decay not a number (nan)": (
        ["studies", "tiny", "weight_decay"],
        [0, float("nan")],
        "studies.tiny.weight_decay[1]",
        "not a finite number",
    ),
    "weight decay infinite (1e400)": (
        ["studies", "tiny", "weight_decay"],
        [float("inf")],
        "studies.tiny.weight_decay[0]",
        "not a finite number",
    ),
    "integer-valued float for an integer": (
        ["studies", "tiny", "optimizer", "epochs"],
        2.0,
        "studies.tiny.optimizer.epochs",
        "not of type 'integer'",
    ),
    "boolean for an integer": (
        ["datasets", "clusters_a", "dim"],
        True,
        "clusters_a.dim",
        "integer",
    ),
    "a key that is a number": (
        ["datasets", 1],
        TINY["datasets"]["clusters_a"],
        "datasets.1",
        "quote",
    ),
    "a name with a line break": (
        ["datasets", "clusters_a\n"],
        TINY["datasets"]["clusters_a"],
        "datasets.clusters_a",
        "folder name",
    ),
    "an over-long name": (["datasets", "c" * 65], TINY["datasets"]["clusters_a"], "c" * 65, "1-64"),
    "heads that do not divide dim": (
        ["studies", "tiny", "model"],
        {"arch": "vit", "dim": 30, "heads": 4, "patch_size": 7, "depth": 1, "width": 8},
        "studies.tiny.model.heads",
        "does not divide model.dim 30",
    ),
    "a ViT on synthetic data": (
        ["studies", "tiny", "model"],
        {"arch": "vit", "depth": 1, "width": 8},
        "studies.tiny.model.arch",
        "needs image data",
    ),
    "a patch that does not divide the image": (
        ["studies", "tiny"],
        {
            "datasets": ["mnist_small"],
            "model": {"arch": "vit", "patch_size": 5, "dim": 8, "heads": 2},
            "weight_decay": [0],
        },
        "studies.tiny.model.patch_size",
        "does not divide the 28×28",
    ),
    "train_size beyond the dataset": (
        ["datasets", "mnist_small", "train_size"],
        60001,
        "datasets.mnist_small.train_size",
        "60000 samples",
    ),
    "train_size on synthetic data": (
        ["datasets", "clusters_a", "train_size"],
        10,
        "datasets.clusters_a.train_size",
        "synthetic data has no subsets",
    ),
    "two eps with one column name": (
        ["measures"],
        {"eps": [0.1, 0.1000000001]},
        "measures.eps",
        "same column name twice",
    ),
    "self-supervised pre-training on synthetic data": (
        ["studies", "tiny_simclr", "datasets"],
        ["clusters_a"],
        "studies.tiny_simclr.datasets",
        "augments images",
    ),
    "compared with a study that does not exist": (
        ["studies", "tiny_simclr", "pretraining", "compare_with"],
        "nope",
        "studies.tiny_simclr.pretraining.compare_with",
        "not a supervised study; name one of: tiny",
    ),
    "compared with itself": (
        ["studies", "tiny_simclr", "pretraining", "compare_with"],
        "tiny_simclr",
        "studies.tiny_simclr.pretraining.compare_with",
        "not a supervised study",
    ),
    "compared with another architecture": (
        ["studies", "tiny_simclr", "model"],
        {"depth": 3, "width": 64},
        "studies.tiny_simclr.pretraining.compare_with",
        "differs in model",
    ),
    "compared with a study that is not utilized": (
        ["utilization", "studies"],
        ["tiny_simclr"],
        "studies.tiny_simclr.pretraining.compare_with",
        "add 'tiny' there",
    ),
    "compared but not utilized itself": (
        ["utilization", "studies"],
        ["tiny"],
        "studies.tiny_simclr.pretraining.compare_with",
        "add 'tiny_simclr' there, or set compare_with to null",
    ),
    "compared with no weight decay in common": (
        ["studies", "tiny_simclr", "weight_decay"],
        [0.5],
        "studies.tiny_simclr.pretraining.compare_with",
        "differs in weight_decay",
    ),
    "pre-training an MLP without a hidden layer": (
        ["studies", "tiny_simclr", "model"],
        {"depth": 1, "width": 32},
        "studies.tiny_simclr.model.depth",
        "no representation to pre-train",
    ),
    "an objective that does not exist": (
        ["studies", "tiny_simclr", "objective"],
        "mae",
        "studies.tiny_simclr.objective",
        "'mae' is not one of ['supervised', 'simclr']",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_refused_naming_the_key(case):
    path, value, key, allowed = BAD[case]
    with pytest.raises(ConfigError) as error:
        validated(with_change(path, value))
    assert key in str(error.value)
    assert allowed in str(error.value)


def test_run_spec_carries_everything_that_defines_a_run():
    config = validated(TINY)
    spec = run_spec(config, "tiny", "clusters_a", wd_label(1e-3), "0")
    assert spec["weight_decay"] == 1e-3 and spec["seed"] == 0
    assert spec["dataset"]["std"] == 0.5
    other = run_spec(config, "tiny", "clusters_a", wd_label(0), "0")
    assert spec["config_hash"] != other["config_hash"]
    assert (
        run_spec(config, "tiny", "clusters_a", "0.001", "0")["config_hash"] == spec["config_hash"]
    )


def test_only_a_pretraining_spec_names_its_objective():
    config = validated(TINY)
    supervised = run_spec(config, "tiny", "mnist_small", "0.001", "0")
    assert "objective" not in supervised and "pretraining" not in supervised
    pretrained = run_spec(config, "tiny_simclr", "mnist_small", "0.001", "0")
    assert pretrained["objective"] == "simclr"
    # Which study it is compared with is not part of what the run is.
    assert "compare_with" not in pretrained["pretraining"]
    assert pretrained["pretraining"]["probe_steps"] == 20
    assert pretrained["model"] == supervised["model"]
    config["studies"]["tiny_simclr"]["pretraining"]["compare_with"] = None
    assert run_spec(config, "tiny_simclr", "mnist_small", "0.001", "0") == pretrained


def test_wd_label_is_short_and_round_trips():
    assert [wd_label(w) for w in (0, 1e-5, 1e-4, 3e-3)] == ["0", "1e-05", "0.0001", "0.003"]
    assert float(wd_label(2.5e-4)) == 2.5e-4


def test_text_that_means_a_number_is_read_as_one():
    # YAML 1.1 reads 1e-3 as text; Snakemake reads nested --config values as text.
    config = with_change(["studies", "tiny", "weight_decay"], [0, "1e-3"])
    config["threads"] = {"train": "2"}
    config["datasets"]["mnist_small"]["train_size"] = "null"
    config = validated(config)
    assert config["studies"]["tiny"]["weight_decay"] == [0, 1e-3]
    assert config["threads"] == {"train": 2, "measure": 1}
    assert config["datasets"]["mnist_small"]["train_size"] is None
    assert config["studies"]["tiny"]["datasets"] == TINY["studies"]["tiny"]["datasets"]


def key_paths(node: dict, prefix: tuple = ()) -> list[tuple]:
    """The path of every key of a config, at every depth."""
    found = []
    for key, value in node.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found += key_paths(value, (*prefix, key))
    return found


@pytest.mark.parametrize(
    "path", ["config/config.yaml", "config/paper.yaml", "tests/configs/tiny.yaml"]
)
def test_every_key_is_checked_and_named(path):
    # Every key of the config as validated (defaults filled in) given a value of the wrong
    # kind: a mapping where a value is meant, text where a section is. All keys of one depth
    # at once, each must be named in the one message that lists every problem.
    config = validated(yaml.safe_load((REPO / path).read_text()))
    paths = key_paths(config)
    assert len(paths) > 100
    for depth in sorted({len(p) for p in paths}):
        broken = copy.deepcopy(config)
        level = [p for p in paths if len(p) == depth]
        for p in level:
            parent = functools.reduce(lambda node, key: node[key], p[:-1], broken)
            parent[p[-1]] = "text" if isinstance(parent[p[-1]], dict) else {"a": "mapping"}
        with pytest.raises(ConfigError) as error:
            validate_config(broken, SCHEMA)
        unnamed = [
            ".".join(p) for p in level if f"config key '{'.'.join(p)}'" not in str(error.value)
        ]
        assert not unnamed, f"not checked: {unnamed}"


def test_a_study_defined_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    text = (REPO / "tests/configs/tiny.yaml").read_text()
    second = "studies:\n  tiny:\n    datasets: [clusters_a]\n    weight_decay: [0]\n"
    path.write_text(text.replace("studies:\n", second))
    with pytest.raises(ConfigError, match="key 'tiny' is given twice in one mapping"):
        load_config_file(path)
    assert load_config_file(REPO / "tests/configs/tiny.yaml") == TINY


def test_config_files_are_read_with_safe_loading(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("device: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="is not plain YAML.*python/object/apply"):
        load_config_file(path)
    assert not (tmp_path / "pwned").exists()
    path.write_text("device: !!python/name:os.system\n")
    with pytest.raises(ConfigError, match="is not plain YAML"):
        load_config_file(path)


def test_a_config_that_turns_on_templating_is_refused(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text((REPO / "tests/configs/tiny.yaml").read_text() + "__use_yte__: true\n")
    with pytest.raises(ConfigError, match="__use_yte__.*already evaluated"):
        load_config_file(path)


def test_utilization_refers_to_defined_studies_and_a_measured_energy():
    config = validated(TINY)
    assert config["utilization"]["finetune_lr"] == 0.01
    with pytest.raises(ConfigError, match="utilization.studies.*'nope' is not defined"):
        validated(with_change(["utilization", "studies"], ["tiny", "nope"]))
    with pytest.raises(ConfigError, match="utilization.energy.*0.95 is not one of"):
        validated(with_change(["utilization", "energy"], 0.95))
    with pytest.raises(ConfigError, match=r"utilization.energies\[0\]"):
        validated(with_change(["utilization", "energies"], [0, 0.99]))
    with pytest.raises(ConfigError, match="utilization.search"):
        validated(with_change(["utilization", "search"], True))
    assert config["utilization"]["search"] == {"enabled": False, "tolerance": 0.005}
