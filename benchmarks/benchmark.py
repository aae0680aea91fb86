"""Performance benchmark: each figure side by side with its baseline, in one process, as a ratio.

    python benchmarks/benchmark.py                  # all six parts (about 1.5 hours on 2 cores)
    python benchmarks/benchmark.py --parts train flops measure plan      # about 8 minutes
    python benchmarks/benchmark.py --parts train flops --device cuda     # on a GPU
    python benchmarks/benchmark.py --main-config tests/configs/tiny.yaml --parts cores

Parts (targets in brackets):
  train    samples/s of our training loop / a plain torchvision DataLoader loop   [>= 5x]
  flops    achieved training FLOP/s / the device's fp32 matmul peak, MLP widths 256, 512,
           1024 and the default study's ViT at batch 128                [>= 60%, width>=512]
           on a CPU at a training job's threads (config/config.yaml) and at --threads
           (also shown for MLPs: FLOP/s of the step's bare matrix products)
  measure  the measure step's time / one training run's time (default study)     [<= 5%]
           and its peak memory above the loaded data at two sample counts        [no growth]
  pack     runs/s of packed training (one job trains a stack of runs, each in fresh
           processes): the default study's clusters_relu sweep on one dataset, one pack on
           --threads threads against one-thread jobs side by side (one per core)   [>= 1.2x]
           and against one run at a time on the same threads                     [>= 1.5x];
           the mnist_mlp sweep, packed against one run at a time                  [>= 1x];
           with --device cuda also the paper's MLP sweep on MNIST on the GPU, one pack
           against one run at a time [>= 10x], and its FLOP/s as a share of the peak
  plan     `snakemake -n` on config/paper.yaml: jobs planned and seconds         [<= 10 s]
  cores    the main job with --cores 2 / --cores 1                               [>= 1.6x]
Not a test: timings on a shared machine are noisy; ratios of runs made side by side are not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

import torch  # noqa: E402
from rankcollapse.config import (  # noqa: E402
    dataset_spec,
    load_config_file,
    run_spec,
    validate_config,
    wd_label,
)
from rankcollapse.features import Features, to_features  # noqa: E402
from rankcollapse.fetch_raw import acquire  # noqa: E402
from rankcollapse.losses import loss_spec, per_sample_loss  # noqa: E402
from rankcollapse.measure import measure_run  # noqa: E402
from rankcollapse.models import build_model, mlp  # noqa: E402
from rankcollapse.prepare_dataset import prepare_dataset  # noqa: E402
from rankcollapse.readers import load_mnist_like  # noqa: E402
from rankcollapse.train import train_run  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

CPU = torch.device("cpu")
# The default study with the schema's defaults filled in, as the workflow reads it.
DEFAULT_CONFIG = load_config_file(REPO / "config/config.yaml")
validate_config(DEFAULT_CONFIG, REPO / "workflow/schemas/config.schema.yaml")
VIT = DEFAULT_CONFIG["studies"]["mnist_vit"]["model"]
BATCH = 128
OPTIMIZER = {
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": BATCH,
    "schedule": "cosine",
    "milestones": [],
    "gamma": 0.1,
    "decay_horizon": None,
    "max_epochs": 1000,
}
# SGD only: the convergence phase is timed on its own.
NO_CONVERGENCE = {**DEFAULT_CONFIG["studies"]["mnist_vit"]["convergence"], "steps": 0}


def report(name: str, ratio: float, target: str, met: bool, **figures) -> None:
    raw = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    verdict = "" if target == "-" else "MET" if met else "NOT MET"
    print(f"{name:<40} ratio {ratio:8.3f}  target {target:<10} {verdict}  ({raw})")


def mlp_model(width: int, depth: int = 4) -> dict:
    return {"arch": "mlp", "depth": depth, "width": width, "bias": False, "activation": "relu"}


def spec(model: dict, epochs: int, wd: float = 1e-4) -> dict:
    return {
        "model": model,
        "optimizer": {**OPTIMIZER, "epochs": epochs},
        "convergence": NO_CONVERGENCE,
        "stationarity": {"tol": 0.01},
        "loss": "cross_entropy",
        "target_scale": 1.0,
        "weight_decay": wd,
        "seed": 0,
        "config_hash": "benchmark",
    }


def mnist_raw(root: Path) -> Path:
    """The verified raw MNIST files, fetched as the workflow fetches them."""
    dest = root / "mnist"
    acquire("mnist", dest, mirror=None, download=True, offline=True, log=lambda _: None)
    return dest


def mnist_features(raw: Path, device: torch.device) -> Features:
    return to_features(load_mnist_like(raw), device)


def ours_samples_per_second(features: Features, model: dict, epochs: int) -> float:
    """Our loop (train_run), the best of its SGD epochs; the per-epoch residual pass is
    reported in the history separately and not counted here.
    """
    device = features.train_x.device
    result = train_run(spec(model, epochs), features, device, log=lambda _: None)
    seconds = [row["seconds"] for row in result.history]
    return len(features.train_y) / min(seconds)


def dataloader_samples_per_second(raw: Path, device: torch.device) -> float:
    """The loop a user would write: torchvision's MNIST dataset and DataLoader, one epoch,
    each batch moved to the device.
    """
    from torchvision import datasets, transforms

    root = Path(tempfile.mkdtemp())
    (root / "MNIST").mkdir()
    (root / "MNIST/raw").symlink_to(raw.resolve())
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
    torch.manual_seed(0)
    model = mlp(784, 10, 4, 256, bias=False).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    return len(dataset) / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_train(raw: Path, features: Features) -> None:
    ours = ours_samples_per_second(features, mlp_model(256), epochs=2)
    plain = dataloader_samples_per_second(raw, features.train_x.device)
    ratio = ours / plain
    report("train: ours / DataLoader", ratio, ">= 5", ratio >= 5, ours=ours, dataloader=plain)


def matmul_peak(device: torch.device, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of one square matrix product (2048 on a CPU, 8192 on a GPU)."""
    size = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    return 2 * size**3 / min(_timed(lambda: a @ b, device) for _ in range(repeats))


