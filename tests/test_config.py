"""Config validation: defaults filled in, every bad value refused with the key named."""

import copy
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
    }
    assert study["optimizer"]["lr"] == 0.05 and study["optimizer"]["schedule"] == "cosine"
    assert config["measures"]["eps"] == [0.1, 0.01, 0.001]
    assert config["device"] == "auto"


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
    "exponent read as text": (
        ["studies", "tiny", "weight_decay"],
        [0, "1e-3"],
        "weight_decay[1]",
        "write it with a dot",
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
    "empty slope range": (
        ["claims"],
        {"slope_range": [1.5, 0.5]},
        "claims.slope_range",
        "[low, high]",
    ),
    "utilization energy outside (0, 1]": (
        ["utilization", "energies"],
        [0.9, 1.5],
        "utilization.energies[1]",
        "maximum of 1",
    ),
    "studies not a mapping": (["studies"], ["tiny"], "studies", "not of type 'object'"),
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


def test_wd_label_is_short_and_round_trips():
    assert [wd_label(w) for w in (0, 1e-5, 1e-4, 3e-3)] == ["0", "1e-05", "0.0001", "0.003"]
    assert float(wd_label(2.5e-4)) == 2.5e-4


def test_bad_configs_are_many_and_distinct():
    assert len(BAD) >= 15
    assert len({(tuple(map(str, path)), repr(value)) for path, value, *_ in BAD.values()}) == len(
        BAD
    )


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
    with pytest.raises(yaml.constructor.ConstructorError):
        load_config_file(path)
    assert not (tmp_path / "pwned").exists()


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
