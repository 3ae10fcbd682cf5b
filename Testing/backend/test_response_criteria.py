"""Response criteria on hand-built cases at each rule's edge (issue 18, item 5 and 7)."""

from __future__ import annotations

import pytest

from attumamba.response import deauville, lean_body_mass_kg, percist, recist, sul_scale
from attumamba.response.percist import Reference, Uptake
from attumamba.response.recist import Candidate, Target


def targets(*pairs, nodal=()):
    return [Target(f"L{i}", i in nodal, before, after) for i, (before, after) in enumerate(pairs, 1)]


# --- RECIST 1.1 -------------------------------------------------------------------------------

def test_recist_exactly_minus_30_percent_is_pr():
    result = recist.assess(targets((40.0, 28.0), (30.0, 21.0)))      # 70 → 49: exactly −30 %
    assert result.category == "PR"
    assert result.numbers["change_from_baseline_pct"] == -30.0
    assert "≥ 30 %" in result.rule


def test_recist_just_short_of_30_percent_is_sd():
    assert recist.assess(targets((40.0, 28.1), (30.0, 21.0))).category == "SD"


def test_recist_plus_20_percent_but_under_5_mm_is_sd():
    result = recist.assess(targets((12.0, 14.4), (10.0, 12.0)))      # 22 → 26.4: +20 %, +4.4 mm
    assert result.category == "SD"
    assert result.numbers["change_from_nadir_pct"] == 20.0
    assert result.numbers["change_from_nadir_mm"] == 4.4


def test_recist_plus_20_percent_and_5_mm_is_pd():
    result = recist.assess(targets((15.0, 18.0), (10.0, 12.0)))      # 25 → 30: +20 %, +5 mm
    assert result.category == "PD" and "nadir" in result.rule


def test_recist_progression_is_measured_from_the_nadir():
    # baseline 100, nadir 50 (an earlier follow-up), now 62: +24 % and +12 mm from the nadir, −38 % from baseline
    result = recist.assess(targets((100.0, 62.0)), nadir_sum_mm=50.0)
    assert result.category == "PD"
    assert result.numbers["change_from_baseline_pct"] == -38.0


def test_recist_new_lesion_is_pd_whatever_the_sum():
    result = recist.assess(targets((40.0, 10.0)), new_lesions=1)
    assert result.category == "PD" and "new lesion" in result.rule


def test_recist_nodes_below_10_mm_short_axis_are_cr_with_a_nonzero_sum():
    result = recist.assess(targets((20.0, 0.0), (18.0, 9.5), nodal={2}))
    assert result.category == "CR"
    assert result.numbers["follow_up_sum_mm"] == 9.5


def test_recist_node_at_10_mm_is_not_cr():
    assert recist.assess(targets((20.0, 0.0), (18.0, 10.0), nodal={2})).category == "PR"


def test_recist_targets_gone_but_non_targets_remain_is_pr():
    result = recist.assess(targets((20.0, 0.0)), non_target_disease_remains=True)
    assert result.category == "PR" and "non-target" in result.rule


def test_recist_without_measurable_targets_is_not_evaluable():
    assert recist.assess([]).category == "NE"
    assert recist.assess([], new_lesions=2).category == "PD"


def test_recist_measurability_and_target_selection():
    node_small = Candidate("n1", 20.0, 14.9, organ="lymph node", nodal=True)
    node_big = Candidate("n2", 22.0, 15.0, organ="lymph node", nodal=True)
    assert not recist.measurable(node_small)[0] and recist.measurable(node_big)[0]
    assert recist.measurable(Candidate("a", 10.0, 5.0))[0]
    assert not recist.measurable(Candidate("a", 11.0, 5.0), slice_thickness_mm=6.0)[0]   # needs 2 × 6 mm
    liver = [Candidate(f"liver{i}", 30.0 + i, 10.0, organ="liver") for i in range(4)]
    lung = [Candidate(f"lung{i}", 20.0 + i, 10.0, organ="lung") for i in range(3)]
    chosen, notes = recist.select_targets(liver + lung + [node_small, node_big])
    assert [c.lesion_id for c in chosen] == ["liver3", "liver2", "lung2", "lung1", "n2"]
    assert notes == []
    unknown, notes = recist.select_targets([Candidate(f"u{i}", 20.0 + i, 5.0) for i in range(7)])
    assert len(unknown) == 5 and "organ unknown" in notes[0]


# --- PERCIST 1.0 ------------------------------------------------------------------------------

LIVER = Reference("liver", 2.0, 0.3)
BLOOD = Reference("blood_pool", 1.5, 0.2)


def percist_of(base_peaks, follow_peaks, **kwargs):
    baseline = [Uptake(f"b{i}", p) for i, p in enumerate(base_peaks)]
    follow_up = [Uptake(f"f{i}", p) for i, p in enumerate(follow_peaks)]
    kwargs.setdefault("baseline_liver", LIVER)
    kwargs.setdefault("follow_up_liver", LIVER)
    kwargs.setdefault("follow_up_blood_pool", BLOOD)
    return percist.assess(baseline, follow_up, **kwargs)