def _timed(fn, device: torch.device = CPU) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def training_flops_per_sample(model: dict, features: Features) -> float:
    """FLOPs of one training step per sample as torch's FlopCounterMode counts them: the
    matrix products of the forward pass and of the input and weight gradients (for an MLP,
    2·d_in·d_out per layer for each, no input gradient for the first layer).
    """
    net = build_model(model, features.in_shape, features.classes).to(features.train_x.device)
    x, y = features.train_x[:BATCH], features.train_y[:BATCH]
    with FlopCounterMode(display=False) as counter:
        per_sample_loss(net(x), y, "cross_entropy", 1.0).mean().backward()
    return counter.get_total_flops() / BATCH


def bare_matmul_flops(dims: list[int], device: torch.device, steps: int = 50) -> float:
    """FLOP/s of only the matrix products of an MLP's training step at batch 128 (forward,
    weight and input gradients), with nothing else: what the device gives GEMMs of these shapes.
    """
    weights = [
        torch.randn(d_out, d_in, device=device)
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True)
    ]
    x, grad_out = (
        torch.randn(BATCH, dims[0], device=device),
        torch.randn(BATCH, dims[-1], device=device),
    )

    def step() -> None:
        inputs = [x]
        for w in weights:
            inputs.append(inputs[-1] @ w.T)
        g = grad_out
        for i in reversed(range(len(weights))):
            g.T @ inputs[i]
            if i:
                g = g @ weights[i]

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / min(_timed(step, device) for _ in range(steps))


