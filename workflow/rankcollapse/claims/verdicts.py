"""Typed verdicts: what a claim concludes and what each group or run it counts shows.

A claim's verdict is decided from the outcomes of its checks, never from their wording: each
check carries an :class:`Outcome` and a note for the report. Statuses (docs/science.md §7):
a claim *holds* when every group it tests passes its decision rule, *does not hold* when one
group shows the opposite at the significance level, is *inconclusive* when neither (too few
points or certified runs, or an interval across the line), *not testable at this scale* when
it speaks of data or models this pipeline cannot reach, and *not run* when nothing was tested.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from .statistics import t_interval

MIN_RUNS = 2  # fewest runs a t-interval is computed from (mean_check)


class Verdict(enum.StrEnum):
    """A claim's conclusion, as written in the report."""

    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold"
    INCONCLUSIVE = "inconclusive"
    NOT_TESTABLE = "not testable at this scale"
    NOT_RUN = "not run"


class Kind(enum.StrEnum):
    """What a claim's verdict is worth: evidence about a paper, or a check of our code."""

    EVIDENCE = "evidence"
    CHECK = "check of the implementation"  # can only fail through a bug


class Outcome(enum.Enum):
    """What one group (a layer's trend, a study's ratio, a run) shows for its claim."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # tested, but neither rule is met
    TOO_FEW = "too few points"  # too few counted runs to reach the significance level
    NOT_APPLICABLE = "not applicable"  # the claim says nothing about it
    CONTROL = "control"  # reported beside the claim to show what it predicts, never scored
    INFORMATION = "information only"  # reported beside the claim, never decides it


@dataclass(frozen=True)
class Check:
    """One group's outcome and the note the report shows for it."""

    outcome: Outcome
    note: str

    @property
    def counted(self) -> bool:
        return self.outcome in (Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE)


def verdict_of(checks: list[Check]) -> Verdict:
    """Decided on the groups that could be tested: does not hold if one fails, holds if all
    pass, else inconclusive; inconclusive too when every group had too few points, and not
    run when there was no group.
    """
    counted = [c.outcome for c in checks if c.counted]
    if not counted:
        too_few = any(c.outcome is Outcome.TOO_FEW for c in checks)
        return Verdict.INCONCLUSIVE if too_few else Verdict.NOT_RUN
    if Outcome.FAIL in counted:
        return Verdict.DOES_NOT_HOLD
    if all(o is Outcome.PASS for o in counted):
        return Verdict.HOLDS
    return Verdict.INCONCLUSIVE


def tally(checks: list[Check], unit: str = "groups") -> str:
    """E.g. "5 pass, 0 fail, 1 inconclusive of 6 groups tested; 2 with too few points"."""
    outcomes = [c.outcome for c in checks]
    n = {o: outcomes.count(o) for o in Outcome}
    tested = n[Outcome.PASS] + n[Outcome.FAIL] + n[Outcome.INCONCLUSIVE]
    text = (
        f"{n[Outcome.PASS]} pass, {n[Outcome.FAIL]} fail, {n[Outcome.INCONCLUSIVE]} "
        f"inconclusive of {tested} {unit} tested"
    )
    return text + (f"; {n[Outcome.TOO_FEW]} with too few points" if n[Outcome.TOO_FEW] else "")


