"""Typed verdicts: what a claim concludes and what each group or run it counts shows.

A claim's verdict is decided from the outcomes of its checks, never from their wording: each
check carries an :class:`Outcome` and a note for the report.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class Verdict(enum.StrEnum):
    """A claim's conclusion, as written in the report."""

    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold"
    NOT_RUN = "not run"


class Outcome(enum.Enum):
    """What one group (a layer's trend, a study's slope, a run) shows for its claim."""

    PASS = "pass"
    FAIL = "fail"
    NOT_COUNTED = "not counted"  # too few λ values, points or spreads
    NOT_APPLICABLE = "not applicable"  # the claim says nothing about it
    INFORMATION = "information only"  # reported beside the claim, never decides it


@dataclass(frozen=True)
class Check:
    """One group's outcome and the note the report shows for it."""

    outcome: Outcome
    note: str

    @property
    def counted(self) -> bool:
        return self.outcome in (Outcome.PASS, Outcome.FAIL)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS


def passes(ok: bool, note_pass: str, note_fail: str) -> Check:
    """A counted check: a pass with ``note_pass`` when ``ok``, else a failure with ``note_fail``."""
    return Check(Outcome.PASS, note_pass) if ok else Check(Outcome.FAIL, note_fail)


def verdict_of(checks: list[Check]) -> Verdict:
    """Not run with no counted check, else holds iff every counted check passes."""
    counted = [c for c in checks if c.counted]
    if not counted:
        return Verdict.NOT_RUN
    return Verdict.HOLDS if all(c.passed for c in counted) else Verdict.DOES_NOT_HOLD


def tally(checks: list[Check], what: str, unit: str = "groups") -> str:
    """E.g. "ρ < 0 in 5 of 6 groups", over the counted checks."""
    counted = [c for c in checks if c.counted]
    return f"{what} in {sum(c.passed for c in counted)} of {len(counted)} {unit}"


def sign_check(rho: float, want: str) -> Check:
    """One group's ρ against the expected sign ("< 0" or "> 0")."""
    if not math.isfinite(rho):
        return Check(Outcome.FAIL, "fails: constant (ρ undefined)")
    ok = rho < 0 if want == "< 0" else rho > 0
    return passes(ok, f"ρ {want}", f"fails: ρ {'≥ 0' if want == '< 0' else '≤ 0'}")


@dataclass
class Claim:
    """One claim's record: its statement, verdict, statistic line and the detail rows it
    rests on (each a dict; a ``result`` entry is the row's :class:`Check`).
    """

    id: str
    statement: str
    verdict: Verdict
    statistic: str
    details: list[dict]
    left_out: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "statement": self.statement,
            "verdict": self.verdict,
            "statistic": self.statistic,
            "details": self.details,
            "left_out": self.left_out,
        }
