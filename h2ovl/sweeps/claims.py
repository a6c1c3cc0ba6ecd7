"""Claims an ablation makes, judged on its own table: a conclusion is stated only where every seed says so.

A spec lists claims as `{better: A, worse: B, text: "..."}`. On the table's metric a claim *held* when every
seed of A beats every seed of B (the two ranges do not overlap: with 3 seeds each, a chance ordering
does this 1 time in 20), is *reversed* when every seed of B beats every seed of A, and is *within noise*
otherwise. The demo prints the verdicts, so a README sentence can be checked against the run that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from h2ovl.errors import SpecError
from h2ovl.sweeps.results import Table

HELD, WITHIN_NOISE, REVERSED, MISSING = "held", "within noise", "reversed", "not measured"


@dataclass(frozen=True)
class Claim:
    better: str
    worse: str
    text: str


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    status: str
    better: list[float]
    worse: list[float]


def parse_claims(raw: Any, variants: set[str], where: str) -> list[Claim]:
    """The spec's `claims`: a list of `{better, worse, text}` naming two of its variants."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"{where}: claims must be a list of {{better, worse, text}}")
    claims = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"better", "worse", "text"}:
            raise SpecError(f"{where}: claims[{index}] must have exactly the keys better, worse, text; got {item!r}")
        for key in ("better", "worse"):
            if variants and item[key] not in variants:
                raise SpecError(
                    f"{where}: claims[{index}].{key} {item[key]!r} is not one of the variants {sorted(variants)}"
                )
        claims.append(Claim(str(item["better"]), str(item["worse"]), str(item["text"])))
    return claims


def judge(table: Table, claim: Claim, metric: str) -> Verdict:
    rows = {row.variant: row for row in table.rows}
    better = list(rows[claim.better].values.get(metric, [])) if claim.better in rows else []
    worse = list(rows[claim.worse].values.get(metric, [])) if claim.worse in rows else []
    if not better or not worse:
        return Verdict(claim, MISSING, better, worse)
    lower_is_better = table.modes.get(metric, "min") == "min"

    def beats(a: list[float], b: list[float]) -> bool:  # every value of a better than every value of b
        return max(a) < min(b) if lower_is_better else min(a) > max(b)

    status = HELD if beats(better, worse) else REVERSED if beats(worse, better) else WITHIN_NOISE
    return Verdict(claim, status, better, worse)


def claims_text(table: Table, claims: list[Claim], metric: str) -> str:
    """One line per claim: its verdict, the text, and both variants' values per seed."""
    lines = [f"claims, judged on {metric} (held = every seed of the first beats every seed of the second):"]
    for verdict in (judge(table, claim, metric) for claim in claims):
        values = ", ".join(f"{v:.3f}" for v in verdict.better), ", ".join(f"{v:.3f}" for v in verdict.worse)
        lines.append(
            f"- {verdict.status.upper()}: {verdict.claim.text} "
            f"({verdict.claim.better} {values[0] or '-'} vs {verdict.claim.worse} {values[1] or '-'})"
        )
    return "\n".join(lines)
