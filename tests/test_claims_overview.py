"""The claims overview figure draws any claims.json the claims step writes: it reads only the
records' generic fields (docs/science.md §7), so a new claim or a missing interval draws too.
"""

import json
import math

import jupytext
import matplotlib
import pytest
from workflow_runner import REPO

NOTEBOOK = REPO / "notebooks/claims_overview.py"


def detail(value, low, high, outcome, **keys):
    return {
        **keys,
        "value": value,
        "low": low,
        "high": high,
        "outcome": outcome,
        "result": "a note",
    }


def record(claim_id, verdict, details, line=0.0, **fields):
    return {
        "id": claim_id,
        "kind": "evidence",
        "statement": f"the statement of {claim_id}",
        "rule": "its rule",
        "verdict": verdict,
        "statistic": f"the statistic of {claim_id}",
        "n": 9,
        "measure": "mean Spearman ρ(λ, rel_tail_K)",
        "value": None,
        "low": None,
        "high": None,
        "line": line,
        "details": details,
        "left_out": [],
        **fields,
    }


CLAIMS = {
    "thresholds": {"alpha": 0.05},
    "claims": [
        record(
            "C1",
            "inconclusive",
            [
                detail(-0.8, -0.9, -0.7, "pass", layer="layer2"),
                detail(0.3, 0.1, 0.5, "fail", layer="layer3"),
                detail(-0.1, -0.4, 0.2, "inconclusive", layer="layer4"),
                detail(-0.2, None, None, "control", layer="layer1"),
                detail(None, None, None, "inconclusive", layer="layer5"),
                detail(0.5, 0.2, 0.8, "information only", measure="rank_fro"),
            ],
            value=-0.1,
            low=-0.4,
            high=0.2,
        ),
        # positive values over decades: a log axis
        record(
            "C4",
            "holds",
            [detail(1e-4, 5e-5, 2e-4, "pass"), detail(0.01, 0.005, 0.02, "pass")],
            line=0.1,
        ),  # fmt: skip
        record("C3a", "holds", [], kind="check of the implementation", value=0.0),
        # two parts, each read against its own line: one axis each
        record(
            "U3",
            "holds",
            [
                detail(0.1, 0.08, 0.12, "pass", part="(a) layer error", line=0.2),
                detail(0.11, None, None, "too few points", part="(a) layer error", line=0.2),
                detail(0.002, -0.001, 0.005, "pass", part="(b) accuracy drop", line=0.01),
            ],
            line=0.01,
        ),
        record("U6", "not run", [], n=0, line=None, measure=""),
    ],
    "findings": [],
}


def execute(notebook, parameters):
    """Run a figure notebook's cells in order, the parameters set after its parameters cell,
    as papermill would.
    """
    matplotlib.use("Agg")
    namespace = {"__name__": "__main__"}
    for cell in jupytext.read(notebook).cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, str(notebook), "exec"), namespace)
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(parameters)
    return namespace


@pytest.mark.parametrize("claims", [CLAIMS, {"thresholds": {}, "claims": [], "findings": []}])
def test_the_overview_draws_every_claim(tmp_path, claims):
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(claims))
    out = {"pdf": str(tmp_path / "overview.pdf"), "png": str(tmp_path / "overview.png")}
    done = execute(NOTEBOOK, {"claims": str(path), **out})
    assert all((tmp_path / name).stat().st_size > 0 for name in ("overview.pdf", "overview.png"))
    summary = done["summary"]
    assert list(summary.get("id", [])) == [c["id"] for c in claims["claims"]]
    if claims["claims"]:
        by_id = summary.set_index("id")
        c1 = by_id.loc["C1"]
        # counted rows with a value are drawn, the control beside them; the information-only
        # row and the row without a value are not
        assert (c1["pass"], c1["fail"], c1["inconclusive"]) == (1, 1, 2)
        assert (c1["drawn"], c1["beside"], c1["not_drawn"]) == (3, 1, 2)
        assert by_id.loc["U3", "panels"] == 2 and by_id.loc["U3", "beside"] == 1
        assert by_id.loc["U6", "panels"] == 1 and by_id.loc["U6", "drawn"] == 0
        assert math.isnan(by_id.loc["U6", "line"] or math.nan)
