"""Training and the measure driver on a tiny synthetic problem, on the CPU."""

import math

import pytest
import torch
from factories import clusters, images, pretraining_spec
from factories import run_spec as spec
from rankcollapse import sgd
from rankcollapse.contrastive import Pretraining, simclr_objective
from rankcollapse.features import to_features
from rankcollapse.models import build_model, initial_model
from rankcollapse.train import PRETRAINED, Checkpointing, train_run, train_runs

CPU = torch.device("cpu")


def weights(result) -> list[torch.Tensor]:
    return [p.detach().clone() for p in result.model.parameters()]


def test_training_learns_and_is_deterministic_per_seed():
    data = clusters()
    first = train_run(spec(seed=1), data, CPU, log=lambda _: None)
    again = train_run(spec(seed=1), data, CPU, log=lambda _: None)
    other = train_run(spec(seed=2), data, CPU, log=lambda _: None)
    assert first.status == "finished" and len(first.history) == 5
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert first.history[-1]["train_acc"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(weights(first), weights(again), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(weights(first), weights(other), strict=True))


def test_weight_decay_shrinks_the_weights():
    data = clusters()
    norms = [
        sum(
            float(p.detach().norm() ** 2)
            for p in train_run(spec(wd=wd, epochs=20), data, CPU, lambda _: None).model.parameters()
        )
        for wd in (0.0, 0.05)
    ]
    assert norms[1] < norms[0]


def test_a_diverging_run_is_stopped_and_marked():
    bad = spec()
    bad["optimizer"]["lr"] = 1e12
    result = train_run(bad, clusters(), CPU, log=lambda _: None)
    assert result.status == "diverged"
    assert "non-finite loss" in result.reason
    assert len(result.history) < 5


def test_images_are_standardised_and_given_a_channel():
    x = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    y = torch.arange(20) % 10
    f = to_features({"train_x": x, "train_y": y, "test_x": x[:5], "test_y": y[:5]}, CPU)
    assert f.train_x.shape == (20, 1, 28, 28) and f.classes == 10
    assert float(f.train_x.mean()) == pytest.approx(0, abs=1e-5)
    assert float(f.train_x.std()) == pytest.approx(1, abs=1e-4)


# Each of these reads a tensor's value on the host: on a GPU, a wait for all queued work.
HOST_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__")


def host_reads(monkeypatch, action) -> int:
    """How many times ``action()`` reads a tensor on the host."""
    count = 0

    def counting(original):
        def read(*args, **kwargs):
            nonlocal count
            count += 1
            return original(*args, **kwargs)

        return read

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    action()
    monkeypatch.undo()
    return count


def test_steps_read_nothing_on_the_host(monkeypatch):
    """Host reads come with the history records only: four times the SGD steps per epoch read
    no more. (The convergence phase reads F at each line-search point: L-BFGS decides on it.)
    """
    data = clusters(n=128)
    few = spec(epochs=2, batch_size=32)
    many = spec(epochs=2, batch_size=8)
    reads = [
        host_reads(monkeypatch, lambda run=run: train_run(run, data, CPU, log=lambda _: None))
        for run in (few, many)
    ]
    assert reads[0] > 0  # the records read the losses they write
    assert reads[1] == reads[0]


def test_mse_training_uses_the_summed_squared_error():
    run = spec()
    run["loss"], run["target_scale"] = "mse", 2.0
    result = train_run(run, clusters(), CPU, log=lambda _: None)
    assert result.status == "finished"
    assert result.history[-1]["full_loss"] < result.history[0]["full_loss"]


def test_a_decay_horizon_sets_the_epochs_a_run_trains_for():
    data = clusters()
    run = spec(wd=0.05, epochs=2, decay_horizon=2.0, max_epochs=40)
    result = train_run(run, data, CPU, log=lambda _: None)
    steps = math.ceil(len(data.train_y) / run["optimizer"]["batch_size"])
    assert result.epochs == sgd.epochs_for(run["optimizer"], 0.05, steps)
    assert 2 < result.epochs < 40
    assert sum(row["phase"] == "sgd" for row in result.history) == result.epochs
    assert sgd.decay_exponent(run["optimizer"], 0.05, steps, result.epochs) >= 2.0


# ------------------------------------------------------------ self-supervised pre-training
class Killed(Exception):
    """Stands for a kill: raised by the log after a given line."""


def killing_log(after: str, lines: list[str]):
    def log(line: str) -> None:
        lines.append(line)
        if line.startswith(after):
            raise Killed(line)

    return log


def test_pretraining_then_probe_then_finetuning_gives_a_plain_network():
    data, run = images(), pretraining_spec(epochs=3)
    result = train_run(run, data, CPU, log=lambda _: None)
    phases = [r["phase"] for r in result.history]
    assert result.status == "finished"
    assert phases == ["pretraining"] * 3 + ["probe"] + ["finetune"]
    probe = result.history[3]
    assert probe["epoch"] > 0 and math.isfinite(probe["full_loss"])  # F of the probed network
    assert probe["train_acc"] > 1 / data.classes
    assert 0 <= result.finetune_test_acc <= 1
    # What is kept is the network alone (no projector), in the architecture of the study.
    built = build_model(run["model"], data.in_shape, data.classes)
    assert result.model.state_dict().keys() == built.state_dict().keys()
    start = initial_model(run["model"], data.in_shape, data.classes, run["seed"])
    moved = [
        not torch.equal(a, b)
        for a, b in zip(result.model.parameters(), start.parameters(), strict=True)
    ]
    assert all(moved)  # the blocks by pre-training, the head by the probe
    assert result.certificate.stop_reason == PRETRAINED


# Where the kill comes (a log line is written before its record's checkpoint), and the
# pre-training epochs and probes the resumed run does again.
KILLS = [("pretraining 2:", 3, 1), ("probe", 0, 1), ("fine-tuned", 0, 0)]


@pytest.mark.parametrize(("kill_after", "epochs_again", "probes_again"), KILLS)
def test_a_killed_pretraining_run_resumes_bitwise(tmp_path, kill_after, epochs_again, probes_again):
    data, run = images(), pretraining_spec(epochs=4)
    reference = train_run(run, data, CPU, lambda _: None, Checkpointing(tmp_path / "a", 1))
    path, lines = tmp_path / "b", []
    with pytest.raises(Killed):
        train_run(run, data, CPU, killing_log(kill_after, lines), Checkpointing(path, 1))
    assert path.exists()  # killed after a checkpoint, whatever the timing
    resumed_lines = []
    resumed = train_run(run, data, CPU, resumed_lines.append, Checkpointing(path, 1))
    assert resumed.resumed_from
    # It resumed from the checkpoint: it redid only the work after it (a fresh run does 4).
    assert sum(line.startswith("pretraining") for line in resumed_lines) == epochs_again
    assert sum(line.startswith("probe") for line in resumed_lines) == probes_again
    weights = zip(
        resumed.model.state_dict().values(), reference.model.state_dict().values(), strict=True
    )
    assert all(torch.equal(a, b) for a, b in weights)
    assert same_history(resumed.history, reference.history)
    assert resumed.finetune_test_acc == reference.finetune_test_acc
    # The certificate is the uninterrupted run's, whichever phase the run resumed in.
    assert resumed.certificate == reference.certificate
    assert resumed.certificate.stop_reason == PRETRAINED


def same_history(a: list[dict], b: list[dict]) -> bool:
    """Histories equal entry by entry, NaN equal to NaN, the timings aside."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        for key in x.keys() - {"seconds"}:
            u, v = x[key], y[key]
            same = u == v or (isinstance(u, float) and math.isnan(u) and math.isnan(v))
            if not same:
                return False
    return True


def test_a_diverging_pretraining_run_is_stopped_and_marked():
    # SimCLR's loss is bounded for finite weights (unit vectors), so divergence shows as NaN:
    # here from one training image with a non-finite pixel.
    data = images()
    data.train_x[5, 0, 0, 0] = math.inf
    result = train_run(pretraining_spec(), data, CPU, log=lambda _: None)
    assert result.status == "diverged" and "non-finite loss in pretraining 1" in result.reason
    assert math.isnan(result.finetune_test_acc)
    assert [r["phase"] for r in result.history] == ["pretraining"]


def test_pretraining_steps_read_nothing_on_the_host(monkeypatch):
    """Views, projections and the contrastive loss stay on the device: an epoch of four times
    the steps reads no more on the host.
    """
    data, run = images(n=64), pretraining_spec()
    network = initial_model(run["model"], data.in_shape, data.classes, 0)
    net = Pretraining(network, 8)
    views = torch.Generator().manual_seed(0)
    objective = simclr_objective(net, run["pretraining"], views)
    opt = sgd.optimizer(net, 0.01, 0.9, 1e-3)
    reads = [
        host_reads(
            monkeypatch,
            lambda batch=batch: sgd.sgd_epoch(
                net, opt, data, objective, {**run["optimizer"], "batch_size": batch}, 0, views
            ),
        )
        for batch in (32, 8)
    ]
    assert reads[0] > 0 and reads[1] == reads[0]


# ------------------------------------------------------------------------ packs of runs
def quiet(specs) -> list:
    return [lambda _: None for _ in specs]


def same_run(a, b) -> bool:
    """Two results of one run are the same: weights bitwise, history (but its clock times),
    status and certificate.
    """
    return (
        all(torch.equal(p, q) for p, q in zip(weights(a), weights(b), strict=True))
        and same_history(a.history, b.history)
        and (a.status, a.reason) == (b.status, b.reason)
        and repr(a.certificate) == repr(b.certificate)  # NaN equal to NaN
    )


def a_pack():
    """Four runs of one study: λ = 0 and λ > 0, a convergence phase, a decay horizon that
    gives them different epochs, and λ = 1000, which diverges.
    """
    common = {"epochs": 3, "activation": "softplus", "decay_horizon": 0.05, "max_epochs": 8}
    phase = {"steps": 4, "record_every": 2}
    return [
        spec(wd=wd, seed=seed, convergence=phase, **common)
        for wd, seed in ((0.0, 0), (1e-3, 1), (3e-2, 0), (1e3, 2))
    ]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_packed_run_ends_bitwise_where_it_ends_alone(threads):
    data, specs = clusters(), a_pack()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        packed = train_runs(specs, data, CPU, quiet(specs), [None] * 4)
        alone = [train_run(s, data, CPU, log=lambda _: None) for s in specs]
    finally:
        torch.set_num_threads(before)
    assert [r.status for r in packed] == ["finished"] * 3 + ["diverged"]
    assert len({r.epochs for r in packed[:3]}) > 1  # they left the stack at different epochs
    assert packed[1].certificate.steps > 0  # and went on to their convergence phase
    for a, b in zip(packed, alone, strict=True):
        assert same_run(a, b)


def test_each_run_of_a_pack_gets_its_own_weight_decay():
    data = clusters()
    specs = [spec(wd=0.0, epochs=20), spec(wd=0.05, epochs=20)]
    packed = train_runs(specs, data, CPU, quiet(specs), [None, None])
    norms = [sum(float(p.detach().norm() ** 2) for p in r.model.parameters()) for r in packed]
    assert norms[1] < 0.8 * norms[0]
    for a, s in zip(packed, specs, strict=True):
        assert same_run(a, train_run(s, data, CPU, log=lambda _: None))


@pytest.mark.parametrize("killed_run", [0, 2])
def test_a_killed_pack_resumes_bitwise(tmp_path, killed_run):
    """Killed as one run logs its third epoch: the runs before it have checkpointed that
    epoch and the others have not, so the pack resumes from different epochs.
    """
    data, specs = clusters(), a_pack()
    paths = [Checkpointing(tmp_path / f"{i}.safetensors", 1) for i in range(4)]
    uninterrupted = train_runs(specs, data, CPU, quiet(specs), [None] * 4)
    logs = quiet(specs)
    logs[killed_run] = killing_log("sgd 3:", [])
    with pytest.raises(Killed):
        train_runs(specs, data, CPU, logs, paths)
    lines: list[list[str]] = [[] for _ in specs]
    resumed = train_runs(specs, data, CPU, [x.append for x in lines], paths)
    assert [r.resumed_from for r in resumed[:3]] == [
        f"sgd {3 if i < killed_run else 2}, convergence 0" for i in range(3)
    ]
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert same_run(a, b)


def test_a_packs_steps_read_nothing_on_the_host(monkeypatch):
    """As for one run: four times the steps of a pack of three read no more."""
    data = clusters(n=128)
    packs = [[spec(wd=wd, epochs=2, batch_size=b) for wd in (0, 1e-3, 1e-2)] for b in (32, 8)]
    reads = [
        host_reads(monkeypatch, lambda p=p: train_runs(p, data, CPU, quiet(p), [None] * 3))
        for p in packs
    ]
    assert reads[0] > 0 and reads[1] == reads[0]
