"""Verdicts on claims U1-U6 and UI (paper B) on small synthetic tables whose right verdict is
known: holds, does not hold, inconclusive (one run; an interval across the line), and for each
decision rule a threshold moved across the data that flips the verdict.
"""

import math

import pandas as pd
import pytest
from factories import as_written, claims_defaults
from rankcollapse.claims import evaluate_claims, utilization

claim_u1, claim_u2, claim_u3, claim_u4, claim_u5, claim_ui, claim_u6 = map(
    as_written, [*utilization.CLAIMS, utilization.claim_u6]
)
T = {**claims_defaults(), "utilization_energy": 0.99}
WDS = (0.0, 1e-4, 1e-3, 1e-2)  # λ ≤ 1e-4 are the reference runs
SEEDS = (0, 1, 2)
N_TEST = 10_000


def by_seed(value, seed, spread):
    """``value`` (a number, or a function of λ) moved by ``spread`` × (seed − 1)."""
    return value + spread * (seed - 1)


def utilization_table(
    mlu=(0.3, 0.25, 0.15, 0.1),
    svd=0.9,
    init_mlu=0.7,
    init_svd=0.88,
    error=0.1,
    acc_drop=0.002,
    spread=0.01,
    wds=WDS,
    seeds=SEEDS,
    study="s",
    kind="linear",
    test_samples=N_TEST,
) -> pd.DataFrame:
    """Two layers per run at e = 0.9 and 0.99 with the run's MLU ``mlu`` (one per λ), its
    plain-SVD MLU, layer errors (the largest ``error``) and accuracy drop; each moved by
    ``spread`` × (seed − 1), so that the seeds give an interval. The untrained baseline depends
    on the seed only.
    """
    rows = []
    for wd, u in zip(wds, mlu, strict=True):
        for seed in seeds:
            for energy in (0.9, 0.99):
                for layer, share in (("layer1", 1.0), ("layer2", 0.5)):
                    rows.append(
                        {
                            "study": study,
                            "dataset": "d",
                            "weight_decay": wd,
                            "seed": seed,
                            "status": "finished",
                            "reason": "",
                            "layer": layer,
                            "kind": kind,
                            "energy": energy,
                            "utilization": by_seed(u, seed, spread),
                            "svd_utilization": by_seed(svd, seed, spread),
                            "init_utilization": by_seed(init_mlu, seed, spread),
                            "init_svd_utilization": by_seed(init_svd, seed, spread),
                            "rel_output_error": share * by_seed(error, seed, spread),
                            "network_rel_error": 0.1,
                            "network_test_acc": 0.98 - by_seed(acc_drop, seed, spread / 10),
                            "test_acc": 0.98,
                            "test_samples": test_samples,
                        }
                    )
    return pd.DataFrame(rows)


def compression_table(
    dd_after=0.979,
    svd_after=0.975,
    dd_before=0.97,
    svd_before=0.9,
    factorized=2,
    spread=0.001,
    wds=WDS,
    seeds=SEEDS,
    study="s",
) -> pd.DataFrame:
    """Compression at e = 0.99 of every run; the data-driven accuracies move with the seed."""
    rows = []
    for wd in wds:
        for seed in seeds:
            for method, before, after in (
                ("data_driven", by_seed(dd_before, seed, spread), by_seed(dd_after, seed, spread)),
                ("svd", svd_before, svd_after),
            ):
                for stage, acc in (("before", before), ("after", after)):
                    rows.append(
                        {
                            "study": study,
                            "dataset": "d",
                            "weight_decay": wd,
                            "seed": seed,
                            "status": "finished",
                            "reason": "",
                            "energy": 0.99,
                            "selection": "fixed",
                            "method": method,
                            "stage": stage,
                            "test_acc": acc,
                            "original_test_acc": 0.98,
                            "param_fraction": 0.3,
                            "layers_factorized": factorized,
                        }
                    )
    return pd.DataFrame(rows)


def one_run(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["weight_decay"] == 0) & (table["seed"] == 0)]