def part_flops(features: Features, threads: int) -> None:
    """Each model's best epoch against the best matmul peak measured around all of them
    (before and after each), so that a slow spell of a shared machine lowers no ratio; both
    at ``threads`` CPU threads.
    """
    torch.set_num_threads(threads)
    device = features.train_x.device
    models = {f"width {w}": mlp_model(w) for w in (256, 512, 1024)} | {"ViT": VIT}
    peaks, rates = [matmul_peak(device)], {}
    for name, model in models.items():
        rates[name] = ours_samples_per_second(features, model, epochs=2)
        peaks.append(matmul_peak(device))
    peak = max(peaks)
    on = f"{threads} thread{'s' if threads > 1 else ''}" if device.type == "cpu" else device.type
    for name, model in models.items():
        achieved = rates[name] * training_flops_per_sample(model, features)
        ratio = achieved / peak
        gated = model["arch"] == "mlp" and model["width"] >= 512
        figures = {"achieved_gflops": achieved / 1e9, "peak_gflops": peak / 1e9}
        if model["arch"] == "mlp":
            dims = [784] + [model["width"]] * (model["depth"] - 1) + [10]
            figures["bare_gemm_gflops"] = bare_matmul_flops(dims, device) / 1e9
        report(
            f"flops: {name}, {on} / peak",
            ratio,
            ">= 0.6" if gated else "-",
            ratio >= 0.6 or not gated,
            **figures,
            samples_per_s=rates[name],
        )


MEASURE_CHILD = """
import json, resource, sys, time, torch
sys.path.insert(0, {workflow!r})
from rankcollapse.features import Features, to_features
from rankcollapse.measure import measure_run
from rankcollapse.models import mlp
from rankcollapse.readers import load_mnist_like
torch.set_num_threads({threads})
f = to_features(load_mnist_like({raw!r}), torch.device("cpu"))
n = {n}
f = Features(f.train_x[:n].clone(), f.train_y[:n].clone(), f.test_x, f.test_y, f.classes)
model = mlp(784, 10, 4, 256, False)
rss_kb = lambda: int(open("/proc/self/statm").read().split()[1]) * 4
before = rss_kb()
start = time.perf_counter()
loss = {{"loss": "cross_entropy", "target_scale": 1.0}}
measure_run(model, f, [0.1, 0.01, 0.001], 2000, 1e-4, loss)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "extra_mb": (peak - before) / 1024}}))
"""


