"""RECIST 1.1 (Eisenhauer et al., Eur J Cancer 2009): target lesions and the overall response.

Measurability: a node by its short axis (≥ 15 mm: target; 10–15 mm: pathological, non-target;
< 10 mm: normal), any other lesion by its long axis (≥ 10 mm, or ≥ 2 × the slice thickness when
slices are thicker than 5 mm). Targets: the largest measurable lesions, at most 5, at most 2 per
organ. The sum of diameters adds long axes, and short axes for nodes.

Response, in the order the rules are applied:
- PD: a new lesion; unequivocal progression of non-target disease (a reader's call); or the sum
  at least 20 % above the smallest sum so far (the nadir; the baseline when no earlier follow-up
  is given) *and* at least 5 mm above it.
- CR: every non-nodal target gone and every nodal target below 10 mm short axis (nodes keep
  their short axis in the sum, so a CR sum need not be 0); with non-target disease still present
  the overall response is PR.
- PR: the sum at least 30 % below the baseline sum.
- SD: none of these.
A lesion that disappeared measures 0 mm. Without a measurable target at baseline the target
response is not evaluable (NE) unless a new lesion makes it PD.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .assessment import Assessment, at_least, percent_change

SYSTEM = "RECIST 1.1"
MAX_TARGETS, MAX_PER_ORGAN = 5, 2
NODE_TARGET_MM, NODE_NORMAL_MM, LESION_MIN_MM = 15.0, 10.0, 10.0


@dataclass(frozen=True)
class Candidate:
    """A baseline lesion that may become a target; ``organ`` and ``nodal`` are the reader's (or a guess)."""

    lesion_id: str
    long_axis_mm: float
    short_axis_mm: float
    organ: str | None = None
    nodal: bool = False

    @property
    def diameter_mm(self) -> float:
        """The diameter RECIST sums: the short axis of a node, the long axis of anything else."""
        return self.short_axis_mm if self.nodal else self.long_axis_mm


@dataclass(frozen=True)
class Target:
    """A target lesion at baseline and follow-up (0 mm at follow-up: it disappeared)."""

    lesion_id: str
    nodal: bool
    baseline_mm: float
    follow_up_mm: float
    organ: str | None = None


def measurable(candidate: Candidate, slice_thickness_mm: float = 0.0) -> tuple[bool, str]:
    """Whether a lesion can be a target, and why (or why not)."""
    if candidate.nodal:
        ok = at_least(candidate.short_axis_mm, NODE_TARGET_MM)
        return ok, f"node, short axis {candidate.short_axis_mm:.1f} mm {'≥' if ok else '<'} {NODE_TARGET_MM:g} mm"
    minimum = max(LESION_MIN_MM, 2.0 * slice_thickness_mm if slice_thickness_mm > 5.0 else 0.0)
    ok = at_least(candidate.long_axis_mm, minimum)
    return ok, f"long axis {candidate.long_axis_mm:.1f} mm {'≥' if ok else '<'} {minimum:g} mm"


def select_targets(candidates: list[Candidate], slice_thickness_mm: float = 0.0) -> tuple[list[Candidate], list[str]]:
    """The largest measurable lesions, at most 5 and at most 2 per known organ; notes on what limited it."""
    notes: list[str] = []
    chosen: list[Candidate] = []
    per_organ: Counter = Counter()
    ranked = sorted((c for c in candidates if measurable(c, slice_thickness_mm)[0]),
                    key=lambda c: (-c.diameter_mm, c.lesion_id))
    for candidate in ranked:
        if len(chosen) == MAX_TARGETS:
            break
        if candidate.organ is not None and per_organ[candidate.organ] == MAX_PER_ORGAN:
            continue
        chosen.append(candidate)
        if candidate.organ is not None:
            per_organ[candidate.organ] += 1
    unknown = [c.lesion_id for c in chosen if c.organ is None]
    if unknown:
        notes.append(f"organ unknown for target(s) {', '.join(unknown)}: the 2-per-organ rule could not be "
                     "applied to them; set each lesion's organ to apply it")
    return chosen, notes


def assess(targets: list[Target], *, new_lesions: int = 0, non_target_progression: bool = False,
           non_target_disease_remains: bool = False, nadir_sum_mm: float | None = None) -> Assessment:
    """The RECIST 1.1 response at follow-up from the targets, new lesions and the reader's non-target calls."""
    baseline = sum(t.baseline_mm for t in targets)
    follow_up = sum(t.follow_up_mm for t in targets)
    nadir = baseline if nadir_sum_mm is None else min(nadir_sum_mm, baseline)
    from_baseline, from_nadir = percent_change(baseline, follow_up), percent_change(nadir, follow_up)
    numbers = {"targets": len(targets), "baseline_sum_mm": round(baseline, 2), "follow_up_sum_mm": round(follow_up, 2),
               "nadir_sum_mm": round(nadir, 2), "change_from_baseline_pct": _round(from_baseline),
               "change_from_nadir_pct": _round(from_nadir), "change_from_nadir_mm": round(follow_up - nadir, 2),
               "new_lesions": new_lesions}

    def result(category: str, rule: str) -> Assessment:
        return Assessment(SYSTEM, category, rule, numbers)

    if new_lesions:
        return result("PD", f"{new_lesions} new lesion(s) at follow-up")
    if non_target_progression:
        return result("PD", "unequivocal progression of non-target disease (reader)")
    grew_enough = at_least(from_nadir, 20.0) if from_nadir is not None else follow_up > nadir
    if targets and grew_enough and at_least(follow_up - nadir, 5.0):
        return result("PD", f"sum of diameters {follow_up:.1f} mm is {_pct(from_nadir)} (≥ +20 %) and "
                            f"{follow_up - nadir:+.1f} mm (≥ +5 mm) from the nadir {nadir:.1f} mm")
    if not targets:
        return result("NE", "no measurable target lesion at baseline and no new lesion")
    gone = [t for t in targets if not t.nodal and t.follow_up_mm > 0]
    big_nodes = [t for t in targets if t.nodal and at_least(t.follow_up_mm, NODE_NORMAL_MM)]
    if not gone and not big_nodes:
        if non_target_disease_remains:
            return result("PR", "every target lesion resolved (nodes < 10 mm short axis) but non-target disease "
                                "remains, which makes the overall response PR")
        return result("CR", "every non-nodal target disappeared and every nodal target is < 10 mm short axis")
    if at_least(-(from_baseline or 0.0), 30.0):
        return result("PR", f"sum of diameters {follow_up:.1f} mm is {_pct(from_baseline)} from the baseline "
                            f"{baseline:.1f} mm (a decrease of ≥ 30 %)")
    return result("SD", f"sum of diameters {follow_up:.1f} mm: {_pct(from_baseline)} from baseline (not ≤ −30 %), "
                        f"{_pct(from_nadir)} / {follow_up - nadir:+.1f} mm from the nadir (not ≥ +20 % and ≥ +5 mm)")


def _pct(value: float | None) -> str:
    return "undefined %" if value is None else f"{value:+.1f} %"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
