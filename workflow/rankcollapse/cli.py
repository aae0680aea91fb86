"""Command line of the pipeline: each Snakemake rule is one call of a subcommand here."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

from . import data
from .extract import measure_run
from .files import write_atomic
from .models import build_model
from .training import Checkpointing, loss_spec, resolve_device, to_features, train_run


def log(message: str) -> None:
    print(message, flush=True)


def provenance(device: torch.device) -> dict:
    """Where and with what a result was made: git commit, versions, device, threads."""
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "git_commit": commit + ("-dirty" if dirty else ""),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }


def cmd_fetch_raw(args) -> None:
    mirror = Path(args.mirror) / args.source if args.mirror else None
    files = data.fetch_raw(
        args.source,
        Path(args.dest),
        mirror=mirror,
        download=args.download,
        offline=args.offline,
        log=log,
    )
    (Path(args.dest) / "provenance.json").write_text(json.dumps(files, indent=2))


def cmd_prepare(args) -> None:
    spec = json.loads(args.spec)
    source = spec["source"]
    if source == "gaussian_clusters":
        keys = ("classes", "dim", "per_class", "test_per_class", "std", "clusters_per_class")
        tensors = data.gaussian_clusters(
            **{k: spec[k] for k in keys}, separation=spec["separation"], seed=spec["seed"]
        )
    else:
        if source == "cifar10":
            tensors = data.load_cifar10_binary(data.find_cifar10_archive(_path(args.mirror)))
        else:
            tensors = data.load_mnist_like(Path(args.raw))
        tensors = data.subset(tensors, spec["train_size"], spec["test_size"], spec["seed"])
    for key, value in tensors.items():
        log(f"{key}: {tuple(value.shape)} {value.dtype}")
    meta = {"spec": json.dumps(spec, sort_keys=True)}
    write_atomic(Path(args.out), lambda tmp: data.save_dataset(tensors, tmp, meta))


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def load_features(path: str, device: torch.device):
    tensors, _ = data.load_dataset(Path(path))
    return to_features(tensors, device)


def cmd_train(args) -> None:
    torch.set_num_threads(args.threads)
    spec = json.loads(args.spec)
    device = resolve_device(args.device)
    features = load_features(args.data, device)
    log(
        f"run {spec['config_hash']}: {spec['study']} {spec['dataset']['name']} "
        f"wd={spec['weight_decay']:g} seed={spec['seed']} on {device}"
    )
    out = Path(args.out_dir)
    checkpointing = Checkpointing(out / "checkpoint.safetensors", args.checkpoint_every)
    result = train_run(spec, features, device, log, checkpointing)
    if result.status == "diverged" and args.divergence == "fail":
        sys.exit(
            f"error: run diverged ({result.reason}); outputs not written. To record diverged "
            "runs and go on with the rest of the sweep, set `training: {divergence: record}`."
        )
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    write_atomic(
        out / "model.safetensors",
        lambda tmp: save_file(state, tmp, metadata={"config_hash": spec["config_hash"]}),
    )
    write_atomic(
        out / "history.csv", lambda tmp: pd.DataFrame(result.history).to_csv(tmp, index=False)
    )
    meta = {
        "spec": spec,
        "status": result.status,
        "reason": result.reason,
        "epochs_run": sum(row["phase"] == "sgd" for row in result.history),
        "resumed_from": result.resumed_from,
        "train_seconds": sum(row["seconds"] for row in result.history),
        "in_shape": list(features.in_shape),
        "classes": features.classes,
        **provenance(device),
    }
    write_atomic(
        out / "metadata.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2))
    )
    # Everything it could restore is now in the outputs.
    checkpointing.path.unlink(missing_ok=True)


def run_keys(meta: dict) -> dict:
    """Columns that identify a run and its provenance, on every row of its tables."""
    spec = meta["spec"]
    synthetic = spec["dataset"].get("source") == "gaussian_clusters"
    return {
        "study": spec["study"],
        "dataset": spec["dataset"]["name"],
        "dataset_std": spec["dataset"]["std"] if synthetic else float("nan"),
        "loss": spec["loss"],
        "weight_decay": spec["weight_decay"],
        "seed": spec["seed"],
        "status": meta["status"],
        "reason": meta["reason"],
        "epochs_run": meta["epochs_run"],
        "config_hash": spec["config_hash"],
        "git_commit": meta["git_commit"],
        "python": meta["python"],
        "torch": meta["torch"],
        "device": meta["device"],
    }


def load_run(run_dir: Path, data_path: str, device: torch.device):
    """A run's metadata, its dataset as features, and its trained model on the device."""
    meta = json.loads((run_dir / "metadata.json").read_text())
    features = load_features(data_path, device)
    model = build_model(meta["spec"]["model"], tuple(meta["in_shape"]), meta["classes"])
    weights, _ = data.load_dataset(run_dir / "model.safetensors")
    model.load_state_dict(weights)
    return meta, features, model.to(device)


