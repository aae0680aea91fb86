"""Independent oracles for the measure and utilize tables: values recomputed from a run's saved
files alone (its dataset's tensors and its weights) by dense float64 code written here, a
forward pass by hand (convolutions as unfolded patches, attention written out), autograd of
the whole regularised objective, class means by explicit selection, eigendecompositions of
whole second moments, and none of the package's layer, statistics, measure or utilization
code. MLP runs of the tiny DAG, and a CNN (MSE loss) and a ViT trained, measured and utilized
here by the rules' own functions.

Tolerances, relative: 1e-10 where the run's weights are float64 (after the convergence phase
the measures run in float64; measured agreement 1e-15 to 2e-13), 1e-6 where they are float32
(that forward pass runs in float32, its sums in different orders; measured 6e-8).
"""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from factories import SCHEMA, quiet, train_alone
from rankcollapse.config import run_spec, validate_config
from rankcollapse.measure import measure
from rankcollapse.utilize import utilize
from safetensors.torch import load_file
from torch.nn import functional

EPS = [0.1, 0.01, 0.001]
ENERGIES = [0.9, 0.99]
CALIBRATION = 300


# ---- a run's files, read without the package ----


def load_data(path: Path, dtype: torch.dtype):
    """The features a run sees: images scaled to [0, 1] and standardised by the training set's
    pixel mean and std, in float32 as data preparation defines them, then in the weights' dtype.
    """
    t = load_file(path)
    train_x, test_x = t["train_x"], t["test_x"]
    if train_x.dtype == torch.uint8:
        train_x, test_x = train_x.float() / 255, test_x.float() / 255
        mean, std = train_x.mean(), train_x.std()
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
        train_x, test_x = train_x[:, None], test_x[:, None]
    return train_x.to(dtype), t["train_y"], test_x.to(dtype), t["test_y"]


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    state = load_file(path)
    state.pop("sha256")
    return state


# ---- forward passes by hand, every measured layer as a map on rows ----


class Tape:
    """The measured layers of one forward pass in module order: weight W (d_out × d_in),
    input rows Z, output rows H = Z Wᵀ + b, rows per sample.
    """

    def __init__(self):
        self.layers: list[dict] = []

    def linear(self, z_rows, weight, bias, rows_per_sample):
        h = z_rows @ weight.reshape(len(weight), -1).T
        if bias is not None:
            h = h + bias
        self.layers.append({"w": weight, "z": z_rows, "h": h, "rows": rows_per_sample})
        return h


def nonlinearity(spec: dict):
    name = spec.get("activation", "gelu")
    if name == "softplus":
        return lambda x: functional.softplus(x, beta=spec["beta"])
    return {"relu": torch.relu, "gelu": functional.gelu, "silu": functional.silu}[name]


def mlp_forward(state, model, x, tape):
    act = nonlinearity(model)
    linears = sorted({int(k.split(".")[0]) for k in state})
    z = x.flatten(1)
    for i, index in enumerate(linears):
        z = tape.linear(z, state[f"{index}.weight"], state.get(f"{index}.bias"), 1)
        if i < len(linears) - 1:
            z = act(z)
    return z


def conv_rows(x, weight, bias, tape):
    """A 3×3 convolution (padding 1) as its weight matrix on the unfolded input patches."""
    b, _, height, width = x.shape
    patches = functional.unfold(x, 3, padding=1).transpose(1, 2)  # B × HW × C·9
    h = tape.linear(patches.reshape(b * height * width, -1), weight, bias, height * width)
    return h.reshape(b, height * width, -1).transpose(1, 2).reshape(b, -1, height, width)


def cnn_forward(state, model, x, tape):
    act = nonlinearity(model)
    weights = sorted(
        (k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[0])
    )
    convs = [k for k in weights if state[k].ndim == 4]
    linears = [k for k in weights if state[k].ndim == 2]
    for key in convs:
        prefix = key.removesuffix(".weight")
        x = functional.max_pool2d(
            act(conv_rows(x, state[key], state.get(f"{prefix}.bias"), tape)), 2
        )
    z = x.flatten(1)
    for i, key in enumerate(linears):
        z = tape.linear(z, state[key], state.get(key.replace("weight", "bias")), 1)
        if i == 0:
            z = act(z)
    return z


def layer_norm(x, state, prefix):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * state[f"{prefix}.weight"] + state[f"{prefix}.bias"]


