"""SUVbw from PET headers: every branch against numbers worked out by hand.

Reference case: 75 kg, 370 MBq F-18 (half-life 6586.2 s) injected at 09:00:00.
 - scan 10:00:00, Δt = 3600 s: 2^(−3600/6586.2) = 0.684633; decayed dose 253.3142 MBq;
   factor = 75 000 g / 253 314 180 Bq = 2.960750e-4 g/Bq.
 - Δt = 3900 s: 2^(−0.592147) = 0.663355 → 245.4413 MBq → 3.055720e-4.
 - Δt = 3000 s: 2^(−0.455498) = 0.729259 → 269.8256 MBq → 2.779573e-4.
 - Δt = 2700 s: 2^(−0.409948) = 0.752650 → 278.4807 MBq → 2.693185e-4.
 - no decay (ADMIN): 75 000 / 370e6 = 2.027027e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from attumamba.errors import InputError
from attumamba.io.suv import compute_suv_factor, mid_activity_offset_s, rescaled_pixels

FACTOR_3600 = 2.960750e-4
FACTOR_3900 = 3.055720e-4
FACTOR_3000 = 2.779573e-4
FACTOR_2700 = 2.693185e-4
FACTOR_ADMIN = 2.027027e-4


def approx(value: float) -> object:
    return pytest.approx(value, rel=2e-6)


def test_bqml_start_uses_series_time(make_pet_header):
    result = compute_suv_factor(make_pet_header())
    assert result.factor == approx(FACTOR_3600)
    assert result.decay_s == 3600.0
    assert result.decayed_dose_bq == pytest.approx(253.3142e6, rel=1e-6)
    assert result.units == "BQML" and result.decay_correction == "START"
    assert any("SeriesDate/SeriesTime" in note for note in result.notes)


def test_post_processed_series_uses_earliest_acquisition(make_pet_header):
    # Series time 10:30 is after the acquisitions (10:05 and 10:00): a reconstructed series.
    slices = [
        make_pet_header(series_time="103000", acquisition_time="100500"),
        make_pet_header(series_time="103000", acquisition_time="100000"),
    ]
    result = compute_suv_factor(slices)
    assert result.decay_s == 3600.0
    assert result.slice_factors == (approx(FACTOR_3600), approx(FACTOR_3600))
    assert any("earliest AcquisitionDate/Time" in note for note in result.notes)


def test_post_processed_series_prefers_ge_private_scan_time(make_pet_header):
    ds = make_pet_header(series_time="103000", acquisition_time="102000")
    ds.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(0x0D, "DT", "20240305100500")
    result = compute_suv_factor(ds)
    assert result.decay_s == 3900.0
    assert result.factor == approx(FACTOR_3900)
    assert any("(0009,100d)" in note for note in result.notes)


def test_admin_decay_correction_uses_undecayed_dose(make_pet_header):
    # ADMIN needs neither the injection time nor the half-life.
    ds = make_pet_header(decay_correction="ADMIN", start_datetime=None, start_time=None, half_life=None)
    result = compute_suv_factor(ds)
    assert result.factor == approx(FACTOR_ADMIN)
    assert result.decayed_dose_bq == 370e6


def test_none_decay_correction_uses_frame_reference_time(make_pet_header):
    # Not decay-corrected: decay to series start + FrameReferenceTime 90 s → Δt = 3690 s.
    ds = make_pet_header(decay_correction="NONE", corrected=["ATTN"], FrameReferenceTime="90000")
    expected = 75000 / (370e6 * 2 ** (-3690 / 6586.2))  # 2.988927e-4
    assert expected == pytest.approx(2.988927e-4, rel=1e-6)
    assert compute_suv_factor(ds).factor == approx(expected)


def test_none_decay_correction_uses_mid_activity_time_of_each_frame(make_pet_header):
    # Frames of T = 180 s: λ = ln2/6586.2 = 1.052412e-4 /s, λT = 0.01894342,
    # t* = ln(λT / (1 − e^(−λT))) / λ = 89.8579 s (slightly before T/2 = 90 s).
    assert mid_activity_offset_s(180.0, 6586.2) == pytest.approx(89.8579, abs=1e-4)
    assert mid_activity_offset_s(1e-3, 6586.2) == pytest.approx(0.5e-3, rel=1e-6)
    slices = [
        make_pet_header(decay_correction="NONE", corrected=["ATTN"], ActualFrameDuration="180000"),
        make_pet_header(decay_correction="NONE", corrected=["ATTN"], ActualFrameDuration="180000",
                        acquisition_time="100300"),
    ]
    result = compute_suv_factor(slices)
    first = 75000 / (370e6 * 2 ** (-(3600 + 89.8579) / 6586.2))  # 2.988882e-4
    second = 75000 / (370e6 * 2 ** (-(3780 + 89.8579) / 6586.2))  # bed 3 min later
    assert result.slice_factors[0] == pytest.approx(first, rel=1e-6)
    assert result.slice_factors[1] == pytest.approx(second, rel=1e-6)
    assert result.slice_factors[1] / result.slice_factors[0] == pytest.approx(2 ** (180 / 6586.2))


def test_cnts_uses_philips_suv_factor(make_pet_header):
    ds = make_pet_header(units="CNTS", weight=None, with_pharm=False)
    ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x00, "DS", "0.000123")
    result = compute_suv_factor(ds)
    assert result.factor == pytest.approx(0.000123)
    assert any("(7053,1000)" in note for note in result.notes)


def test_cnts_uses_philips_activity_concentration_factor(make_pet_header):
    ds = make_pet_header(units="CNTS")
    ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x09, "DS", "2.5")
    # counts × 2.5 = Bq/mL, then the BQML factor.
    assert compute_suv_factor(ds).factor == approx(2.5 * FACTOR_3600)


def test_cnts_without_philips_factors_is_refused(make_pet_header):
    with pytest.raises(InputError, match=r"\(7053,1000\).*\(7053,1009\)"):
        compute_suv_factor(make_pet_header(units="CNTS"))


def test_gml_is_already_suv(make_pet_header):
    result = compute_suv_factor(make_pet_header(units="GML", weight=None, with_pharm=False))
    assert result.factor == 1.0
    with pytest.raises(InputError, match=r"SUVType \(0054,1006\) = LBM"):
        compute_suv_factor(make_pet_header(units="GML", SUVType="LBM"))


def test_injection_before_midnight_scan_after(make_pet_header):
    # Injected 23:50 on 5 March, scan 00:40 on 6 March; only the StartTime is given.
    ds = make_pet_header(start_datetime=None, start_time="235000", series_date="20240306",
                         series_time="004000", acquisition_date="20240306",
                         acquisition_time="004000")
    result = compute_suv_factor(ds)
    assert result.decay_s == 3000.0
    assert result.injection_time.day == 5
    assert result.factor == approx(FACTOR_3000)


def test_start_datetime_wins_over_start_time(make_pet_header):
    both = make_pet_header(start_datetime="20240305090000", start_time="091500")
    assert compute_suv_factor(both).decay_s == 3600.0
    time_only = make_pet_header(start_datetime=None, start_time="091500")
    result = compute_suv_factor(time_only)
    assert result.decay_s == 2700.0
    assert result.factor == approx(FACTOR_2700)


def test_weight_in_grams_is_converted_with_a_warning(make_pet_header):
    with pytest.warns(UserWarning, match="grams"):
        result = compute_suv_factor(make_pet_header(weight="75000"))
    assert result.weight_kg == 75.0
    assert result.factor == approx(FACTOR_3600)


def test_dose_in_mbq_is_converted_with_a_warning(make_pet_header):
    with pytest.warns(UserWarning, match="MBq"):
        result = compute_suv_factor(make_pet_header(dose="370"))
    assert result.injected_dose_bq == 370e6
    assert result.factor == approx(FACTOR_3600)


def test_per_slice_rescale_slopes_apply_before_the_suv_factor(make_pet_header):
    stored = np.array([[100, 200], [0, 3000]], dtype=np.int16)
    slices = [
        make_pet_header(slope="0.5", pixels=stored),
        make_pet_header(slope="3.25", intercept="-1", pixels=stored),
    ]
    factor = compute_suv_factor(slices).factor
    suv = [rescaled_pixels(ds) * factor for ds in slices]
    # Slice 1: 100 × 0.5 = 50 Bq/mL → 50 × 2.960750e-4 = 0.01480375 SUV.
    assert suv[0][0, 0] == pytest.approx(0.01480375, rel=1e-5)
    assert suv[0][1, 1] == pytest.approx(1500 * FACTOR_3600, rel=1e-5)
    # Slice 2: 100 × 3.25 − 1 = 324 Bq/mL → 0.09592830 SUV.
    assert suv[1][0, 0] == pytest.approx(0.09592830, rel=1e-5)
    assert suv[1][1, 0] == pytest.approx(-1 * FACTOR_3600, rel=1e-5)


@pytest.mark.parametrize(
    ("changes", "tag"),
    [
        ({"weight": None}, "PatientWeight (0010,1030)"),
        ({"weight": "0"}, "PatientWeight (0010,1030)"),
        ({"dose": None}, "RadionuclideTotalDose (0018,1074)"),
        ({"with_pharm": False}, "RadiopharmaceuticalInformationSequence (0054,0016)"),
        ({"half_life": None}, "RadionuclideHalfLife (0018,1075)"),
        ({"start_datetime": None, "start_time": None}, "RadiopharmaceuticalStartTime (0018,1072)"),
        ({"units": "CPS"}, "Units (0054,1001) = CPS"),
        ({"units": None}, "Units (0054,1001)"),
        ({"decay_correction": None}, "DecayCorrection (0054,1102)"),
        ({"corrected": ["DECY"]}, "CorrectedImage (0028,0051)"),
        ({"corrected": None}, "CorrectedImage (0028,0051)"),
        ({"corrected": ["ATTN"]}, "lacks DECY"),
        ({"series_time": None, "acquisition_time": None}, "SeriesDate/SeriesTime"),
    ],
)
def test_missing_or_bad_tags_are_named(make_pet_header, changes, tag):
    with pytest.raises(InputError) as caught:
        compute_suv_factor(make_pet_header(**changes))
    assert tag in str(caught.value)


def test_negative_decay_time_is_refused(make_pet_header):
    with pytest.raises(InputError, match="negative"):
        compute_suv_factor(make_pet_header(start_datetime="20240305110000"))


def test_decay_over_ten_half_lives_is_refused(make_pet_header):
    # Injected the day before: 25 h = 13.7 half-lives of F-18.
    with pytest.raises(InputError, match="more than 10 half-lives"):
        compute_suv_factor(make_pet_header(start_datetime="20240304090000"))


def test_slices_disagreeing_on_units_are_refused(make_pet_header):
    with pytest.raises(InputError, match="disagree on Units"):
        compute_suv_factor([make_pet_header(), make_pet_header(units="GML")])


def test_factor_is_the_inverse_of_the_hand_formula_for_ga68(make_pet_header):
    # 80 kg, 150 MBq Ga-68 (4062.6 s), 60 min: 2^(−0.886132) = 0.541063 → 81.1594 MBq.
    ds = make_pet_header(weight="80", dose="150000000", half_life="4062.6")
    assert compute_suv_factor(ds).factor == pytest.approx(80000 / 81.1594e6, rel=1e-5)
    assert math.isclose(80000 / (150e6 * 0.541063), 9.857143e-4, rel_tol=1e-5)