def test_percist_threshold_liver_and_blood_pool():
    assert percist.threshold(LIVER, BLOOD)[0] == pytest.approx(3.6)
    value, rule = percist.threshold(Reference("liver", 2.0, 0.3, normal=False), BLOOD)
    assert value == pytest.approx(3.4) and "abnormal" in rule


def test_percist_needs_both_30_percent_and_0_8_sul():
    assert percist_of([4.0], [2.8]).category == "PMR"   # exactly −30 % and −1.2 SUL
    assert percist_of([3.7], [2.6]).category == "SMD"   # −29.7 %
    assert percist_of([3.8], [4.5]).category == "SMD"   # +18 %
    assert percist_of([3.8], [5.0]).category == "PMD"   # +31.6 % and +1.2 SUL
    assert percist_of([4.0], [5.2]).category == "SMD"   # exactly +30 % is not "more than 30 %"


def test_percist_0_8_unit_rule_blocks_a_large_relative_change():
    # blood-pool threshold for an abnormal liver: 2.0 × 1.0 + 2 × 0.1 = 2.2; baseline 2.3 → 3.0: +30.4 % but +0.7 SUL
    low = Reference("blood_pool", 1.0, 0.1)
    abnormal = Reference("liver", 2.0, 0.3, normal=False)
    result = percist_of([2.3], [3.0], baseline_liver=abnormal, follow_up_liver=abnormal, baseline_blood_pool=low,
                        follow_up_blood_pool=low)
    assert result.category == "SMD" and result.numbers["change_pct"] > 30


def test_percist_hottest_lesion_may_change_identity():
    result = percist_of([5.0, 3.0], [2.0, 7.0])
    assert result.numbers["baseline_hottest"] == "b0" and result.numbers["follow_up_hottest"] == "f1"
    assert result.category == "PMD"


def test_percist_new_lesion_and_unmeasurable_baseline():
    assert percist_of([5.0], [1.0], new_lesions=1).category == "PMD"
    result = percist_of([3.0], [1.0])
    assert result.category == "NE" and "threshold" in result.rule


def test_percist_complete_response_and_liver_reproducibility_note():
    assert percist_of([6.0], []).category == "CMR"
    assert percist_of([6.0], [1.8]).category == "CMR"           # ≤ liver mean 2.0 and ≤ blood pool 1.9
    assert percist_of([6.0], [1.95]).category == "PMR"          # above the blood pool's level
    moved = percist_of([6.0], [3.0], follow_up_liver=Reference("liver", 2.5, 0.3))
    assert moved.notes and "0.3 SUL" in moved.notes[0]


# --- Deauville / Lugano -----------------------------------------------------------------------

@pytest.mark.parametrize("residual, expected", [(None, 1), (1.8, 2), (2.0, 2), (2.5, 3), (3.0, 3), (5.0, 4),
                                                (6.0, 4), (6.1, 5)])
def test_deauville_score_edges(residual, expected):
    assert deauville.score(residual, 2.0, 3.0)[0] == expected


def test_deauville_response():
    common = {"blood_pool_suv": 2.0, "liver_suv": 3.0}
    assert deauville.assess(12.0, 2.9, **common).category == "CMR"
    assert deauville.assess(12.0, 2.9, complete_max=2, **common).category == "PMR"
    assert deauville.assess(12.0, 5.0, **common).category == "PMR"
    assert deauville.assess(5.5, 5.0, **common).category == "NMR"
    assert deauville.assess(5.0, 7.0, **common).category == "PMD"
    assert deauville.assess(12.0, 2.0, new_lesions=1, **common).category == "PMD"


# --- SUL --------------------------------------------------------------------------------------

def test_lean_body_mass_by_hand():
    # male, 1.80 m, 80 kg: BMI 24.69; 9270·80 / (6680 + 216·24.69) = 741600 / 12013.3 = 61.73 kg
    assert lean_body_mass_kg("M", 1.80, 80.0) == pytest.approx(61.73, abs=0.01)
    # female, 1.65 m, 60 kg: BMI 22.04; 9270·60 / (8780 + 244·22.04) = 556200 / 14157.4 = 39.29 kg
    assert lean_body_mass_kg("F", 1.65, 60.0) == pytest.approx(39.29, abs=0.01)
    scale = sul_scale("M", 1.80, 80.0)
    assert scale.sul(10.0) == pytest.approx(10.0 * 61.73 / 80.0, abs=1e-3)


def test_sul_without_sex_or_height_says_why():
    scale = sul_scale(None, 1.7, 70.0)
    assert not scale.available and "PatientSex" in scale.reason and scale.sul(5.0) is None
    assert "PatientSize" in sul_scale("F", None, 70.0).reason
    assert "implausible" in sul_scale("F", 170.0, 70.0).reason   # height given in cm
