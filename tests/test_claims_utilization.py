"""Verdicts on claims U1-U5 (paper B) on small synthetic tables, in both directions."""

import math

import pandas as pd
from factories import as_written, claims_defaults
from rankcollapse.claims import evaluate_claims, utilization

claim_u1, claim_u2, claim_u3, claim_u4, claim_u5 = map(as_written, utilization.CLAIMS)
T = {**claims_defaults(), "utilization_energy": 0.99}
WDS = (0.0, 1e-4, 1e-3, 1e-2)


def utilization_table(mlu=(0.3, 0.25, 0.15, 0.1), svd=0.9, error=0.1, acc_drop=0.002):
    """Two layers per run at e = 0.9 and 0.99; utilization falls with λ as ``mlu`` says."""
    rows = []
    for wd, u in zip(WDS, mlu, strict=True):
        for energy in (0.9, 0.99):
            for layer in ("layer1", "layer2"):
                rows.append(
                    {
                        "study": "s",
                        "dataset": "d",
                        "weight_decay": wd,
                        "seed": 0,
                        "status": "finished",
                        "reason": "",
                        "layer": layer,
                        "energy": energy,
                        "utilization": u,
                        "svd_utilization": svd,
                        "rel_output_error": error,
                        "network_rel_error": 0.1,
                        "network_test_acc": 0.98 - acc_drop,
                        "test_acc": 0.98,
                    }
                )
    return pd.DataFrame(rows)


def compression_table(dd_after=0.979, svd_before=0.9, dd_before=0.97, factorized=2):
    rows = []
    for wd in WDS:
        for method, before, after in (
            ("data_driven", dd_before, dd_after),
            ("svd", svd_before, 0.975),
        ):
            for stage, acc in (("before", before), ("after", after)):
                rows.append(
                    {
                        "study": "s",
                        "dataset": "d",
                        "weight_decay": wd,
                        "seed": 0,
                        "status": "finished",
                        "reason": "",
                        "energy": 0.99,
                        "method": method,
                        "stage": stage,
                        "test_acc": acc,
                        "original_test_acc": 0.98,
                        "param_fraction": 0.3,
                        "layers_factorized": factorized,
                    }
                )
    return pd.DataFrame(rows)


def test_u1_and_u2_on_full_looking_weights_with_low_utilization():
    table = utilization_table()
    assert claim_u1(table, None, T)["verdict"] == "holds"
    u2 = claim_u2(table, None, T)
    assert u2["verdict"] == "holds"
    # reference runs: λ = 0 and 1e-4 only
    assert len(u2["details"]) == 2
    assert "s 27.5% (90.0%)" in u2["statistic"]


def test_u1_and_u2_fail_when_plain_svd_already_sees_low_rank():
    table = utilization_table(svd=0.4)
    assert claim_u1(table, None, T)["verdict"] == "does not hold"
    assert claim_u2(table, None, T)["verdict"] == "does not hold"  # 0.3 / 0.4 > 0.5


def test_u3_checks_layer_errors_against_the_energy_and_the_network_accuracy():
    assert claim_u3(utilization_table(error=0.15), None, T)["verdict"] == "holds"  # ≤ 0.2
    assert claim_u3(utilization_table(error=0.25), None, T)["verdict"] == "does not hold"
    assert claim_u3(utilization_table(acc_drop=0.05), None, T)["verdict"] == "does not hold"


def test_u4_needs_a_small_drop_and_to_beat_plain_svd():
    u4 = claim_u4(None, compression_table(), T)
    assert u4["verdict"] == "holds" and "parameters kept 0.3 to 0.3" in u4["statistic"]
    assert claim_u4(None, compression_table(dd_after=0.95), T)["verdict"] == "does not hold"
    assert claim_u4(None, compression_table(dd_before=0.8), T)["verdict"] == "does not hold"
    assert claim_u4(None, compression_table(factorized=0), T)["verdict"] == "not run"
    assert claim_u4(None, pd.DataFrame(), T)["verdict"] == "not run"


def test_u5_sign_of_the_trend_in_lambda():
    assert claim_u5(utilization_table(), None, T)["verdict"] == "holds"
    rising = utilization_table(mlu=(0.1, 0.2, 0.3, 0.4))
    u5 = claim_u5(rising, None, T)
    assert u5["verdict"] == "does not hold"
    assert math.isclose(u5["details"][0]["rho"], 1.0)


def test_u_claims_follow_c_claims_only_with_a_utilization_table():
    layers = pd.DataFrame(
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
            "ss_ratio": [0.5],
            "tcv": [1.0],
            "tcv_over_wd": [math.nan],
            "bound_holds": [None],
            "bound": [math.nan],
            "train_acc": [1.0],
        }
    )
    ids = [c["id"] for c in evaluate_claims(layers, T)]
    assert ids == ["C1", "C2", "C3", "C4", "C5"]
    claims = evaluate_claims(layers, T, utilization_table(), compression_table())
    assert [c["id"] for c in claims][5:] == ["U1", "U2", "U3", "U4", "U5"]
