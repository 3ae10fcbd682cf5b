"""SUL: SUV normalised to lean body mass (Janmahasatian et al., Clin Pharmacokinet 2005).

PERCIST reads uptake as SUL because body-weight SUV rises with body fat, which takes up little
tracer; lean body mass follows the tracer's distribution volume better. SUVbw = C·W/D and
SUL = C·LBM/D, so SUL = SUVbw × LBM / W for the same image.

Janmahasatian (BMI = W / H², W in kg, H in m):
    male:   LBM = 9270·W / (6680 + 216·BMI)
    female: LBM = 9270·W / (8780 + 244·BMI)
PERCIST 1.0 itself used James' formula, which turns negative for obese patients; Janmahasatian's
does not, and is what current PERCIST practice and the issue ask for.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

LBM_FORMULA = "Janmahasatian 2005"
_COEFFICIENTS = {"M": (6680.0, 216.0), "F": (8780.0, 244.0)}


@dataclass(frozen=True)
class SulScale:
    """How a study's SUVbw turns into SUL, or why it cannot (``factor`` None and ``reason`` set)."""

    factor: float | None          # SUL = SUVbw × factor (= LBM / weight)
    lean_body_mass_kg: float | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    sex: str | None = None
    formula: str = LBM_FORMULA
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.factor is not None

    def sul(self, suv_bw: float | None) -> float | None:
        if suv_bw is None or self.factor is None:
            return None
        return suv_bw * self.factor

    def describe(self) -> dict:
        return {"available": self.available, "factor": self.factor, "lean_body_mass_kg": self.lean_body_mass_kg,
                "weight_kg": self.weight_kg, "height_m": self.height_m, "sex": self.sex, "formula": self.formula,
                "reason": self.reason}


def lean_body_mass_kg(sex: str, height_m: float, weight_kg: float) -> float:
    """Janmahasatian's lean body mass; InputError for a sex other than M/F or implausible sizes."""
    key = (sex or "").strip().upper()[:1]
    if key not in _COEFFICIENTS:
        raise InputError(f"lean body mass needs the patient's sex as M or F (PatientSex), not {sex!r}")
    if not 0.5 <= height_m <= 2.6:
        raise InputError(f"a patient height of {height_m} m is implausible (PatientSize is in metres)")
    if not 2.0 <= weight_kg <= 400.0:
        raise InputError(f"a patient weight of {weight_kg} kg is implausible (PatientWeight is in kg)")
    offset, slope = _COEFFICIENTS[key]
    bmi = weight_kg / height_m ** 2
    return 9270.0 * weight_kg / (offset + slope * bmi)


def sul_scale(sex: str | None, height_m: float | None, weight_kg: float | None) -> SulScale:
    """The SUVbw → SUL factor for a patient, or a scale that says which header is missing."""
    missing = [name for name, value in (("PatientSex", sex), ("PatientSize (height)", height_m),
                                        ("PatientWeight", weight_kg)) if value in (None, "", 0, 0.0)]
    if missing:
        return SulScale(None, weight_kg=weight_kg, height_m=height_m, sex=sex,
                        reason=f"SUL needs {' and '.join(missing)}; only SUVbw is reported")
    try:
        lbm = lean_body_mass_kg(sex, float(height_m), float(weight_kg))
    except InputError as error:
        return SulScale(None, weight_kg=weight_kg, height_m=height_m, sex=sex,
                        reason=f"{error}; only SUVbw is reported")
    return SulScale(lbm / float(weight_kg), lbm, float(weight_kg), float(height_m), sex.strip().upper()[:1])