def rows_of(claim: dict, networks: str = "trained") -> list[dict]:
    return [d for d in claim["details"] if d.get("networks", "trained") == networks]


def with_thresholds(**changes) -> dict:
    return {**T, **changes}


# ------------------------------------------------------------------------------------- U1
def test_u1_holds_on_full_looking_weights_and_says_the_baseline_passes_too():
    u1 = claim_u1(utilization_table(), None, T)
    assert u1["verdict"] == "holds"
    (trained,) = rows_of(u1)
    # reference runs: λ = 0 and 1e-4, three seeds each
    assert trained["n"] == 6 and u1["n"] == 6
    assert trained["low"] < 0.9 < trained["high"] and trained["low"] > 0.5
    assert "nearly automatic" in trained["result"]
    (untrained,) = rows_of(u1, "untrained (initial weights)")
    # the baseline's replicates are the distinct initial networks: one per seed
    assert untrained["outcome"] == "control" and untrained["n"] == 3
    assert math.isclose(untrained["value"], 0.88)
    assert u1["value"] == trained["value"] and u1["line"] == 0.5
    assert "n = 6 of 6 reference runs" in u1["statistic"]


def test_u1_baseline_is_never_scored():
    u1 = claim_u1(utilization_table(init_svd=0.2), None, T)
    assert u1["verdict"] == "holds"
    assert "nearly automatic" not in rows_of(u1)[0]["result"]


def test_u1_fails_when_plain_svd_already_sees_low_rank():
    assert claim_u1(utilization_table(svd=0.3), None, T)["verdict"] == "does not hold"


def test_u1_threshold_moved_across_the_data_flips_the_verdict():
    table = utilization_table(svd=0.6)
    assert claim_u1(table, None, with_thresholds(u1_min_svd_utilization=0.5))["verdict"] == (
        "holds"
    )
    assert claim_u1(table, None, with_thresholds(u1_min_svd_utilization=0.7))["verdict"] == (
        "does not hold"
    )


def test_u1_is_inconclusive_on_one_run_or_an_interval_across_the_line():
    u1 = claim_u1(one_run(utilization_table()), None, T)
    assert u1["verdict"] == "inconclusive"
    assert rows_of(u1)[0]["outcome"] == "too few points"
    straddling = utilization_table(svd=0.5, spread=0.2)
    u1 = claim_u1(straddling, None, T)
    assert u1["verdict"] == "inconclusive" and "straddles" in rows_of(u1)[0]["result"]


def test_u1_counts_reference_runs_only_and_is_not_run_without_them():
    # λ ≥ 1e-3 have plain-SVD MLU far below the line; they do not count
    table = utilization_table()
    table.loc[table["weight_decay"] >= 1e-3, "svd_utilization"] = 0.1
    assert claim_u1(table, None, T)["verdict"] == "holds"
    late = table[table["weight_decay"] >= 1e-3]
    assert claim_u1(late, None, T)["verdict"] == "not run"


def test_u1_groups_per_study():
    table = pd.concat([utilization_table(), utilization_table(svd=0.3, study="t")])
    u1 = claim_u1(table, None, T)
    assert u1["verdict"] == "does not hold"
    assert [d["study"] for d in rows_of(u1)] == ["s", "t"]
    assert u1["value"] == pytest.approx(0.3, abs=0.02)  # the failing study is the headline


def test_u1_a_study_with_one_run_does_not_decide():
    single = one_run(utilization_table(svd=0.3, study="t"))  # would fail with an interval
    u1 = claim_u1(pd.concat([utilization_table(), single]), None, T)
    assert u1["verdict"] == "holds"
    assert [d["outcome"] for d in rows_of(u1)] == ["pass", "too few points"]
    assert u1["n"] == 6  # the runs of the studies tested


def test_u1_without_baseline_columns_reports_no_baseline():
    table = utilization_table().drop(columns=["init_utilization", "init_svd_utilization"])
    u1 = claim_u1(table, None, T)
    assert u1["verdict"] == "holds"
    assert rows_of(u1, "untrained (initial weights)")[0]["value"] is None


