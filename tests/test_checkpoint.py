"""Checkpoints: a run interrupted after any record resumes and ends bitwise like an
uninterrupted one; another config's or an unreadable checkpoint is not used.
"""

import re

import pytest
import torch
from factories import clusters, run_spec
from rankcollapse import checkpoint
from rankcollapse.train import Checkpointing, train_run

CPU = torch.device("cpu")


class Killed(Exception):
    """Stands in for a kill: raised by the log callback at a chosen line."""


def killer(line_start: str):
    def log(line: str) -> None:
        if line.startswith(line_start):
            raise Killed(line)

    return log


def spec_with_full_batch_phase():
    return run_spec(epochs=5, full_batch_steps=6, residual_every=2)


def state(result) -> dict[str, torch.Tensor]:
    return result.model.state_dict()


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    ("kill_at", "every", "resumed_from"),
    [
        # The kill comes as a record is logged, before its checkpoint is written.
        ("sgd 1:", 1, ""),
        ("sgd 2:", 1, "sgd 1, full_batch 0"),
        ("sgd 5:", 3, "sgd 3, full_batch 0"),
        ("full_batch 4:", 2, "sgd 5, full_batch 2"),
        ("full_batch 6:", 1, "sgd 5, full_batch 4"),
    ],
)
def test_an_interrupted_run_resumes_bitwise(tmp_path, kill_at, every, resumed_from):
    spec, data = spec_with_full_batch_phase(), clusters()
    uninterrupted = train_run(spec, data, CPU, log=lambda _: None)
    checkpointing = Checkpointing(tmp_path / "checkpoint.safetensors", every)
    with pytest.raises(Killed):
        train_run(spec, data, CPU, log=killer(kill_at), checkpointing=checkpointing)
    resumed = train_run(spec, data, CPU, log=lambda _: None, checkpointing=checkpointing)
    assert resumed.resumed_from == resumed_from
    assert_bitwise_equal(state(resumed), state(uninterrupted))
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history]
    assert drop_time == [
        {k: v for k, v in row.items() if k != "seconds"} for row in uninterrupted.history
    ]


def test_a_checkpoint_of_another_config_is_not_reused(tmp_path):
    data, path = clusters(), tmp_path / "checkpoint.safetensors"
    with pytest.raises(Killed):
        train_run(run_spec(wd=1e-3), data, CPU, killer("sgd 3:"), Checkpointing(path, 1))
    lines = []
    other = train_run(run_spec(wd=2e-3), data, CPU, lines.append, Checkpointing(path, 1))
    assert other.resumed_from == ""
    assert any("belongs to config" in line and "starting afresh" in line for line in lines)
    assert_bitwise_equal(state(other), state(train_run(run_spec(wd=2e-3), data, CPU, print)))


def truncate(data: bytes) -> bytes:
    return data[:100]


def edit_progress(data: bytes) -> bytes:
    """One digit of the recorded progress changed: a resume would skip an epoch."""

    def next_epoch(match: re.Match) -> bytes:
        return match[1] + str(int(match[2]) + 1).encode()

    return re.sub(rb'(\\"sgd\\": )(\d)', next_epoch, data, count=1)


@pytest.mark.parametrize("damage", [truncate, edit_progress])
def test_a_damaged_checkpoint_is_set_aside_and_never_resumed_from(tmp_path, damage):
    spec, data, path = run_spec(), clusters(), tmp_path / "checkpoint.safetensors"
    with pytest.raises(Killed):
        train_run(spec, data, CPU, killer("sgd 3:"), Checkpointing(path, 1))
    damaged = damage(path.read_bytes())
    assert damaged != path.read_bytes()
    path.write_bytes(damaged)
    lines = []
    fresh = train_run(spec, data, CPU, lines.append, Checkpointing(path, 1))
    assert fresh.resumed_from == "" and any("set aside" in line for line in lines)
    assert (tmp_path / "checkpoint.safetensors.corrupt").read_bytes() == damaged
    assert_bitwise_equal(state(fresh), state(train_run(spec, data, CPU, print)))


def test_a_checkpoint_holds_momentum_and_both_random_states(tmp_path):
    spec, data, path = run_spec(), clusters(), tmp_path / "checkpoint.safetensors"
    train_run(spec, data, CPU, lambda _: None, Checkpointing(path, every=5))
    saved = checkpoint.load(path, spec["config_hash"], print)
    assert saved.progress == {"sgd": 5, "full_batch": 0} and len(saved.history) == 5
    names = set(saved.tensors)
    assert {checkpoint.BATCH_ORDER, checkpoint.GLOBAL_RNG} <= names
    assert sum(name.startswith(checkpoint.MOMENTUM) for name in names) == 3