def vit_forward(state, model, x, tape):
    p, heads = model["patch_size"], model["heads"]
    b = len(x)
    patches = functional.unfold(x, p, stride=p).transpose(1, 2)
    t_patches = patches.shape[1]
    z = tape.linear(
        patches.reshape(b * t_patches, -1),
        state["embed.weight"],
        state.get("embed.bias"),
        t_patches,
    )
    z = z.reshape(b, t_patches, -1)
    z = torch.cat([state["cls_token"].expand(b, -1, -1), z], dim=1) + state["pos"]
    t, d = z.shape[1:]

    def tokens(prefix, rows):
        out = tape.linear(
            rows.reshape(b * t, -1), state[f"{prefix}.weight"], state.get(f"{prefix}.bias"), t
        )
        return out.reshape(b, t, -1)

    for block in range(model["depth"]):
        pre = f"blocks.{block}"
        qkv = tokens(f"{pre}.attn.qkv", layer_norm(z, state, f"{pre}.norm1"))
        q, k, v = qkv.reshape(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
        z = z + tokens(f"{pre}.attn.proj", (weights @ v).transpose(1, 2).reshape(b, t, d))
        hidden = functional.gelu(tokens(f"{pre}.fc1", layer_norm(z, state, f"{pre}.norm2")))
        z = z + tokens(f"{pre}.fc2", hidden)
    cls = layer_norm(z, state, "norm")[:, 0]
    return tape.linear(cls, state["head.weight"], state.get("head.bias"), 1)


FORWARD = {"mlp": mlp_forward, "cnn": cnn_forward, "vit": vit_forward}


def sample_losses(out, y, spec):
    if spec["loss"] == "cross_entropy":
        return torch.logsumexp(out, 1) - out[torch.arange(len(y)), y]
    target = torch.zeros_like(out)
    target[torch.arange(len(y)), y] = spec["target_scale"]
    return 0.5 * ((out - target) ** 2).sum(1)


# ---- the oracle: every value of a run's layer rows, densely ----


def svd_truncation_distance(w, rank):
    """‖W − W_r‖_F with W_r the rank-r truncation rebuilt from the full SVD."""
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    return float(torch.linalg.norm(w - u[:, :rank] @ torch.diag(s[:rank]) @ vh[:rank]))


def dense_layer_values(run: Path, data: Path) -> list[dict]:
    meta = json.loads((run / "metadata.json").read_text())
    spec = meta["spec"]
    state = load_weights(run / "model.safetensors")
    dtype = next(iter(state.values())).dtype
    train_x, train_y, test_x, test_y = load_data(data, dtype)
    classes, n, wd = meta["classes"], len(train_y), spec["weight_decay"]
    state = {k: v.requires_grad_(True) for k, v in state.items()}
    tape = Tape()
    out = FORWARD[spec["model"]["arch"]](state, spec["model"], train_x, tape)
    losses = sample_losses(out, train_y, spec)
    # F(θ) = (1/N) Σ_i loss_i + (λ/2) Σ over every parameter ‖θ‖²
    objective = losses.mean() + wd / 2 * sum((v**2).sum() for v in state.values())
    weights = [layer["w"] for layer in tape.layers]
    residuals = torch.autograd.grad(objective, weights, retain_graph=True)
    deltas = torch.autograd.grad(losses.sum(), [layer["h"] for layer in tape.layers])
    with torch.no_grad():
        test_out = FORWARD[spec["model"]["arch"]](state, spec["model"], test_x, Tape())
    rows = []
    for index, (layer, r, delta) in enumerate(zip(tape.layers, residuals, deltas, strict=True)):
        w = layer["w"].detach().double().reshape(len(layer["w"]), -1)
        z, d = layer["z"].detach().double(), delta.double()
        labels = train_y.repeat_interleave(layer["rows"])
        means = torch.stack([z[labels == c].mean(0) for c in range(classes)])
        counts = torch.stack([(labels == c).sum() for c in range(classes)]).double()
        deviation = z - means[labels]
        global_mean = z.mean(0)
        centred_means = means - global_mean
        ss_per_class = torch.stack([(deviation[labels == c] ** 2).sum() for c in range(classes)])
        sigma_w = deviation.T @ deviation / len(z)
        sigma_b = centred_means.T @ centred_means / classes
        var = ss_per_class / counts
        pairs = [(a, c) for a in range(classes) for c in range(classes) if a != c]
        s = torch.linalg.svdvals(w)
        row = {
            "sigma_1": float(s[0]),
            "frobenius_norm": float(torch.linalg.norm(w)),
            "tail_K": svd_truncation_distance(w, classes),
            "tail_Km1": svd_truncation_distance(w, classes - 1),
            "sigma_ratio_K": float(s[classes] / s[0]) if len(s) > classes else 0.0,
            "stable_rank": float((w**2).sum() / s[0] ** 2),
            "tcv": float(deviation.norm(dim=1).sum()),
            "ss_within": float((deviation**2).sum()),
            "ss_total": float(((z - global_mean) ** 2).sum()),
            "nc1": float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)))
            / classes,
            "cdnv": sum(
                float((var[a] + var[c]) / (2 * ((means[a] - means[c]) ** 2).sum()))
                for a, c in pairs
            )
            / len(pairs),
            "delta_max": float(d.norm(dim=1).max()),
            "grad_norm": float(torch.linalg.norm(d.T @ z)) / n,
            "train_loss": float(losses.detach().mean()),
            "train_acc": float((out.argmax(1) == train_y).double().mean()),
            "test_acc": float((test_out.argmax(1) == test_y).double().mean()),
        }
        row["ss_ratio"] = row["ss_within"] / row["ss_total"]
        if wd > 0:
            # E = Σ_r δ_r (z_r − μ_c(r))ᵀ and R = ∂F/∂W, here from autograd of F itself.
            row["e_norm"] = float(torch.linalg.norm(d.T @ deviation))
            row["r_norm"] = float(torch.linalg.norm(r.double()))
            row["rel_residual"] = row["r_norm"] / (wd * row["frobenius_norm"])
            row["bound"] = row["e_norm"] / (n * wd) + row["r_norm"] / wd
        if index == len(tape.layers) - 1:
            row.update(last_layer_collapse(w, centred_means, z, means, out))
        rows.append(row)
    return rows