# ------------------------------------------------------------------------------------- U2
def test_u2_holds_when_utilization_is_much_lower_than_plain_svd():
    u2 = claim_u2(utilization_table(), None, T)
    assert u2["verdict"] == "holds"
    (trained,) = rows_of(u2)
    assert trained["value"] == pytest.approx(0.275 / 0.9, rel=0.01)
    assert trained["high"] < 0.5
    (untrained,) = rows_of(u2, "untrained (initial weights)")
    assert untrained["value"] == pytest.approx(0.7 / 0.88, rel=0.01)
    assert untrained["outcome"] == "control"
    assert "untrained 70.0%, 88.0%" in u2["statistic"]


def test_u2_fails_when_plain_svd_already_sees_low_rank():
    assert claim_u2(utilization_table(svd=0.4), None, T)["verdict"] == "does not hold"


def test_u2_threshold_moved_across_the_data_flips_the_verdict():
    table = utilization_table()  # ratio ≈ 0.31
    assert claim_u2(table, None, with_thresholds(u2_max_mlu_ratio=0.5))["verdict"] == "holds"
    assert claim_u2(table, None, with_thresholds(u2_max_mlu_ratio=0.2))["verdict"] == (
        "does not hold"
    )


def test_u2_is_inconclusive_on_one_run_or_an_interval_across_the_line():
    assert claim_u2(one_run(utilization_table()), None, T)["verdict"] == "inconclusive"
    straddling = utilization_table(mlu=(0.45, 0.45, 0.1, 0.1), spread=0.1)
    assert claim_u2(straddling, None, T)["verdict"] == "inconclusive"


# ------------------------------------------------------------------------------------- U3
def test_u3_holds_when_errors_and_the_accuracy_drop_are_small():
    u3 = claim_u3(utilization_table(error=0.15), None, T)
    assert u3["verdict"] == "holds"
    parts = [d["part"] for d in u3["details"]]
    assert parts == ["(a) largest layer output error", "(b) projected network's accuracy drop"]
    # the largest layer error of a run is layer1's; the drop also in test images
    assert u3["details"][0]["value"] == pytest.approx(0.15)
    assert u3["details"][1]["test_images"].endswith(f"of {N_TEST}")


def test_u3_fails_on_large_layer_errors_or_a_large_accuracy_drop():
    assert claim_u3(utilization_table(error=0.25), None, T)["verdict"] == "does not hold"
    assert claim_u3(utilization_table(acc_drop=0.05), None, T)["verdict"] == "does not hold"


def test_u3_thresholds_moved_across_the_data_flip_the_verdict():
    errors = utilization_table(error=0.25)  # 2·√(1 − 0.99) = 0.2 < 0.25 < 3·√(1 − 0.99)
    assert claim_u3(errors, None, with_thresholds(u3_error_factor=3.0))["verdict"] == "holds"
    drops = utilization_table(acc_drop=0.05)
    assert claim_u3(drops, None, with_thresholds(u3_max_acc_drop=0.1))["verdict"] == "holds"
    assert claim_u3(utilization_table(), None, with_thresholds(u3_max_acc_drop=0.001))[
        "verdict"
    ] == ("does not hold")


def test_u3_is_inconclusive_on_one_run_or_an_interval_across_the_line():
    assert claim_u3(one_run(utilization_table()), None, T)["verdict"] == "inconclusive"
    straddling = utilization_table(acc_drop=0.01, spread=0.1)  # drop 0.01 ± 0.01 by seed
    u3 = claim_u3(straddling, None, T)
    assert u3["verdict"] == "inconclusive"
    assert [d["outcome"] for d in u3["details"]] == ["pass", "inconclusive"]


# ------------------------------------------------------------------------------------- U4
def test_u4_holds_with_a_small_drop_and_better_than_plain_svd():
    u4 = claim_u4(utilization_table(), compression_table(), T)
    assert u4["verdict"] == "holds"
    assert [d["outcome"] for d in u4["details"]] == ["pass", "pass", "pass"]
    assert u4["n"] == 6 and all(d["param_fraction"] == pytest.approx(0.3) for d in u4["details"])
    # differences in test images: +40 images after fine-tuning of 10 000
    after = u4["details"][2]
    assert after["test_images"].startswith("+40.0 [") and after["test_images"].endswith("10000")
    assert "test images" in u4["statistic"]


