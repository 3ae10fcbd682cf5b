"""PERCIST 1.0 (Wahl et al., J Nucl Med 2009; O et al., Radiology 2016): metabolic response in SUL.

Reference regions: a 3 cm sphere in normal right-lobe liver; when the liver is abnormal, a
1 cm × 2 cm cylinder in the descending aorta (blood pool). A lesion is measurable when its
SULpeak is at least 1.5 × liver SULmean + 2 SD (with the blood pool: 2.0 × its SULmean + 2 SD).

The primary analysis follows the single hottest lesion (highest SULpeak) of each scan, which may
be a different lesion at follow-up. In the order applied:
- PMD: a new lesion, or the hottest SULpeak up by more than 30 % *and* more than 0.8 SUL units.
- CMR: no lesion left above the liver's SULmean nor above the blood pool's level (its SULmean +
  2 SD, our reading of "indistinguishable from surrounding blood pool") — a follow-up with no
  lesion at all is CMR.
- PMR: the hottest SULpeak down by at least 30 % *and* at least 0.8 SUL units.
- SMD: none of these.
A baseline whose hottest lesion is not measurable is not evaluable (NE) unless a new lesion makes
it PMD. The liver reference must be reproducible between scans (within 20 % and 0.3 SUL units):
when it is not, the assessment carries a note.
"""

from __future__ import annotations

from dataclasses import dataclass

from .assessment import Assessment, at_least, more_than, percent_change

SYSTEM = "PERCIST 1.0"
CHANGE_PCT, CHANGE_SUL = 30.0, 0.8
LIVER_FACTOR, BLOOD_POOL_FACTOR = 1.5, 2.0
LIVER_REPRODUCIBLE_PCT, LIVER_REPRODUCIBLE_SUL = 20.0, 0.3


@dataclass(frozen=True)
class Reference:
    """A reference region's SUL statistics at one time point; ``normal`` False for an abnormal liver."""

    kind: str                 # "liver" or "blood_pool"
    sul_mean: float
    sul_sd: float
    normal: bool = True


@dataclass(frozen=True)
class Uptake:
    """One lesion's SULpeak at one time point."""

    lesion_id: str
    sul_peak: float


def threshold(liver: Reference | None, blood_pool: Reference | None) -> tuple[float | None, str]:
    """The PERCIST measurability threshold and the rule it came from (None when no usable reference)."""
    if liver is not None and liver.normal:
        value = LIVER_FACTOR * liver.sul_mean + 2.0 * liver.sul_sd
        return value, f"1.5 × liver SULmean {liver.sul_mean:.2f} + 2 × SD {liver.sul_sd:.2f} = {value:.2f}"
    if blood_pool is not None:
        value = BLOOD_POOL_FACTOR * blood_pool.sul_mean + 2.0 * blood_pool.sul_sd
        why = "the liver is abnormal" if liver is not None else "no liver reference"
        return value, (f"{why}: 2.0 × blood-pool SULmean {blood_pool.sul_mean:.2f} + 2 × SD {blood_pool.sul_sd:.2f} "
                       f"= {value:.2f}")
    return None, "no usable reference region (a normal liver or the blood pool is needed)"