def write_run_table(meta: dict, rows: list[dict], path: Path) -> pd.DataFrame:
    """A run's table, written atomically: one row per layer (or one marked row for a run that
    did not finish), every row with the run's keys and provenance.
    """
    keys = run_keys(meta)
    table = pd.DataFrame([{**keys, **row} for row in rows] or [keys])
    write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))
    return table


def write_tensors(tensors: dict, path: Path) -> None:
    placeholder = {"none": torch.zeros(0)}  # safetensors cannot store an empty file
    write_atomic(path, lambda tmp: save_file(tensors or placeholder, tmp, metadata=None))


def cmd_measure(args) -> None:
    torch.set_num_threads(args.threads)
    meta, features, model = load_run(Path(args.run_dir), args.data, resolve_device(args.device))
    spec = meta["spec"]
    if meta["status"] == "finished":
        rows, spectra = measure_run(
            model, features, args.eps, args.batch_size, spec["weight_decay"], loss_spec(spec)
        )
    else:
        log(f"run is {meta['status']} ({meta['reason']}): no measures, row marked")
        rows, spectra = [], {}
    table = write_run_table(meta, rows, Path(args.layers))
    write_tensors(spectra, Path(args.spectra))
    log(table.to_string())


def cmd_aggregate(args) -> None:
    layers, history, spectra = [], [], []
    for path in map(Path, args.layers):
        run_dir = path.parent
        keys = run_keys(json.loads((run_dir / "metadata.json").read_text()))
        layers.append(pd.read_parquet(path))
        history.append(pd.read_csv(run_dir / "history.csv").assign(**keys))
        tensors, _ = data.load_dataset(run_dir / "spectra.safetensors")
        for layer, s in tensors.items():
            if layer != "none":
                index = range(1, len(s) + 1)
                spectra.append(pd.DataFrame({**keys, "layer": layer, "index": index, "sigma": s}))
    tables = {args.out: layers, args.history: history, args.spectra: spectra}
    for out, frames in tables.items():
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        write_atomic(Path(out), lambda tmp, t=table: t.to_parquet(tmp, index=False))
        log(f"{len(table)} rows from {len(frames)} runs -> {out}")


def cmd_claims(args) -> None:
    from .claims import write_claims

    def concat(paths):
        return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)

    table = concat(args.tables)
    utilization = concat(args.utilization) if args.utilization else None
    compression = concat(args.compression) if args.compression else None
    write_claims(
        table,
        json.loads(args.thresholds),
        Path(args.markdown),
        Path(args.json),
        utilization,
        compression,
    )
    log(Path(args.markdown).read_text())


def cmd_utilize(args) -> None:
    from .utilize import utilize_run

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    meta, features, model = load_run(Path(args.run_dir), args.data, device)
    if meta["status"] == "finished":
        rows, moments = utilize_run(
            model,
            features,
            args.energies,
            args.calibration_samples,
            args.batch_size,
            loss_spec(meta["spec"]),
        )
    else:
        log(f"run is {meta['status']} ({meta['reason']}): no measures, row marked")
        rows, moments = [], {}
    table = write_run_table(meta, rows, Path(args.out))
    write_tensors(moments, Path(args.moments))
    if rows:
        for e, group in table.groupby("energy"):
            log(
                f"e={e:g}: MLU {group['utilization'].mean():.3f}, plain-SVD "
                f"{group['svd_utilization'].mean():.3f}, network rel. error "
                f"{group['network_rel_error'].iloc[0]:.3g}, test acc "
                f"{group['test_acc'].iloc[0]:.4f} → {group['network_test_acc'].iloc[0]:.4f}"
            )
        columns = ["layer", "kind", "d_in", "d_out", "energy", "k_S", "k_T", "rank", "svd_rank"]
        log(table[[*columns, "rel_output_error"]].to_string())


def cmd_compress(args) -> None:
    from .training import Features
    from .utilize import compress_run, search_energies, test_halves

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    meta, features, model = load_run(Path(args.run_dir), args.data, device)
    spec = meta["spec"]
    if meta["status"] == "finished":
        moments, _ = data.load_dataset(Path(args.moments))
        finetune_args = {
            "epochs": args.finetune_epochs,
            "lr": args.finetune_lr,
            "momentum": spec["optimizer"]["momentum"],
            "batch_size": spec["optimizer"]["batch_size"],
            "weight_decay": spec["weight_decay"],
            "seed": spec["seed"],
        }
        energy = args.energy
        if args.energy == "search":
            # Select on one half of the test set, report on the other.
            validation, evaluation = test_halves(len(features.test_y))
            energy = search_energies(
                model,
                features.test_x[validation],
                features.test_y[validation],
                moments,
                args.search_energies,
                args.tolerance,
                args.batch_size,
                loss_spec(spec),
            )
            log(f"energies chosen on {len(validation)} validation samples: {energy}")
            features = Features(
                features.train_x,
                features.train_y,
                features.test_x[evaluation],
                features.test_y[evaluation],
                features.classes,
            )
        rows = compress_run(
            model,
            features,
            moments,
            float(energy) if isinstance(energy, str) else energy,
            finetune_args,
            args.batch_size,
            loss_spec(spec),
            log,
        )
    else:
        log(f"run is {meta['status']} ({meta['reason']}): no compression, row marked")
        rows = []
    table = write_run_table(meta, rows, Path(args.out))
    log(table.drop(columns=["ranks"], errors="ignore").to_string())