def test_u4_states_accuracy_only_without_the_test_set_size():
    u4 = claim_u4(None, compression_table(), T)
    assert u4["verdict"] == "holds" and "accuracy only" in u4["statistic"]


def test_u4_fails_on_a_large_drop_or_below_plain_svd():
    assert claim_u4(None, compression_table(dd_after=0.95), T)["verdict"] == "does not hold"
    below = claim_u4(None, compression_table(dd_before=0.8), T)
    assert below["verdict"] == "does not hold"
    assert [d["outcome"] for d in below["details"]] == ["pass", "fail", "pass"]


def test_u4_threshold_moved_across_the_data_flips_the_verdict():
    table = compression_table(dd_after=0.975, svd_after=0.97)  # drop 0.005 ± 0.001
    assert claim_u4(None, table, with_thresholds(u4_max_acc_drop=0.01))["verdict"] == "holds"
    assert claim_u4(None, table, with_thresholds(u4_max_acc_drop=0.002))["verdict"] == (
        "does not hold"
    )


def test_u4_is_inconclusive_on_a_tie_one_run_or_an_interval_across_zero():
    # a tie with plain SVD is no evidence that the data-driven factors are better
    tie = claim_u4(None, compression_table(dd_after=0.975, spread=0.0), T)
    assert tie["verdict"] == "inconclusive"
    single = claim_u4(None, one_run(compression_table()), T)
    assert single["verdict"] == "inconclusive" and single["n"] == 0
    assert "(no interval)" in single["statistic"]
    across = claim_u4(None, compression_table(svd_after=0.979, spread=0.002), T)
    assert across["verdict"] == "inconclusive"
    assert across["details"][2]["outcome"] == "inconclusive"


def test_u4_not_run_without_a_factorized_layer_or_compression():
    none_saved = claim_u4(None, compression_table(factorized=0), T)
    assert none_saved["verdict"] == "not run"
    assert none_saved["details"][0]["outcome"] == "not applicable"
    assert claim_u4(None, pd.DataFrame(), T)["verdict"] == "not run"


# ------------------------------------------------------------------------------------- U5
def test_u5_holds_when_mlu_falls_with_lambda():
    u5 = claim_u5(utilization_table(), None, T)
    assert u5["verdict"] == "holds"
    (row,) = u5["details"]
    assert row["value"] == pytest.approx(-1.0) and row["p"] < 0.05 and row["seeds"] == 3
    assert row["high"] == pytest.approx(-1.0)
    assert u5["n"] == 12 and u5["line"] == 0.0


def test_u5_fails_when_mlu_rises_with_lambda():
    u5 = claim_u5(utilization_table(mlu=(0.1, 0.2, 0.3, 0.4)), None, T)
    assert u5["verdict"] == "does not hold"
    assert math.isclose(u5["details"][0]["value"], 1.0)


def test_u5_alpha_moved_across_the_data_flips_the_verdict():
    # one seed and four λ: the smallest permutation p-value is 1/4! ≈ 0.042
    table = utilization_table(seeds=(0,))
    assert claim_u5(table, None, with_thresholds(alpha=0.05))["verdict"] == "holds"
    u5 = claim_u5(table, None, with_thresholds(alpha=0.01))
    assert u5["verdict"] == "inconclusive" and "can give p" in u5["details"][0]["result"]


def test_u5_reports_the_plain_svd_trend_for_information_only():
    table = utilization_table()
    table["svd_utilization"] = table["weight_decay"] + 0.5  # rises with λ
    u5 = claim_u5(table, None, T)
    assert u5["verdict"] == "holds" and u5["details"][0]["svd_rho"] == pytest.approx(1.0)


def test_u5_a_single_lambda_is_not_a_sweep():
    single = utilization_table(mlu=(0.3,), wds=(1e-4,), study="v")
    u5 = claim_u5(single, None, T)
    assert u5["verdict"] == "not run"
    assert u5["details"][0]["outcome"] == "not applicable"
    both = claim_u5(pd.concat([utilization_table(), single]), None, T)
    assert both["verdict"] == "holds"