def assess(baseline: list[Uptake], follow_up: list[Uptake], *, baseline_liver: Reference | None,
           follow_up_liver: Reference | None, baseline_blood_pool: Reference | None = None,
           follow_up_blood_pool: Reference | None = None, new_lesions: int = 0) -> Assessment:
    """The PERCIST 1.0 response of the hottest lesion at follow-up against the hottest at baseline."""
    base_hot = max(baseline, key=lambda u: u.sul_peak, default=None)
    follow_hot = max(follow_up, key=lambda u: u.sul_peak, default=None)
    base_threshold, base_rule = threshold(baseline_liver, baseline_blood_pool)
    follow_threshold, follow_rule = threshold(follow_up_liver, follow_up_blood_pool)
    base_peak = base_hot.sul_peak if base_hot else None
    follow_peak = follow_hot.sul_peak if follow_hot else 0.0
    change = percent_change(base_peak, follow_peak) if base_peak else None
    numbers = {"baseline_hottest": base_hot.lesion_id if base_hot else None, "baseline_sul_peak": _r(base_peak),
               "follow_up_hottest": follow_hot.lesion_id if follow_hot else None,
               "follow_up_sul_peak": _r(follow_peak if follow_hot else None),
               "change_pct": _r(change), "change_sul": _r(follow_peak - base_peak if base_peak else None),
               "baseline_threshold": _r(base_threshold), "baseline_threshold_rule": base_rule,
               "follow_up_threshold": _r(follow_threshold), "follow_up_threshold_rule": follow_rule,
               "new_lesions": new_lesions}
    notes = _reference_notes(baseline_liver, follow_up_liver)

    def result(category: str, rule: str) -> Assessment:
        return Assessment(SYSTEM, category, rule, numbers, notes)

    if new_lesions:
        return result("PMD", f"{new_lesions} new lesion(s) at follow-up")
    if base_hot is None or base_threshold is None or not at_least(base_peak, base_threshold):
        why = "no lesion at baseline" if base_hot is None else (
            base_rule if base_threshold is None else
            f"baseline hottest SULpeak {base_peak:.2f} < measurability threshold {base_threshold:.2f}")
        return result("NE", f"not evaluable: {why}")
    rise = follow_peak - base_peak
    if more_than(change, CHANGE_PCT) and more_than(rise, CHANGE_SUL):
        return result("PMD", f"hottest SULpeak {base_peak:.2f} → {follow_peak:.2f}: {change:+.1f} % (> +30 %) and "
                             f"{rise:+.2f} SUL (> +0.8)")
    background = _background_level(follow_up_liver, follow_up_blood_pool)
    if follow_hot is None or (background is not None and not more_than(follow_peak, background[0])):
        where = "no lesion at follow-up" if follow_hot is None else (
            f"hottest follow-up SULpeak {follow_peak:.2f} ≤ {background[1]}")
        return result("CMR", f"complete metabolic response: {where}")
    if at_least(-change, CHANGE_PCT) and at_least(-rise, CHANGE_SUL):
        return result("PMR", f"hottest SULpeak {base_peak:.2f} → {follow_peak:.2f}: {change:+.1f} % (≤ −30 %) and "
                             f"{rise:+.2f} SUL (≤ −0.8)")
    return result("SMD", f"hottest SULpeak {base_peak:.2f} → {follow_peak:.2f}: {change:+.1f} %, {rise:+.2f} SUL "
                         "(neither ≤ −30 % and ≤ −0.8 nor > +30 % and > +0.8)")


def _background_level(liver: Reference | None, blood_pool: Reference | None) -> tuple[float, str] | None:
    """The uptake a lesion must not exceed for CMR: the liver's SULmean and the blood pool's mean + 2 SD."""
    levels = []
    if liver is not None and liver.normal:
        levels.append((liver.sul_mean, f"liver SULmean {liver.sul_mean:.2f}"))
    if blood_pool is not None:
        level = blood_pool.sul_mean + 2.0 * blood_pool.sul_sd
        levels.append((level, f"blood pool SULmean + 2 SD {level:.2f}"))
    return min(levels) if levels else None


def _reference_notes(baseline: Reference | None, follow_up: Reference | None) -> list[str]:
    if baseline is None or follow_up is None:
        return ["a liver reference is missing at one time point: reproducibility was not checked"]
    change = follow_up.sul_mean - baseline.sul_mean
    pct = percent_change(baseline.sul_mean, follow_up.sul_mean)
    if more_than(abs(pct or 0.0), LIVER_REPRODUCIBLE_PCT) or more_than(abs(change), LIVER_REPRODUCIBLE_SUL):
        return [f"liver SULmean moved {baseline.sul_mean:.2f} → {follow_up.sul_mean:.2f} ({_r(pct)} %, {change:+.2f} "
                "SUL): PERCIST asks for < 20 % and < 0.3 SUL between scans; check uptake times and the reference"]
    return []


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