def spread(norms):
    return float(norms.std(correction=0) / norms.mean())


def cosines(v):
    unit = v / v.norm(dim=1, keepdim=True)
    return (unit @ unit.T)[~torch.eye(len(v), dtype=torch.bool)]


def last_layer_collapse(w, centred_means, z, means, out):
    """NC2-NC4: equinorm and equiangularity of the centred class means and the weight rows,
    self-duality, and how often the nearest class mean disagrees with the prediction.
    """
    k = len(w)
    values = {
        "nc2_equinorm_means": spread(centred_means.norm(dim=1)),
        "nc2_equinorm_weights": spread(w.norm(dim=1)),
        "nc3_self_duality": float(
            torch.linalg.norm(w / w.norm() - centred_means / centred_means.norm())
        ),
    }
    for name, v in (("means", centred_means), ("weights", w)):
        cos = cosines(v)
        values[f"nc2_equiangular_{name}"] = float(cos.std(correction=0))
        values[f"nc2_maxangle_{name}"] = float((cos + 1 / (k - 1)).abs().mean())
    distances = ((z[:, None, :] - means[None]) ** 2).sum(-1)
    values["nc4_ncc_mismatch"] = float((distances.argmin(1) != out.argmax(1)).double().mean())
    return values


# NC1 inverts Σ_B on its range, whose condition number reaches 1e8 for a convolution's patches
# (class means of 3×3 patches differ little): round-off grows by as much.
CONDITIONED = {"nc1": 1e-7}


def assert_layer_rows_agree(table: pd.DataFrame, oracle: list[dict], rel: float) -> int:
    """Every oracle value against the table's; returns how many values were compared."""
    compared = 0
    table = table.sort_values("layer_index")
    assert len(table) == len(oracle)
    for (_, row), expected in zip(table.iterrows(), oracle, strict=True):
        for key, value in expected.items():
            tolerance = max(rel, CONDITIONED.get(key, 0))
            assert row[key] == pytest.approx(value, rel=tolerance, abs=1e-12), (row["layer"], key)
            compared += 1
    return compared


# ---- paper B: utilized ranks from eigendecompositions ----


def energy_rank(values, energy):
    values = values.clamp_min(0)
    values = torch.where(values > 1e-12 * values.max(), values, 0.0)
    fractions = torch.cumsum(values, 0) / values.sum()
    return int(torch.nonzero(fractions >= energy)[0]) + 1


def dense_utilization(w, z_rows, energy):
    """k_S, k_T and the utilized rank r of W′ = P_T W P_S from C_in = Σ z zᵀ, C_out = W C_in Wᵀ."""
    c_in = z_rows.T @ z_rows
    values, vectors = torch.linalg.eigh(c_in)
    values, vectors = values.flip(0), vectors.flip(1)
    k_s = energy_rank(values, energy)
    p_s = vectors[:, :k_s] @ vectors[:, :k_s].T
    values, vectors = torch.linalg.eigh(w @ c_in @ w.T)
    values, vectors = values.flip(0), vectors.flip(1)
    k_t = energy_rank(values, energy)
    p_t = vectors[:, :k_t] @ vectors[:, :k_t].T
    s = torch.linalg.svdvals(p_t @ w @ p_s)
    return {"k_S": k_s, "k_T": k_t, "rank": int((s > 1e-8 * s[0]).sum())}


