"""Checkpoints: a run interrupted after any record resumes and ends bitwise like an
uninterrupted one; another config's or an unreadable checkpoint is not used.
"""

import json
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


def spec_with_convergence_phase():
    """SGD then L-BFGS on a smooth network, at a tolerance it does not reach in 6 iterations."""
    return run_spec(
        epochs=5, activation="softplus", convergence={"steps": 6, "record_every": 2}, tol=1e-12
    )


def without_times(history: list[dict]) -> str:
    """The history but its clock times, as text (so that NaN equals NaN)."""
    return json.dumps([{k: v for k, v in row.items() if k != "seconds"} for row in history])


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
        ("sgd 2:", 1, "sgd 1, convergence 0"),
        ("sgd 5:", 3, "sgd 3, convergence 0"),
        ("convergence 2:", 1, "sgd 5, convergence 0"),
        ("convergence 4:", 2, "sgd 5, convergence 2"),
        ("convergence 6:", 1, "sgd 5, convergence 4"),
    ],
)
def test_an_interrupted_run_resumes_bitwise(tmp_path, kill_at, every, resumed_from):
    spec, data = spec_with_convergence_phase(), clusters()
    uninterrupted = train_run(spec, data, CPU, log=lambda _: None)
    assert [row["phase"] for row in uninterrupted.history][-3:] == ["convergence"] * 3
    checkpointing = Checkpointing(tmp_path / "checkpoint.safetensors", every)
    with pytest.raises(Killed):
        train_run(spec, data, CPU, log=killer(kill_at), checkpointing=checkpointing)
    lines = []
    resumed = train_run(spec, data, CPU, log=lines.append, checkpointing=checkpointing)
    assert resumed.resumed_from == resumed_from
    # It resumed from the checkpoint: it redid only the records after it (a fresh run does 5
    # SGD epochs and 3 L-BFGS records), counted from its log.
    done = {k: int(v) for k, v in (p.split() for p in resumed_from.split(", ") if p)}
    for phase in ("sgd", "convergence"):
        after = [r for r in uninterrupted.history if r["phase"] == phase]
        redone = sum(r["epoch"] > done.get(phase, 0) for r in after)
        assert sum(line.startswith(f"{phase} ") for line in lines) == redone, (phase, lines)
    assert_bitwise_equal(state(resumed), state(uninterrupted))
    assert without_times(resumed.history) == without_times(uninterrupted.history)
    assert resumed.certificate == uninterrupted.certificate


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
    trained = []
    with pytest.raises(Killed):  # after SGD's last checkpoint, before the run's final one
        train_run(spec, data, CPU, killer("certificate"), Checkpointing(path, every=5))
    result = train_run(spec, data, CPU, trained.append)
    saved = checkpoint.load(path, spec["config_hash"], print)
    assert saved.progress == {"sgd": 5, "convergence": 0} and len(saved.history) == 5
    assert {checkpoint.BATCH_ORDER, checkpoint.GLOBAL_RNG} <= set(saved.tensors)
    fresh = torch.optim.SGD(result.model.parameters(), lr=0.1, momentum=0.9)
    saved.load_optimizer(fresh)
    buffers = [fresh.state[p]["momentum_buffer"] for p in result.model.parameters()]
    assert len(buffers) == 3 and all(b.abs().sum() > 0 for b in buffers)


def test_a_finished_runs_checkpoint_gives_its_result_without_training_again(tmp_path):
    """A pack killed after one of its runs finished does not train that run again."""
    spec, data = spec_with_convergence_phase(), clusters()
    checkpointing = Checkpointing(tmp_path / "checkpoint.safetensors", every=3)
    finished = train_run(spec, data, CPU, lambda _: None, checkpointing)
    lines = []
    again = train_run(spec, data, CPU, lines.append, checkpointing)
    assert not any(line.startswith(("sgd ", "convergence ")) for line in lines), lines
    assert_bitwise_equal(state(again), state(finished))
    assert without_times(again.history) == without_times(finished.history)
    assert again.certificate == finished.certificate and again.status == finished.status


def test_an_lbfgs_state_survives_the_checkpoint_exactly(tmp_path):
    """Directions, steps, counters and the last step length come back as they were."""
    spec = spec_with_convergence_phase()
    path = tmp_path / "checkpoint.safetensors"
    with pytest.raises(Killed):  # after the last record's checkpoint, before the final one
        train_run(spec, clusters(), CPU, killer("certificate"), Checkpointing(path, every=1))
    saved = checkpoint.load(path, spec["config_hash"], print)
    assert saved.progress["convergence"] == 6
    model = run_spec_model(spec)
    checkpoint.restore(saved, model, torch.Generator())
    lbfgs = torch.optim.LBFGS(model.parameters(), history_size=50, line_search_fn="strong_wolfe")
    saved.load_optimizer(lbfgs)
    state = lbfgs.state[next(model.parameters())]
    assert state["n_iter"] == 6 and state["func_evals"] >= 6
    assert len(state["old_dirs"]) == len(state["old_stps"]) == len(state["ro"]) >= 1
    assert all(d.dtype == torch.float64 for d in state["old_dirs"])


def run_spec_model(spec):
    from rankcollapse.models import build_model

    return build_model(spec["model"], (5,), 3)