# ------------------------------------------------------------------------------- UI and U6
def test_ui_is_not_testable_and_quotes_our_vit_beside():
    vit = utilization_table(mlu=(0.35,), wds=(1e-4,), study="vit", kind="qkv")
    ui = claim_ui(pd.concat([utilization_table(), vit]), compression_table(study="vit"), T)
    assert ui["verdict"] == "not testable at this scale"
    (row,) = ui["details"]
    assert row["study"] == "vit" and row["value"] == pytest.approx(0.35)
    assert row["param_fraction"] == pytest.approx(0.3) and row["outcome"] == "information only"
    assert "35%" in ui["statement"] and "ViT-L/16" in ui["statement"]
    alone = claim_ui(utilization_table(), compression_table(), T)
    assert alone["verdict"] == "not testable at this scale" and alone["details"] == []


def pretraining_tables(
    ssl_mlu, supervised_mlu=0.3, seeds=SEEDS, spread=0.01, supervised_spread=0.01
):
    """Utilization tables of a self-supervised study "ssl" (MLU ``ssl_mlu``, moved by
    ``spread`` × (seed − 1)) and the supervised study "s" it is compared with
    (``supervised_mlu``, moved by ``supervised_spread`` × (seed − 1)), one λ, run for run.
    """
    args = {"wds": (1e-4,), "seeds": seeds, "kind": "qkv"}
    ssl = utilization_table(mlu=(ssl_mlu,), study="ssl", spread=spread, **args).assign(
        objective="simclr", test_acc=0.8, finetune_test_acc=0.95
    )
    supervised = utilization_table(
        mlu=(supervised_mlu,), study="s", spread=supervised_spread, **args
    )
    return pd.concat([ssl, supervised.assign(objective="supervised")], ignore_index=True)


U6 = {**T, "u6_pairs": {"ssl": "s"}}


@pytest.mark.parametrize(
    ("ssl_mlu", "spread", "verdict", "outcome"),
    [
        (0.5, 0.01, "holds", "pass"),
        (0.2, 0.01, "does not hold", "fail"),
        # Paired differences −0.035, 0.005, 0.045: an interval across 0.
        (0.305, 0.05, "inconclusive", "inconclusive"),
    ],
)
def test_u6_compares_pretrained_with_supervised_seed_for_seed(ssl_mlu, spread, verdict, outcome):
    u6 = claim_u6(pretraining_tables(ssl_mlu, spread=spread), compression_table(), U6)
    assert u6["verdict"] == verdict
    (row,) = u6["details"]
    assert row["outcome"] == outcome and row["n"] == 3
    assert row["value"] == pytest.approx(ssl_mlu - 0.3)
    assert row["mlu_pretrained"] == pytest.approx(ssl_mlu)
    assert row["mlu_untrained"] == pytest.approx(0.7)
    assert row["above_untrained"] == pytest.approx(ssl_mlu - 0.7)
    assert row["probe_test_acc"] == pytest.approx(0.8)
    assert row["finetune_test_acc"] == pytest.approx(0.95)
    assert row["supervised_test_acc"] == pytest.approx(0.98)
    assert "70%" in u6["statistic"] and "not testable at this scale" in u6["statistic"].lower()


def test_u6_pairs_runs_by_seed_and_needs_two_pairs():
    # Seed 0's pre-trained run is below its supervised twin (0.29, 0.30, 0.31), seeds 1, 2
    # above: paired differences −0.04, +0.15, +0.14.
    tables = pretraining_tables(0.35, spread=0.0)
    ssl_seed0 = (tables["study"] == "ssl") & (tables["seed"] == 0)
    tables.loc[ssl_seed0, "utilization"] = 0.25
    tables.loc[(tables["study"] == "ssl") & ~ssl_seed0, "utilization"] = 0.45
    u6 = claim_u6(tables, compression_table(), U6)
    (row,) = u6["details"]
    assert row["value"] == pytest.approx((-0.04 + 0.15 + 0.14) / 3)
    assert row["outcome"] == "inconclusive"
    one = claim_u6(pretraining_tables(0.5, seeds=(0,)), compression_table(), U6)
    assert one["verdict"] == "inconclusive" and one["details"][0]["outcome"] == "too few points"