def measure_child(raw: Path, n: int) -> dict:
    code = MEASURE_CHILD.format(
        workflow=str(REPO / "workflow"), raw=str(raw), n=n, threads=torch.get_num_threads()
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_measure(raw: Path, features: Features) -> None:
    """Training and measuring one run of the default study's MNIST MLP (4x256, 20 epochs)."""
    start = time.perf_counter()
    model = mlp_model(256)
    result = train_run(spec(model, epochs=20, wd=1e-3), features, CPU, log=lambda _: None)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    measure_run(result.model, features, [0.1, 0.01, 0.001], 2000, 1e-3, loss_spec(spec(model, 1)))
    measure_seconds = time.perf_counter() - start
    ratio = measure_seconds / train_seconds
    report(
        "measure: measure / train (1 run)",
        ratio,
        "<= 0.05",
        ratio <= 0.05,
        measure_s=measure_seconds,
        train_s=train_seconds,
    )
    small, large = measure_child(raw, 10_000), measure_child(raw, 60_000)
    ratio = large["extra_mb"] / max(small["extra_mb"], 1e-9)
    report(
        "measure: peak memory 60k / 10k",
        ratio,
        "~1",
        ratio <= 1.2,
        extra_mb_10k=small["extra_mb"],
        extra_mb_60k=large["extra_mb"],
    )


PACK_CHILD = """
import json, sys, time, torch
sys.path.insert(0, {workflow!r})
from rankcollapse.files import load_features
from rankcollapse.train import train_run, train_runs
torch.set_num_threads({threads})
specs, data = json.loads({specs!r}), load_features({data!r}, torch.device({device!r}))
quiet = lambda _: None
start = time.perf_counter()
if {packed}:
    train_runs(specs, data, data.train_x.device, [quiet] * len(specs), [None] * len(specs))
else:
    for spec in specs:
        train_run(spec, data, data.train_x.device, quiet)
if data.train_x.device.type == "cuda":
    torch.cuda.synchronize()
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""


def study_specs(study: str, dataset: str, epochs: int, config: dict = DEFAULT_CONFIG) -> list[dict]:
    """Every run of a study on one dataset as the workflow specifies it, SGD for ``epochs``
    epochs only (the convergence phase trains each run alone, packed or not).
    """
    s = config["studies"][study]
    specs = []
    for wd in s["weight_decay"]:
        for seed in s["seeds"]:
            spec = run_spec(config, study, dataset, wd_label(wd), str(seed))
            spec["optimizer"] = {**spec["optimizer"], "epochs": epochs, "decay_horizon": None}
            spec["convergence"] = {**spec["convergence"], "steps": 0}
            specs.append(spec)
    return specs


def side_by_side(groups: list[list[dict]], data: Path, threads: int, packed: bool, device="cpu"):
    """Wall seconds of training each group of runs in its own process, all started at once
    (as Snakemake runs jobs side by side): the slowest process's training time.
    """
    children = []
    for specs in groups:
        code = PACK_CHILD.format(
            workflow=str(REPO / "workflow"),
            threads=threads,
            specs=json.dumps(specs),
            data=str(data),
            device=device,
            packed=packed,
        )
        children.append(
            subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        )
    seconds = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode:
            sys.exit("a benchmark child process failed (its error is above)")
        seconds.append(json.loads(out.strip().splitlines()[-1])["seconds"])
    return max(seconds)


def dataset_file(name: str, root: Path, config: dict = DEFAULT_CONFIG) -> Path:
    """A dataset of the config prepared as the workflow prepares it."""
    spec = dataset_spec(config, name)
    raw = None if spec["source"] == "gaussian_clusters" else str(mnist_raw(REPO / "results/raw"))
    out = root / f"{name}.safetensors"
    prepare_dataset(spec, raw, str(out), log=lambda _: None)
    return out


def part_pack(cores: int) -> None:
    """Packed training against one run per job, same runs and SGD steps, each in fresh
    processes: the default study's clusters_relu sweep on one dataset (15 runs, 5 epochs) and
    the mnist_mlp sweep (15 runs, 2 epochs).
    """
    root = Path(tempfile.mkdtemp())
    clusters = dataset_file("clusters_std1", root)
    specs = study_specs("clusters_relu", "clusters_std1", epochs=5)
    halves = [specs[i::cores] for i in range(cores)]
    packed = side_by_side([specs], clusters, cores, True)
    alone = side_by_side([specs], clusters, cores, False)
    jobs = side_by_side(halves, clusters, 1, False)
    packs = side_by_side(halves, clusters, 1, True)
    n = len(specs)
    figures = {"runs": n, "packed_s": packed}
    ratio = jobs / packed
    report(
        f"pack: clusters, 1 pack on {cores} threads / {cores} one-thread jobs",
        ratio,
        ">= 1.2",
        ratio >= 1.2,
        **figures,
        jobs_s=jobs,
    )
    ratio = alone / packed
    report(
        f"pack: clusters, packed / one run at a time, {cores} threads",
        ratio,
        ">= 1.5",
        ratio >= 1.5,
        **figures,
        one_at_a_time_s=alone,
    )
    ratio = jobs / packs
    report(
        f"pack: clusters, {cores} one-thread packs / {cores} one-thread jobs",
        ratio,
        "-",
        True,
        packs_s=packs,
        jobs_s=jobs,
    )
    mnist = dataset_file("mnist_5k", root)
    specs = study_specs("mnist_mlp", "mnist_5k", epochs=2)
    packed = side_by_side([specs], mnist, cores, True)
    alone = side_by_side([specs], mnist, cores, False)
    ratio = alone / packed
    report(
        f"pack: mnist_mlp, packed / one run at a time, {cores} threads",
        ratio,
        ">= 1",
        ratio >= 1,
        runs=len(specs),
        packed_s=packed,
        one_at_a_time_s=alone,
    )


def part_pack_gpu(device: torch.device) -> None:
    """On a GPU: the paper config's MLP sweep on MNIST (mlp_ce, 8 λ × 3 seeds), one SGD epoch
    of each run, one pack of all 24 against one run at a time, and the pack's training FLOP/s
    as a share of the GPU's fp32 matmul peak (SGD steps only: the records' passes are not
    counted, so the share is a lower bound).
    """
    paper = load_config_file(REPO / "config/paper.yaml")
    validate_config(paper, REPO / "workflow/schemas/config.schema.yaml")
    mnist = dataset_file("mnist", Path(tempfile.mkdtemp()), paper)
    specs = study_specs("mlp_ce", "mnist", epochs=1, config=paper)
    packed = side_by_side([specs], mnist, 1, True, device.type)
    alone = side_by_side([specs], mnist, 1, False, device.type)
    features = mnist_features(mnist_raw(REPO / "results/raw"), device)
    per_sample = training_flops_per_sample(specs[0]["model"], features)
    achieved = len(specs) * len(features.train_y) * per_sample / packed
    peak = matmul_peak(device)
    ratio = alone / packed
    report(
        "pack: paper mlp_ce on MNIST, GPU, packed / one at a time",
        ratio,
        ">= 10",
        ratio >= 10,
        runs=len(specs),
        packed_s=packed,
        one_at_a_time_s=alone,
        achieved_tflops=achieved / 1e12,
        peak_tflops=peak / 1e12,
        share_of_peak=achieved / peak,
    )


def snakemake(*args: str, cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
    ]
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "--directory", str(cwd), *args], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def part_plan() -> None:
    with tempfile.TemporaryDirectory() as work:
        seconds, out = snakemake(
            "-n", "--configfile", str(REPO / "config/paper.yaml"), cwd=Path(work)
        )
    jobs = int(re.search(r"^total\s+(\d+)", out, re.MULTILINE).group(1))
    report(
        "plan: snakemake -n paper.yaml",
        seconds / 10,
        "<= 1",
        seconds <= 10,
        jobs=jobs,
        seconds=seconds,
    )


def part_cores(config: Path) -> None:
    times = {}
    for cores in (2, 1):
        with tempfile.TemporaryDirectory() as work:
            times[cores], _ = snakemake(
                "--cores", str(cores), "--configfile", str(config), cwd=Path(work)
            )
        print(f"cores: {config.name} with --cores {cores}: {times[cores]:.0f} s", flush=True)
    ratio = times[1] / times[2]
    report(
        f"cores: {config.name} 1 core / 2 cores",
        ratio,
        ">= 1.6",
        ratio >= 1.6,
        cores1_s=times[1],
        cores2_s=times[2],
    )


def main() -> None:
    parts = ["train", "flops", "measure", "pack", "plan", "cores"]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=parts, default=parts)
    p.add_argument("--main-config", type=Path, default=REPO / "config/config.yaml")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="of the train and flops parts"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores")
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    if {"train", "flops", "measure"} & set(args.parts):
        raw = mnist_raw(REPO / "results/raw")
        features = mnist_features(raw, CPU)
        on_device = mnist_features(raw, device) if device.type == "cuda" else features
    if "train" in args.parts:
        part_train(raw, on_device)
    if "flops" in args.parts:
        # A training job's threads in the default config (--cores N runs N such jobs side by
        # side), then all of this machine's threads on one job.
        job_threads = DEFAULT_CONFIG["threads"]["train"]
        for threads in sorted({job_threads, args.threads}) if device.type == "cpu" else [1]:
            part_flops(on_device, threads)
        torch.set_num_threads(args.threads)
    if "measure" in args.parts:  # measures run on the CPU whatever the training device
        part_measure(raw, features)
    if "pack" in args.parts:
        part_pack(args.threads)
        if device.type == "cuda":
            part_pack_gpu(device)
    if "plan" in args.parts:
        part_plan()
    if "cores" in args.parts:
        part_cores(args.main_config.resolve())


if __name__ == "__main__":
    main()
