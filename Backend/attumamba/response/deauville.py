"""The Deauville five-point scale and the Lugano 2014 metabolic response (FDG, lymphoma).

The hottest residual lesion's SUVmax is compared with the mediastinal blood pool and the liver.
The references are given as numbers: by default each region's SUVmean (a VOI's maximum follows
the noise of one voxel; quantitative Deauville readings such as qPET use the mean), or its
SUVmax when a reader prefers. The score:
1 no residual uptake (no lesion left); 2 ≤ blood pool; 3 > blood pool and ≤ liver;
4 > liver and ≤ ``marked_factor`` × liver; 5 > ``marked_factor`` × liver, or any new lesion.
"X" (new uptake unlikely to be lymphoma) is a reader's call and never computed.

Lugano at interim or end of treatment: a score ≤ ``complete_max`` (default 3; trials that treat
3 as inadequate set 2) is a complete metabolic response (CMR); 4–5 with new lesions or uptake up
by at least ``significant_change_pct`` from baseline is progressive (PMD); 4–5 with uptake down
by at least that much is partial (PMR); 4–5 otherwise is no metabolic response (NMR).
"""

from __future__ import annotations

from .assessment import Assessment, at_least, more_than, percent_change

SYSTEM = "Deauville (Lugano 2014)"
FDG_NAMES = ("fdg", "fluorodeoxyglucose", "fludeoxyglucose")


def applies_to(tracer: str | None) -> bool | None:
    """True for FDG, False for a named other tracer (PSMA, DOTATATE...), None when unknown."""
    if not tracer:
        return None
    return any(name in tracer.lower() for name in FDG_NAMES)


def score(residual_suv_max: float | None, blood_pool_suv: float, liver_suv: float, *, new_lesions: int = 0,
          marked_factor: float = 2.0) -> tuple[int, str]:
    """The 1–5 score and the comparison that gave it."""
    if new_lesions:
        return 5, f"{new_lesions} new lesion(s)"
    if residual_suv_max is None:
        return 1, "no residual lesion"
    if not more_than(residual_suv_max, blood_pool_suv):
        return 2, f"SUVmax {residual_suv_max:.2f} ≤ blood pool {blood_pool_suv:.2f}"
    if not more_than(residual_suv_max, liver_suv):
        return 3, f"blood pool {blood_pool_suv:.2f} < SUVmax {residual_suv_max:.2f} ≤ liver {liver_suv:.2f}"
    marked = marked_factor * liver_suv
    if not more_than(residual_suv_max, marked):
        return 4, f"liver {liver_suv:.2f} < SUVmax {residual_suv_max:.2f} ≤ {marked_factor:g} × liver {marked:.2f}"
    return 5, f"SUVmax {residual_suv_max:.2f} > {marked_factor:g} × liver {marked:.2f}"


def assess(baseline_suv_max: float | None, residual_suv_max: float | None, *, blood_pool_suv: float,
           liver_suv: float, new_lesions: int = 0, marked_factor: float = 2.0, complete_max: int = 3,
           significant_change_pct: float = 30.0) -> Assessment:
    """The follow-up's Deauville score and the Lugano metabolic response it implies."""
    points, why = score(residual_suv_max, blood_pool_suv, liver_suv, new_lesions=new_lesions,
                        marked_factor=marked_factor)
    change = percent_change(baseline_suv_max, residual_suv_max or 0.0) if baseline_suv_max else None
    numbers = {"deauville": points, "residual_suv_max": residual_suv_max, "baseline_suv_max": baseline_suv_max,
               "blood_pool_suv": blood_pool_suv, "liver_suv": liver_suv,
               "ratio_to_liver": round(residual_suv_max / liver_suv, 3) if residual_suv_max and liver_suv
               else None, "change_pct": None if change is None else round(change, 2), "new_lesions": new_lesions,
               "complete_max": complete_max, "marked_factor": marked_factor}

    def result(category: str, rule: str) -> Assessment:
        return Assessment(SYSTEM, category, f"Deauville {points} ({why}); {rule}", numbers)

    if points <= complete_max:
        return result("CMR", f"score ≤ {complete_max}: complete metabolic response")
    if new_lesions:
        return result("PMD", "new lesion(s)")
    if change is not None and at_least(change, significant_change_pct):
        return result("PMD", f"uptake {change:+.1f} % from baseline (≥ +{significant_change_pct:g} %)")
    if change is not None and at_least(-change, significant_change_pct):
        return result("PMR", f"uptake {change:+.1f} % from baseline (≤ −{significant_change_pct:g} %)")
    return result("NMR", "score 4–5 without a significant change from baseline" if change is not None
                  else "score 4–5 and no baseline uptake to compare with")