def test_u6_decides_on_pairs_where_unpaired_means_could_not():
    # Seeds move both studies by ±0.1, the pre-trained run always 0.01 above its twin: the
    # two studies' MLU intervals overlap almost wholly, the paired differences do not vary.
    tables = pretraining_tables(0.31, spread=0.1, supervised_spread=0.1)
    u6 = claim_u6(tables, compression_table(), U6)
    (row,) = u6["details"]
    assert row["mlu_pretrained_low"] < row["mlu_supervised_high"]
    assert row["mlu_supervised_low"] < row["mlu_pretrained_high"]
    assert u6["verdict"] == "holds" and row["value"] == pytest.approx(0.01)


def test_u6_is_not_run_without_a_pretrained_study():
    u6 = claim_u6(utilization_table(), compression_table(), T)
    assert u6["verdict"] == "not run" and "compare_with" in u6["statistic"]


def test_pretrained_runs_enter_u6_only():
    plain = evaluate_claims(layers_table(), U6, utilization_table(), compression_table())
    mixed = pd.concat([utilization_table(), pretraining_tables(0.01, supervised_mlu=0.25)])
    mixed["objective"] = mixed["objective"].fillna("supervised")
    # The supervised twin "s" is another copy of study "s"'s reference runs, so only the
    # pre-trained rows, whose MLU is far lower, could change U1-U5.
    mixed = mixed[~((mixed["study"] == "s") & mixed["kind"].eq("qkv"))]
    both = evaluate_claims(layers_table(), U6, mixed, compression_table())
    for before, after in zip(plain["claims"][-7:-1], both["claims"][-7:-1], strict=True):
        assert before["verdict"] == after["verdict"] and before["n"] == after["n"]
    assert both["claims"][-1]["id"] == "U6"


def test_every_claim_has_a_rule_and_n_in_its_statistic():
    claims = [
        c(utilization_table(), compression_table(), T)
        for c in [*utilization.CLAIMS, utilization.claim_u6]
    ]
    assert [c.id for c in claims] == ["U1", "U2", "U3", "U4", "U5", "UI", "U6"]
    for c in claims[:5]:
        assert c.rule and "n = " in c.statistic and c.n > 0
    for c in claims[:4]:
        assert "whether or not certified" in c.rule


# ------------------------------------------------------------------------------- the report
def layers_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "study": ["s"],
            "dataset": ["d"],
            "weight_decay": [0.0],
            "seed": [0],
            "status": ["finished"],
            "reason": [""],
            "layer": ["layer1"],
            "layer_index": [1],
            "d_in": [5],
            "d_out": [5],
            "classes": [3],
            "dataset_std": [math.nan],
            "rank_fro": [3],
            "tail_K": [0.1],
            "rel_tail_K": [0.1],
            "sigma_ratio_K": [0.1],
            "ss_ratio": [0.5],
            "tcv": [1.0],
            "tcv_relative": [0.1],
            "nc1": [0.1],
            "cdnv": [0.1],
            "means_rank": [2],
            "tcv_over_wd": [math.nan],
            "bound_holds": [None],
            "bound": [math.nan],
            "train_acc": [1.0],
            "stationary": [False],
            "certified_rel_residual": [math.nan],
            "stop_reason": [""],
        }
    )


def test_u_claims_follow_c_claims_only_with_a_utilization_table():
    ids = [c["id"] for c in evaluate_claims(layers_table(), T)["claims"]]
    assert ids and not any(i.startswith("U") for i in ids)
    claims = evaluate_claims(layers_table(), T, utilization_table(), compression_table())
    ids = [c["id"] for c in claims["claims"]]
    assert ids[-7:] == ["U1", "U2", "U3", "U4", "U5", "UI", "U6"]