def cmd_aggregate_utilization(args) -> None:
    for out, paths in ((args.utilization, args.runs), (args.compression, args.compressions)):
        frames = [pd.read_parquet(p) for p in paths]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        write_atomic(Path(out), lambda tmp, t=table: t.to_parquet(tmp, index=False))
        log(f"{len(table)} rows from {len(frames)} files -> {out}")


def add_run_arguments(s: argparse.ArgumentParser) -> None:
    """The arguments of every command that reads one trained run."""
    s.add_argument("--run-dir", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--batch-size", type=int, default=2000)
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rankcollapse", description=__doc__)
    sub = p.add_subparsers(required=True)

    s = sub.add_parser("fetch-raw", help="acquire and verify raw MNIST/Fashion-MNIST files")
    s.add_argument("--source", required=True, choices=sorted(data.RAW_FILES))
    s.add_argument("--dest", required=True)
    s.add_argument("--mirror")
    s.add_argument("--download", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--offline", action=argparse.BooleanOptionalAction, default=True)
    s.set_defaults(func=cmd_fetch_raw)

    s = sub.add_parser("prepare", help="write a dataset as tensors (safetensors)")
    s.add_argument("--spec", required=True, help="the dataset's config entry as JSON")
    s.add_argument("--raw", help="folder of verified raw files")
    s.add_argument("--mirror")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("train", help="train one run")
    s.add_argument("--spec", required=True, help="the run's spec as JSON")
    s.add_argument("--data", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        help="write the checkpoint after every N-th history record (0: never)",
    )
    s.add_argument(
        "--divergence",
        choices=["record", "fail"],
        default="record",
        help="record a diverged run and exit 0, or fail the job",
    )
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("measure", help="measure one trained run")
    add_run_arguments(s)
    s.add_argument("--layers", required=True, help="output: one row per layer (parquet)")
    s.add_argument("--spectra", required=True, help="output: spectra (safetensors)")
    s.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.01, 0.001])
    s.set_defaults(func=cmd_measure)

    s = sub.add_parser("aggregate", help="tidy tables of a study's runs")
    s.add_argument("--out", required=True, help="output: layers table (parquet)")
    s.add_argument("--history", required=True, help="output: training history (parquet)")
    s.add_argument("--spectra", required=True, help="output: singular values (parquet)")
    s.add_argument("layers", nargs="+", help="each run's layers.parquet")
    s.set_defaults(func=cmd_aggregate)

    s = sub.add_parser("utilize", help="utilized rank of every layer of one run (paper B)")
    add_run_arguments(s)
    s.add_argument("--out", required=True, help="output: one row per layer and energy (parquet)")
    s.add_argument("--moments", required=True, help="output: C_in per layer (safetensors)")
    s.add_argument("--energies", type=float, nargs="+", default=[0.9, 0.95, 0.99])
    s.add_argument("--calibration-samples", type=int, default=10000)
    s.set_defaults(func=cmd_utilize)

    s = sub.add_parser("compress", help="factorize one run to its utilized ranks, fine-tune")
    add_run_arguments(s)
    s.add_argument("--moments", required=True, help="the run's C_in per layer (safetensors)")
    s.add_argument("--energy", required=True, help="an energy in (0, 1], or 'search'")
    s.add_argument("--search-energies", type=float, nargs="+", default=[0.9, 0.95, 0.99])
    s.add_argument("--tolerance", type=float, default=0.005, help="(search) accuracy drop")
    s.add_argument("--out", required=True, help="output: one row per method and stage")
    s.add_argument("--finetune-epochs", type=int, default=2)
    s.add_argument("--finetune-lr", type=float, default=0.01)
    s.set_defaults(func=cmd_compress)

    s = sub.add_parser("aggregate-utilization", help="tidy paper-B tables of a study's runs")
    s.add_argument("--utilization", required=True, help="output: utilization table")
    s.add_argument("--compression", required=True, help="output: compression table")
    s.add_argument("--runs", nargs="+", required=True, help="each run's utilization.parquet")
    s.add_argument("--compressions", nargs="*", default=[], help="each compression table")
    s.set_defaults(func=cmd_aggregate_utilization)

    s = sub.add_parser("claims", help="verdict on claims C1-C5 (and U1-U5) from the study tables")
    s.add_argument("--thresholds", required=True, help="the config's claims section as JSON")
    s.add_argument("--markdown", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--utilization", nargs="*", default=[], help="paper B: utilization tables")
    s.add_argument("--compression", nargs="*", default=[], help="paper B: compression tables")
    s.add_argument("tables", nargs="+", help="layers tables of the studies")
    s.set_defaults(func=cmd_claims)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except data.DataError as error:
        sys.exit(f"error: {error}")
