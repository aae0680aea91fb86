"""Verdicts on claims C1-C5 on small synthetic layer tables, in both directions."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from factories import as_written, claims_defaults
from rankcollapse.claims import evaluate_claims, rank_collapse
from rankcollapse.claims.report import render_markdown, write_report
from rankcollapse.claims.statistics import hidden, spearman

claim_c1, claim_c2, claim_c3, claim_c4, claim_c5 = map(as_written, rank_collapse.CLAIMS)
T = claims_defaults()
WDS = (0.0, 1e-3, 1e-2, 1e-1)
# (d_in, d_out) of layer1..layer3 with K = 3: two hidden layers, then the output layer.
SHAPES = ((10, 8), (8, 8), (8, 3))


def layer_table(
    wds=WDS, seeds=(0, 1), stds=None, shapes=SHAPES, classes=3, study="s"
) -> pd.DataFrame:
    """A table whose hidden ranks and tail_K fall with λ, whose embedding variability falls
    with λ (layer 1's input is fixed data), with tail_K = 0.005·TCV/λ, the bound holding with
    margin, and, for synthetic ``stds``, hidden ranks that grow with the spread.
    """
    datasets = [("real", math.nan, 0)] if stds is None else []
    datasets += [(f"clusters_{s:g}", s, i) for i, s in enumerate(stds or ())]
    rows = []
    for dataset, std, std_index in datasets:
        for i, wd in enumerate(wds):
            for seed in seeds:
                for index, (d_in, d_out) in enumerate(shapes, start=1):
                    is_hidden = min(d_in, d_out) > classes
                    shrink = 1.0 if index == 1 else 1 / (1 + 10 * wd)
                    tcv = shrink * (1 + 0.01 * seed)
                    tail = (0.005 * tcv / wd if wd > 0 else 50.0) if is_hidden else 0.0
                    rank = classes + len(wds) - i + std_index if is_hidden else classes
                    rows.append(
                        {
                            "study": study,
                            "dataset": dataset,
                            "weight_decay": wd,
                            "seed": seed,
                            "status": "finished",
                            "reason": "",
                            "layer": f"layer{index}",
                            "layer_index": index,
                            "d_in": d_in,
                            "d_out": d_out,
                            "classes": classes,
                            "dataset_std": std,
                            "rank_fro": rank,
                            "rank_eps_0.1": rank,
                            "rank_eps_0.01": rank,
                            "rank_eps_0.001": rank,
                            "stable_rank": float(rank),
                            "effective_rank": float(rank),
                            "tail_K": tail,
                            "rel_tail_K": tail,  # ||W||_F = 1
                            "tcv": tcv,
                            "ss_ratio": 0.5 * shrink,
                            "nc1": shrink,
                            "cdnv": shrink,
                            "bound": 2 * tail if wd > 0 else math.nan,
                            "bound_holds": True if wd > 0 else None,
                            "tcv_over_wd": tcv / wd if wd > 0 else math.nan,
                            "train_acc": 1.0,
                            "test_acc": 0.9,
                        }
                    )
    return pd.DataFrame(rows)


def counted(claim: dict) -> list[dict]:
    return [d for d in claim["details"] if d.get("counted")]


# ---------------------------------------------------------------- spearman and hidden


def test_spearman_perfect_monotone():
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [5, 3, 2, -1]) == pytest.approx(-1.0)


def test_spearman_ties_take_average_ranks():
    # ranks x = 1, 2.5, 2.5, 4 against 1, 2, 3, 4: ρ = 4.5 / sqrt(4.5 · 5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))


def test_spearman_undefined_for_constant_or_too_few():
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2], [1, 2]))


def test_hidden_means_rank_can_exceed_k():
    table = layer_table(wds=(0.1,), seeds=(0,))
    assert hidden(table).tolist() == [True, True, False]


# ---------------------------------------------------------------- C1


def test_c1_holds_when_hidden_ranks_fall_and_output_layer_is_not_applicable():
    c1 = claim_c1(layer_table(), T)
    assert c1["verdict"] == "holds"
    assert {(d["layer"], d["measure"]) for d in counted(c1)} == {
        ("layer1", "rank_fro"),
        ("layer1", "tail_K"),
        ("layer2", "rank_fro"),
        ("layer2", "tail_K"),
    }
    # seeds pooled: 4 λ × 2 seeds; tail_K differs between seeds at equal λ, so ρ > -1 there
    assert all(d["rho"] < -0.9 and d["n"] == 8 for d in counted(c1))
    assert [d["rho"] for d in counted(c1) if d["measure"] == "rank_fro"] == [-1.0, -1.0]
    output = [d for d in c1["details"] if d["layer"] == "layer3"]
    assert output and all(d["result"].startswith("not applicable") for d in output)


def test_c1_fails_when_one_hidden_rank_rises():
    table = layer_table()
    layer2 = table["layer"] == "layer2"
    table.loc[layer2, "rank_fro"] = (100 * table.loc[layer2, "weight_decay"]).astype(int) + 4
    c1 = claim_c1(table, T)
    assert c1["verdict"] == "does not hold"
    failing = [d for d in counted(c1) if d["result"].startswith("fails")]
    assert [(d["layer"], d["measure"]) for d in failing] == [("layer2", "rank_fro")]


def test_c1_constant_hidden_rank_fails():
    table = layer_table()
    table.loc[table["layer"] == "layer1", "rank_fro"] = 8
    c1 = claim_c1(table, T)
    assert c1["verdict"] == "does not hold"
    assert "constant" in c1["statistic"]


def test_c1_not_run_with_two_lambdas():
    assert claim_c1(layer_table(wds=(0.0, 0.1)), T)["verdict"] == "not run"


# ---------------------------------------------------------------- C2


def test_c2_holds_when_embedding_variability_falls():
    c2 = claim_c2(layer_table(), T)
    assert c2["verdict"] == "holds"
    assert {d["layer"] for d in counted(c2)} == {"layer2", "layer3"}
    assert all(d["measure"] == "ss_ratio" for d in counted(c2))
    assert "tcv" in c2["statistic"] and "scale" in c2["statement"]


def test_c2_fails_when_the_output_layers_input_variability_rises():
    table = layer_table()
    layer3 = table["layer"] == "layer3"
    table.loc[layer3, "ss_ratio"] = 0.1 + table.loc[layer3, "weight_decay"]
    assert claim_c2(table, T)["verdict"] == "does not hold"


def test_c2_ignores_tcv_in_the_verdict():
    table = layer_table()
    table["tcv"] = 1.0 + table["weight_decay"]
    assert claim_c2(table, T)["verdict"] == "holds"


# ---------------------------------------------------------------- C3


def test_c3_holds_for_a_bound_that_holds_and_slope_one():
    c3 = claim_c3(layer_table(), T)
    assert c3["verdict"] == "holds"
    # 3 λ > 0 × 2 seeds × 3 layers
    assert "18 checks, 0 violations" in c3["statistic"]
    (slope,) = [d for d in c3["details"] if d["part"] == "b"]
    assert slope["slope"] == pytest.approx(1.0) and slope["n"] == 12


def test_c3_a_single_violation_fails_and_is_listed():
    table = layer_table()
    row = table.index[(table["weight_decay"] == 1e-2) & (table["layer"] == "layer2")][0]
    table.loc[row, "bound_holds"] = False
    c3 = claim_c3(table, T)
    assert c3["verdict"] == "does not hold"
    assert "1 violations" in c3["statistic"]
    (violation,) = [d for d in c3["details"] if d["part"] == "a"]
    assert (violation["layer"], violation["weight_decay"], violation["seed"]) == ("layer2", 1e-2, 0)


def test_c3_b_slope_three_fails():
    table = layer_table()
    rows = hidden(table) & (table["weight_decay"] > 0)
    table.loc[rows, "tail_K"] = 0.005 * table.loc[rows, "tcv_over_wd"] ** 3
    c3 = claim_c3(table, T)
    assert c3["verdict"] == "does not hold"
    (slope,) = [d for d in c3["details"] if d["part"] == "b"]
    assert slope["slope"] == pytest.approx(3.0)


def test_c3_not_run_without_positive_lambda():
    assert claim_c3(layer_table(wds=(0.0,)), T)["verdict"] == "not run"


# ---------------------------------------------------------------- C4


def test_c4_holds_at_the_largest_lambda_that_trains():
    c4 = claim_c4(layer_table(), T)
    assert c4["verdict"] == "holds"
    assert {d["lambda_star"] for d in counted(c4)} == {0.1}
    # tail_K = 0.005 · TCV/λ: 0.005 · 1.005 / 0.1 on layer 1, half that on layer 2
    assert [d["rel_tail_K"] for d in counted(c4)] == pytest.approx([0.05025, 0.025125])


def test_c4_fails_when_the_largest_training_lambda_is_far_from_rank_k():
    table = layer_table()
    table.loc[table["weight_decay"] == 0.1, "train_acc"] = 0.5
    c4 = claim_c4(table, T)
    assert c4["verdict"] == "does not hold"
    assert {d["lambda_star"] for d in counted(c4)} == {0.01}


def test_c4_not_run_when_no_positive_lambda_trains():
    table = layer_table()
    table.loc[table["weight_decay"] > 0, "train_acc"] = 0.2
    assert claim_c4(table, T)["verdict"] == "not run"


# ---------------------------------------------------------------- C5


def test_c5_holds_when_rank_grows_with_spread():
    c5 = claim_c5(layer_table(stds=(0.5, 1.0, 2.0)), T)
    assert c5["verdict"] == "holds"
    # 3 λ > 0 × 2 hidden layers, each over 3 spreads × 2 seeds
    assert len(counted(c5)) == 6 and all(d["n"] == 6 for d in counted(c5))


def test_c5_fails_when_rank_falls_with_spread():
    table = layer_table(stds=(0.5, 1.0, 2.0))
    rows = hidden(table)
    table.loc[rows, "rank_fro"] = 20 - 2 * table.loc[rows, "dataset_std"].astype(int)
    assert claim_c5(table, T)["verdict"] == "does not hold"


def test_c5_not_run_without_synthetic_spreads():
    assert claim_c5(layer_table(), T)["verdict"] == "not run"
    assert claim_c5(layer_table(stds=(1.0,)), T)["verdict"] == "not run"


# ---------------------------------------------------------------- all claims and the report


def with_diverged_run(table: pd.DataFrame) -> pd.DataFrame:
    """Add a diverged run at λ = 0.1 whose rows would break every claim if counted."""
    bad = table[(table["weight_decay"] == 0.1) & (table["seed"] == 0)].copy()
    bad["seed"] = 7
    bad["status"], bad["reason"] = "diverged", "non-finite loss in sgd 3"
    for column in ("rank_fro", "tail_K", "rel_tail_K", "ss_ratio", "tcv"):
        bad[column] = 1e6
    bad["bound_holds"] = False
    bad["train_acc"] = 0.1
    return pd.concat([table, bad], ignore_index=True)


def test_diverged_runs_are_left_out_and_listed():
    claims = evaluate_claims(with_diverged_run(layer_table()), T)
    assert [c["id"] for c in claims] == ["C1", "C2", "C3", "C4", "C5"]
    assert [c["verdict"] for c in claims] == ["holds"] * 4 + ["not run"]
    assert all(
        c["left_out"] == ["s/real λ=0.1 seed 7: diverged (non-finite loss in sgd 3)"]
        for c in claims
    )


def test_details_are_json_ready():
    claims = evaluate_claims(layer_table(wds=(0.0, 0.1)), T)
    text = json.dumps(claims, allow_nan=False)
    assert "NaN" not in text
    for c in claims:
        for row in c["details"]:
            assert all(v is None or isinstance(v, str | int | float | bool) for v in row.values())
            assert not any(isinstance(v, np.generic) for v in row.values())


def test_render_markdown_names_every_claim_and_verdict():
    claims = evaluate_claims(with_diverged_run(layer_table()), T)
    markdown = render_markdown(claims, T)
    for c in claims:
        assert f"## {c['id']}: {c['verdict']}" in markdown
        assert c["statistic"].split(";")[0].replace("|", "\\|") in markdown
    assert "not tuned" in markdown
    assert "s/real λ=0.1 seed 7: diverged" in markdown


def test_write_report_writes_strict_json_and_markdown(tmp_path):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    md, js = tmp_path / "out" / "claims.md", tmp_path / "out" / "claims.json"
    table = pd.concat(
        [layer_table(), layer_table(stds=(0.5, 1.0, 2.0), study="synthetic")], ignore_index=True
    )
    thresholds = {**T, "max_rel_tail": 0.2}
    write_report(evaluate_claims(table, thresholds), thresholds, md, js)
    payload = json.loads(js.read_text(), parse_constant=no_constants)
    assert payload["thresholds"] == thresholds
    assert [c["verdict"] for c in payload["claims"]] == ["holds"] * 5
    assert md.read_text().startswith("# Claims")


def test_c3_slope_and_c4_count_only_sweeps_of_three_lambdas():
    # One λ > 0 only (as a study trained at a single weight decay): C4 and C3(b) are about
    # the trend in λ and do not count it, whatever its tails.
    table = layer_table(wds=(1e-3,))
    table.loc[:, "rel_tail_K"] = 0.9
    assert claim_c4(table, T)["verdict"] == "not run"
    assert "1 λ values < 3" in claim_c4(table, T)["details"][0]["result"]
    slope = [d for d in claim_c3(table, T)["details"] if d.get("part") == "b"]
    assert slope and all(not d["counted"] for d in slope)