def against_line(value: float, low: float, high: float, line: float, want: str, what: str) -> Check:
    """A statistic with its interval against a decision line: pass when the whole interval is
    on the claimed side (``want`` "<" or ">"), fail when it is wholly on the other side,
    inconclusive when it straddles the line or is undefined.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return Check(Outcome.INCONCLUSIVE, f"inconclusive: no interval for {what}")
    below, above = high < line, low > line
    if (want == "<" and below) or (want == ">" and above):
        return Check(Outcome.PASS, f"{what} {want} {line:g} (whole interval)")
    if (want == "<" and above) or (want == ">" and below):
        return Check(Outcome.FAIL, f"fails: {what} {'>' if want == '<' else '<'} {line:g}")
    return Check(Outcome.INCONCLUSIVE, f"inconclusive: interval of {what} straddles {line:g}")


def mean_check(values, line: float, want: str, what: str) -> tuple[float, float, float, Check]:
    """(mean, low, high, check): the mean of ``values`` (one per run) with its t-interval
    across runs, judged against ``line`` by :func:`against_line`; too few points with fewer
    than MIN_RUNS finite values (no interval), which does not decide the claim.
    """
    mean, low, high = t_interval(values)
    n = int(np.isfinite(np.asarray(values, dtype=float)).sum())
    if n < MIN_RUNS:
        note = f"too few points: {n} run(s), an interval needs {MIN_RUNS}"
        return mean, low, high, Check(Outcome.TOO_FEW, note)
    return mean, low, high, against_line(mean, low, high, line, want, what)


def trend_check(trend, want: str, alpha: float, what: str) -> Check:
    """A :class:`~.statistics.Trend` against its claimed sign (``want`` "<" or ">"): pass when
    the one-sided permutation p in the claimed direction is ≤ α and the interval across
    replicates (if there are ≥ 2) lies wholly on the claimed side of 0; fail when the same
    holds in the opposite direction; too few points when no p ≤ α is attainable; otherwise
    inconclusive, saying why.
    """
    if trend.replicates == 0:
        return Check(Outcome.TOO_FEW, "too few points: no replicate with 2 distinct x values")
    if trend.min_p > alpha:
        return Check(
            Outcome.TOO_FEW,
            f"too few points: {trend.n} can give p ≥ {trend.min_p:.2g} only (α = {alpha:g})",
        )
    opposite = ">" if want == "<" else "<"
    for sign, outcome, label in ((want, Outcome.PASS, ""), (opposite, Outcome.FAIL, "fails: ")):
        interval_side = trend.high < 0 if sign == "<" else trend.low > 0
        if trend.p(sign) <= alpha and (not math.isfinite(trend.low) or interval_side):
            return Check(outcome, f"{label}{what} {sign} 0, p = {trend.p(sign):.2g}")
    if trend.p(want) <= alpha or trend.p(opposite) <= alpha:
        return Check(Outcome.INCONCLUSIVE, "inconclusive: the replicates' interval straddles 0")
    return Check(Outcome.INCONCLUSIVE, f"inconclusive: p = {trend.p(want):.2g} > α = {alpha:g}")


@dataclass
class Claim:
    """One claim's record: its statement, pre-registered rule, verdict, the headline statistic
    with its interval and n, and the detail rows it rests on (each a dict; a ``result`` entry
    is the row's :class:`Check`; counted rows carry ``value``, ``low``, ``high``).

    ``value``/``low``/``high`` are the deciding group's (the failing one, else the weakest);
    ``line`` is the decision line they are read against; ``n`` is the runs counted.
    """

    id: str
    statement: str
    rule: str
    verdict: Verdict
    statistic: str
    details: list[dict]
    kind: Kind = Kind.EVIDENCE
    n: int | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    line: float | None = None
    measure: str = ""
    left_out: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "statement": self.statement,
            "rule": self.rule,
            "verdict": self.verdict,
            "statistic": self.statistic,
            "n": self.n,
            "measure": self.measure,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "line": self.line,
            "details": [
                {**d, "outcome": d["result"].outcome.value} if "result" in d else d
                for d in self.details
            ],
            "left_out": self.left_out,
        }


def headline(details: list[dict], want: str | None = None) -> dict | None:
    """The counted detail row a claim's summary shows: a failing one if any, else an
    inconclusive one, else a passing one; among those, the weakest support: the one whose
    interval end (its value where there is no interval) lies nearest the wrong side of 0 for a
    claimed side ``want``. Rows with their own ``pass_if`` and ``line`` (the parts of a
    multi-part claim) are read against those instead; as parts on different scales do not
    compare, a failing or inconclusive part is the first one, and a passing part the one
    nearest its line relative to the line (absolutely for a line at 0). Rows without a finite
    value are skipped.
    """
    rows = [
        d
        for d in details
        if d["result"].counted and d.get("value") is not None and math.isfinite(d["value"])
    ]
    for outcome in (Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.PASS):
        candidates = [d for d in rows if d["result"].outcome is outcome]
        if candidates:
            break
    else:
        return None
    if outcome is not Outcome.PASS and any(d.get("pass_if") for d in candidates):
        return candidates[0]

    def margin(d: dict) -> float:
        side, line = (d["pass_if"], d["line"]) if d.get("pass_if") else (want, 0.0)
        end = d["high"] if side == "<" else d["low"]
        end = end if end is not None and math.isfinite(end) else d["value"]
        gap = line - end if side == "<" else end - line
        return gap / abs(line) if line else gap

    return min(candidates, key=margin)
