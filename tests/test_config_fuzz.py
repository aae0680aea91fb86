"""Fuzzing the config, not only examples: valid configs mutated at random (keys dropped,
renamed or duplicated, values replaced by other types, edge numbers, odd strings) are either
accepted and planned, or refused by validation with the key named; never a traceback.
"""

import copy
import functools
from collections import Counter
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rankcollapse.config import (
    ConfigError,
    dataset_spec,
    run_spec,
    shape_problems,
    validate_config,
    wd_label,
)
from workflow_runner import snakemake

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
EDGE = [0, -1, 1, 2**63, -(2**63), 1e308, 1e-320, -0.0, 0.5, 2.0, True, "1e-3", "nan", "-1"]
ODD = ["", " ", "\n", "a/b", "..", "x" * 70, "é", "$(touch x)", "1", "null", "studies"]
KEYS = st.one_of(st.text(max_size=8), st.integers(-3, 3), st.sampled_from(ODD + list(TINY)))
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(EDGE + ODD),
    st.lists(st.one_of(st.integers(0, 3), st.floats(0, 1)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(0, 3), max_size=2),
)


def paths(node, prefix=()) -> list[tuple]:
    """The path to every value inside a config: dict keys and list indices."""
    found = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        found.append((*prefix, key))
        found += paths(value, (*prefix, key))
    return found


def mutate(config: dict, data) -> dict:
    config = copy.deepcopy(config)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(config)))
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        kind = data.draw(st.sampled_from(["drop", "rename", "duplicate", "replace"]))
        if kind == "drop":
            del parent[key]
        elif kind in ("rename", "duplicate") and isinstance(parent, dict):
            value = parent[key] if kind == "duplicate" else parent.pop(key)
            parent[data.draw(KEYS)] = copy.deepcopy(value)
        else:
            parent[key] = data.draw(VALUES)
        if not paths(config):
            break
    return config


def plan(config: dict) -> int:
    """What Snakemake's input functions compute for every run of an accepted config."""
    runs = 0
    for study, s in config["studies"].items():
        for dataset in s["datasets"]:
            dataset_spec(config, dataset)
            for wd in s["weight_decay"]:
                for seed in s["seeds"]:
                    run_spec(config, study, dataset, wd_label(wd), str(seed))
                    runs += 1
    return runs


def judge(config: dict) -> str:
    try:
        validate_config(config, SCHEMA)
    except ConfigError as error:
        message = str(error)
        assert "config key '" in message or "must be a mapping" in message, message
        return "refused"
    # What the pipeline relies on holds for every accepted config, after coercion.
    assert not shape_problems(config)
    for study in config["studies"].values():
        assert all(isinstance(wd, int | float) and wd >= 0 for wd in study["weight_decay"])
        assert isinstance(study["optimizer"]["epochs"], int)
    assert plan(config) > 0
    return "accepted"


@functools.cache
def fuzz() -> tuple[Counter, tuple]:
    """400 mutated configs judged (deterministic draws), and three accepted ones."""
    counts: Counter = Counter()
    accepted: list[dict] = []

    @settings(
        max_examples=400,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def check(data):
        config = mutate(TINY, data)
        verdict = judge(copy.deepcopy(config))
        counts[verdict] += 1
        if verdict == "accepted" and config != TINY and len(accepted) < 3:
            accepted.append(config)

    check()
    return counts, tuple(accepted)


def test_mutated_configs_are_accepted_and_planned_or_refused_naming_the_key():
    counts, _ = fuzz()
    print("configs fuzzed:", dict(counts))
    # Both outcomes are exercised; most mutations are refused (the pre-training study's
    # constraints on its supervised twin refuse many edits of either study).
    assert counts["refused"] >= 100 and counts["accepted"] >= 15


def test_accepted_mutations_plan_a_dag_through_snakemake(tmp_path):
    _, accepted = fuzz()
    assert accepted
    for index, config in enumerate(accepted):
        path = tmp_path / f"fuzzed{index}.yaml"
        path.write_text(yaml.safe_dump(config))
        done = snakemake(tmp_path, "-n", "--quiet", configfile=path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stdout + done.stderr
