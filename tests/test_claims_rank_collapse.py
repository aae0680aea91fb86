"""Verdicts on claims C1-C5 and P on synthetic layer tables whose right verdict is known: holds,
does not hold, inconclusive, the layer-1 control, excluded runs, and each rule's threshold.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from factories import as_written, claims_defaults
from rankcollapse.claims import evaluate_claims, rank_collapse
from rankcollapse.claims.report import render_markdown, write_report

claim_c1, claim_c2, claim_c3a, claim_c3b, claim_c4, claim_c5, claim_p = map(
    as_written, rank_collapse.CLAIMS
)
T = claims_defaults()
WDS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SEEDS = (0, 1, 2)
# (d_in, d_out) of layer1..layer4 with K = 3: three hidden layers, then the output layer.
SHAPES = ((10, 8), (8, 8), (8, 8), (8, 3))


def layer_table(wds=WDS, seeds=SEEDS, stds=None, study="s") -> pd.DataFrame:
    """Counted runs (certified, trained) where every paper-A claim holds.

    The input variability ss_ratio of layer l is smaller the deeper the layer, larger the
    larger the spread, and (for l ≥ 2) falls with λ; each distance to rank K is
    0.01 · ss_ratio · (10⁻³/λ)^½, so it falls with λ and grows with variability; the bound is
    twice tail_K with ‖W‖_F = 1. Runs at λ = 0.1 do not train (accuracy 0.3), so λ* = 0.03.
    """
    datasets = [("real", math.nan)] if stds is None else [(f"c{s:g}", s) for s in stds]
    rows = []
    for dataset, std in datasets:
        spread = 1.0 if stds is None else std
        for wd in wds:
            for seed in seeds:
                for index, (d_in, d_out) in enumerate(SHAPES, start=1):
                    shrink = 1.0 if index == 1 else 1 / (1 + 10 * wd)
                    ss = spread * shrink * 0.8**index * (1 + 0.001 * seed)
                    distance = 0.01 * ss * math.sqrt(1e-3 / wd)
                    rows.append(
                        {
                            "study": study,
                            "dataset": dataset,
                            "dataset_std": std,
                            "weight_decay": wd,
                            "seed": seed,
                            "status": "finished",
                            "reason": "",
                            "stationary": True,
                            "certified_rel_residual": 1e-4,
                            "stop_reason": "tolerance reached",
                            "train_acc": 0.3 if wd >= 0.1 else 1.0,
                            "layer": f"layer{index}",
                            "layer_index": index,
                            "d_in": d_in,
                            "d_out": d_out,
                            "classes": 3,
                            "rel_tail_K": distance,
                            "sigma_ratio_K": distance,
                            "rank_fro": 8 - round(10 * wd),
                            "tail_K": distance,
                            "frobenius_norm": 1.0,
                            "bound": 2 * distance,
                            "bound_e": 1.9 * distance,
                            "bound_holds": True,
                            "tcv_over_wd": ss / wd,
                            "ss_ratio": ss,
                            "tcv": ss,
                            "tcv_relative": ss,
                            "nc1": ss,
                            "cdnv": ss,
                            "means_rank": 2,
                        }
                    )
    return pd.DataFrame(rows)


def both(table=None, **kw) -> pd.DataFrame:
    """A real-data study and a synthetic study of three spreads in one table."""
    return pd.concat(
        [layer_table(**kw), layer_table(stds=(0.5, 1.0, 2.0), study="syn", **kw)],
        ignore_index=True,
    )


def outcomes(claim: dict, **where) -> set[str]:
    rows = [d for d in claim["details"] if all(d.get(k) == v for k, v in where.items())]
    return {d["outcome"] for d in rows}


def test_every_claim_holds_where_the_theorem_does():
    content = evaluate_claims(both(), T)
    verdicts = {c["id"]: c["verdict"] for c in content["claims"]}
    assert verdicts == dict.fromkeys(["C1", "C2", "C3a", "C3b", "C4", "C5", "P"], "holds")
    c1 = content["claims"][0]
    assert c1["n"] == 4 * 3 + 3 * 4 * 3  # runs at the 4 λ that train, 3 seeds, 1 + 3 datasets
    assert c1["low"] is not None and c1["high"] < 0 and c1["line"] == 0


def test_c1_fails_when_a_hidden_layers_distance_rises_with_lambda():
    table = layer_table()
    rising = table["layer"] == "layer2"
    for column in ("rel_tail_K", "sigma_ratio_K"):
        table.loc[rising, column] = table.loc[rising, "weight_decay"]
    c1 = claim_c1(table, T)
    assert c1["verdict"] == "does not hold"
    assert outcomes(c1, layer="layer2", measure="rel_tail_K") == {"fail"}
    assert c1["value"] == pytest.approx(1.0)  # the failing group heads the summary


def test_c1_layer_one_is_a_control_that_never_fails_the_claim():
    table = layer_table()
    first = table["layer_index"] == 1
    table.loc[first, "rel_tail_K"] = table.loc[first, "weight_decay"]  # rises with λ
    c1 = claim_c1(table, T)
    assert c1["verdict"] == "holds"
    assert outcomes(c1, layer="layer1") == {"control"}
    assert outcomes(c1, measure="rank_fro") <= {"information only", "control"}


def test_c1_inconclusive_when_seeds_disagree():
    table = layer_table(seeds=(0, 1, 2, 3))
    odd = table["seed"] % 2 == 1
    for column in ("rel_tail_K", "sigma_ratio_K"):
        table.loc[odd, column] = table.loc[odd, "weight_decay"]  # half the seeds rise
    assert claim_c1(table, T)["verdict"] == "inconclusive"


def test_a_sweep_whose_runs_are_not_certified_shows_too_few_points_not_nothing():
    table = layer_table()
    table.loc[table["weight_decay"].isin([1e-3, 3e-3]), "stationary"] = False
    c1 = claim_c1(table, T)
    assert c1["verdict"] == "inconclusive"
    assert outcomes(c1, layer="layer2", measure="rel_tail_K") == {"too few points"}


def test_c4_a_diverged_largest_lambda_is_a_lambda_that_does_not_train():
    table = layer_table().assign(train_acc=1.0)
    top = table["weight_decay"] == 0.1
    table.loc[top, ["status", "reason"]] = ["diverged", "non-finite loss"]
    c4 = claim_c4(table, T)
    assert c4["verdict"] == "holds"
    assert {d["weight_decay"] for d in c4["details"]} == {3e-2}


def test_a_measure_missing_from_the_table_keeps_a_claim_from_holding():
    c1 = claim_c1(layer_table().assign(sigma_ratio_K=math.nan), T)
    assert c1["verdict"] == "inconclusive"
    assert outcomes(c1, layer="layer2", measure="sigma_ratio_K") == {"inconclusive"}


def test_c1_too_few_points_with_one_seed_of_three_lambdas_is_inconclusive():
    c1 = claim_c1(layer_table(wds=(1e-3, 1e-2, 3e-2), seeds=(0,)), T)
    assert c1["verdict"] == "inconclusive"
    assert outcomes(c1, layer="layer2") == {"too few points", "information only"}


def test_alpha_decides_whether_two_seeds_of_three_lambdas_can_pass():
    # Two perfect seeds of 3 λ: exact p = 1/36 ≈ 0.028.
    table = layer_table(wds=(1e-3, 1e-2, 3e-2), seeds=(0, 1))
    assert claim_c1(table, T)["verdict"] == "holds"
    assert claim_c1(table, {**T, "alpha": 0.01})["verdict"] == "inconclusive"


def test_uncertified_runs_are_excluded_and_listed():
    table = layer_table()
    bad = (table["seed"] == 0) & (table["weight_decay"] == 3e-2)
    for column in ("rel_tail_K", "sigma_ratio_K", "ss_ratio"):
        table.loc[bad, column] = 50.0  # would break C1, C2 and C4 if counted
    table.loc[bad, ["stationary", "stop_reason"]] = [False, "step budget spent"]
    table.loc[bad, "certified_rel_residual"] = 0.2
    content = evaluate_claims(table, T)
    assert {c["id"]: c["verdict"] for c in content["claims"]}["C1"] == "holds"
    assert all(c["verdict"] == "holds" for c in content["claims"] if c["id"] != "C5")
    assert (
        "s/real λ=0.03 seed 0: not certified (step budget spent, residual 0.2)"
        in (content["not_counted"])
    )
    flipped = table.assign(stationary=True)  # the same rows, if the filter let them in
    assert claim_c1(flipped, T)["verdict"] != "holds"


def test_the_train_accuracy_filter():
    table = layer_table()
    poor = (table["seed"] == 1) & (table["weight_decay"] == 1e-2)
    table.loc[poor, "train_acc"] = 0.85
    table.loc[poor & (table["layer_index"] >= 2), "ss_ratio"] = 10.0
    assert claim_c2(table, T)["verdict"] == "holds"
    assert claim_c2(table, {**T, "min_train_acc": 0.8})["verdict"] != "holds"


def test_c2_fails_when_the_embeddings_variability_rises_with_lambda():
    table = layer_table()
    deep = table["layer_index"] == 3
    table.loc[deep, "ss_ratio"] = table.loc[deep, "weight_decay"]
    c2 = claim_c2(table, T)
    assert c2["verdict"] == "does not hold"
    assert outcomes(c2, layer="layer3", measure="ss_ratio") == {"fail"}
    # TCV decides nothing: a TCV that rises leaves the verdict alone.
    table = layer_table().assign(tcv=lambda t: t["weight_decay"])
    assert claim_c2(table, T)["verdict"] == "holds"


def test_c3a_is_a_check_that_fails_on_one_violation():
    table = layer_table()
    assert claim_c3a(table, T)["kind"] == "check of the implementation"
    table.loc[5, "bound_holds"] = False
    c3a = claim_c3a(table, T)
    assert c3a["verdict"] == "does not hold" and len(c3a["details"]) == 1


def test_c3b_fails_when_the_bound_exceeds_the_norm_and_is_inconclusive_across_it():
    table = layer_table()
    assert claim_c3b(table, T)["verdict"] == "holds"
    assert claim_c3b(table.assign(bound=5.0), T)["verdict"] == "does not hold"
    # Half the runs' bounds above ‖W‖_F, half below: the bootstrap interval straddles 1.
    runs = table["seed"].astype(str) + table["weight_decay"].astype(str)
    halves = runs.isin(sorted(runs.unique())[::2])
    straddling = table.assign(bound=np.where(halves, 0.9, 1.1))
    assert claim_c3b(straddling, T)["verdict"] == "inconclusive"


def test_c4_uses_the_largest_lambda_that_trains_and_its_threshold():
    c4 = claim_c4(layer_table(), T)
    assert c4["verdict"] == "holds"
    assert {d["weight_decay"] for d in c4["details"]} == {3e-2}
    tail = max(d["value"] for d in c4["details"] if d["outcome"] == "pass")
    assert claim_c4(layer_table(), {**T, "max_rel_tail": tail / 2})["verdict"] == "does not hold"


def test_c4_inconclusive_when_training_never_fails_in_the_grid():
    table = layer_table().assign(train_acc=1.0)
    c4 = claim_c4(table, T)
    assert c4["verdict"] == "inconclusive"
    scored = [d for d in c4["details"] if d["outcome"] != "control"]
    assert scored and all("grid's largest" in d["result"] for d in scored)


def test_c5_holds_and_fails_with_the_spread():
    table = layer_table(stds=(0.5, 1.0, 2.0))
    assert claim_c5(table, T)["verdict"] == "holds"
    for column in ("rel_tail_K", "sigma_ratio_K"):
        table[column] = 1 / table["dataset_std"] * (1 + 0.01 * table["layer_index"])
    assert claim_c5(table, T)["verdict"] == "does not hold"
    assert claim_c5(layer_table(), T)["verdict"] == "not run"  # no synthetic spreads


def test_p_fails_when_deeper_inputs_vary_less_but_distances_grow():
    table = layer_table()
    for column in ("rel_tail_K", "sigma_ratio_K"):
        table[column] = table["layer_index"] * (1 + 0.001 * table["seed"])
    p = claim_p(table, T)
    assert p["verdict"] == "does not hold"
    assert outcomes(p, across="layers", weight_decay=1e-2) == {"fail", "information only"}
    # λ = 0.1 does not train: its group is listed, with too few points, and decides nothing.
    assert outcomes(p, across="layers", weight_decay=0.1, measure="rel_tail_K") == {
        "too few points",
        "information only",  # the tcv_relative row beside it
    }
    # Each row names the variability it is judged on, so the information row is told apart.
    rows = [d for d in p["details"] if d["across"] == "layers" and d["weight_decay"] == 1e-2]
    assert {(d["variability"], d["outcome"]) for d in rows} == {
        ("ss_ratio", "fail"),
        ("tcv_relative", "information only"),
    }


def test_single_lambda_studies_are_not_judged_on_trends():
    table = layer_table(wds=(1e-3,))
    for claim in (claim_c1, claim_c2, claim_c4):
        assert claim(table, T)["verdict"] == "not run"


def test_diverged_runs_are_left_out_and_listed():
    table = layer_table()
    bad = table[(table["weight_decay"] == 1e-2) & (table["seed"] == 0)].copy()
    bad["seed"], bad["status"], bad["reason"] = 7, "diverged", "non-finite loss in sgd 3"
    bad["rel_tail_K"] = bad["bound_holds"] = bad["ss_ratio"] = math.nan
    content = evaluate_claims(pd.concat([table, bad], ignore_index=True), T)
    assert all(c["verdict"] == "holds" for c in content["claims"] if c["id"] != "C5")
    assert all(
        c["left_out"] == ["s/real λ=0.01 seed 7: diverged (non-finite loss in sgd 3)"]
        for c in content["claims"]
    )


def test_findings_report_the_nc1_trend_and_the_class_means_rank():
    table = layer_table()
    table["nc1"] = table["weight_decay"]  # NC1 rises while ss_ratio falls
    found = evaluate_claims(table, T)["findings"]
    layer3 = next(f for f in found if f["layer"] == "layer3")
    assert layer3["rho_nc1"] == pytest.approx(1.0)
    assert layer3["rho_ss_ratio"] == pytest.approx(-1.0)
    assert (layer3["K-1"], layer3["means_rank_largest_lambda"]) == (2, 2.0)


def test_report_is_strict_json_and_markdown_with_n_and_intervals(tmp_path):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    content = evaluate_claims(both(), T)
    md, js = tmp_path / "out" / "claims.md", tmp_path / "out" / "claims.json"
    write_report(content, T, md, js)
    payload = json.loads(js.read_text(), parse_constant=no_constants)
    assert payload["thresholds"] == T
    assert [c["id"] for c in payload["claims"]] == ["C1", "C2", "C3a", "C3b", "C4", "C5", "P"]
    for row in (d for c in payload["claims"] for d in c["details"]):
        assert not any(isinstance(v, np.generic) for v in row.values())
    text = md.read_text()
    assert text.startswith("# Claims")
    for c in payload["claims"]:
        assert f"## {c['id']}: {c['verdict']}" in text
        assert f"Rule: {c['rule']}" in text
    summary = text.split("## Summary")[1].split("## C1")[0]
    assert "| C1 | **holds** |" in summary and "[" in summary
    assert render_markdown(content, T) == text