def assert_utilization_agrees(table: pd.DataFrame, run: Path, data: Path, measured: list[str]):
    """The utilize table's k_S, k_T and rank of each measured layer at each energy against the
    dense computation on the calibration subset (the first samples of a seed-0 permutation).
    """
    meta = json.loads((run / "metadata.json").read_text())
    state = load_weights(run / "model.safetensors")
    dtype = next(iter(state.values())).dtype
    train_x = load_data(data, dtype)[0]
    calibration = int(table["calibration_samples"].iloc[0])
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))
    tape = Tape()
    with torch.no_grad():
        FORWARD[meta["spec"]["model"]["arch"]](
            state, meta["spec"]["model"], train_x[order[:calibration]], tape
        )
    layers = {f"layer{i + 1}": layer for i, layer in enumerate(tape.layers)}
    assert sorted(table["layer"].unique()) == sorted(measured)
    for row in table.itertuples():
        layer = layers[row.layer]
        w = layer["w"].double().reshape(len(layer["w"]), -1)
        expected = dense_utilization(w, layer["z"].double(), row.energy)
        assert (row.k_S, row.k_T, row.rank) == tuple(expected.values()), (row.layer, row.energy)
        assert row.utilization == expected["rank"] / min(w.shape)


# ---- the MLP runs of the tiny DAG ----


@pytest.mark.parametrize(
    ("dataset", "wd", "rel"),
    [("mnist_small", "0.001", 1e-10), ("clusters_b", "0.001", 1e-10), ("clusters_a", "0", 1e-6)],
)
def test_tiny_dag_tables_equal_a_dense_recomputation(tiny_run, dataset, wd, rel):
    run = tiny_run / f"results/runs/tiny/{dataset}/wd~{wd}/seed~0"
    data = tiny_run / f"results/data/{dataset}.safetensors"
    table = pd.read_parquet(tiny_run / "results/tables/tiny/layers.parquet")
    table = table[(table["dataset"] == dataset) & (table["weight_decay"] == float(wd))]
    oracle = dense_layer_values(run, data)
    assert assert_layer_rows_agree(table, oracle, rel) >= 3 * 16
    utilization = pd.read_parquet(tiny_run / "results/tables/tiny/utilization.parquet")
    utilization = utilization[
        (utilization["dataset"] == dataset) & (utilization["weight_decay"] == float(wd))
    ]
    assert_utilization_agrees(utilization, run, data, ["layer1", "layer2", "layer3"])


# ---- a CNN with MSE and a ViT, through the rules' functions ----

MODELS = {
    "cnn": ({"arch": "cnn", "channels": [4, 8], "width": 16, "bias": True}, "mse"),
    "vit": (
        {"arch": "vit", "depth": 1, "width": 32, "dim": 16, "heads": 2, "patch_size": 7}
        | {"pool": "cls", "bias": True},
        "cross_entropy",
    ),
}


def trained_measured_utilized(tmp_path: Path, data: Path, arch: str) -> Path:
    model, loss = MODELS[arch]
    config = {
        "datasets": {"mnist_small": {"source": "mnist", "train_size": 1000, "test_size": 500}},
        "studies": {
            arch: {
                "datasets": ["mnist_small"],
                "model": model,
                "loss": loss,
                "optimizer": {"epochs": 1, "batch_size": 100, "lr": 0.02},
                "convergence": {"steps": 3},
                "weight_decay": [1e-3],
            }
        },
    }
    validate_config(config, SCHEMA)
    spec = run_spec(config, arch, "mnist_small", "1e-3", "0")
    run = tmp_path / arch
    names = {f: str(run / f) for f in ("model.safetensors", "history.csv", "metadata.json")}
    train_alone(spec, str(data), run, checkpoint_every=1)
    files = [str(data), names["model.safetensors"], names["metadata.json"]]
    # Batches that do not divide N: the streaming sums must not depend on where batches end.
    measure(
        *files, str(run / "layers.parquet"), str(run / "spectra.safetensors"), EPS, 384, 1, quiet
    )
    utilize(
        *files,
        str(run / "utilization.parquet"),
        str(run / "moments.safetensors"),
        ENERGIES,
        CALIBRATION,
        384,
        1,
        quiet,
    )
    return run


@pytest.mark.parametrize(
    ("arch", "utilized"),
    [
        ("cnn", ["layer1", "layer2", "layer3", "layer4"]),
        ("vit", ["layer2", "layer3", "layer4", "layer5"]),
    ],
)
def test_cnn_and_vit_tables_equal_a_dense_recomputation(tiny_run, tmp_path, arch, utilized):
    data = tiny_run / "results/data/mnist_small.safetensors"
    run = trained_measured_utilized(tmp_path, data, arch)
    assert json.loads((run / "metadata.json").read_text())["status"] == "finished"
    oracle = dense_layer_values(run, data)
    table = pd.read_parquet(run / "layers.parquet")
    assert assert_layer_rows_agree(table, oracle, 1e-10) >= len(oracle) * 16
    assert_utilization_agrees(pd.read_parquet(run / "utilization.parquet"), run, data, utilized)
