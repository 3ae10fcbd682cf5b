"""One synthetic study: patient, tracer, lesions, and the CT and PET a scanner would produce."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import SimpleITK as sitk
from pydicom.uid import generate_uid

from ..io.dicom_write import DicomStudyInfo, PetDose
from ..io.resample import resample_to
from .anatomy import Patient, body_outline
from .frame import Frame
from .grid import Grid, paint
from .lesions import Lesion, sample_lesions
from .pose import Pose
from .scanner import ct_with_noise, pet_from_activity, smooth_field
from .tissues import HU, PATCHY, Tissue, lookup_table, sample_uptake

Progress = Callable[[float, str], None] | None


@dataclass(frozen=True)
class Profile:
    """Grid choices. ``full`` is a realistic whole-body study; ``compact`` is coarse, for tests and quick training."""

    ct_inplane_mm: tuple[float, ...]
    ct_slice_mm: tuple[float, ...]
    pet_inplane_mm: tuple[float, ...]
    pet_slice_mm: tuple[float, ...]
    fine_factors_xyz: tuple[int, int, int]


PROFILES = {
    "full": Profile((1.17, 1.27, 1.37), (2.5, 3.0), (3.65, 4.0, 4.07), (3.0, 3.27), (2, 2, 1)),
    "compact": Profile((2.5,), (4.0,), (5.0,), (5.0,), (2, 2, 2)),
}
TRACERS = {
    # tracer: (radiopharmaceutical, radionuclide, half-life s, dose in Bq as a function of weight)
    "psma": ("PSMA-11", "Ga-68", 4062.6, lambda kg, rng: rng.uniform(120e6, 200e6)),
    "fdg": ("Fluorodeoxyglucose", "F-18", 6586.2, lambda kg, rng: kg * rng.uniform(3.0e6, 4.0e6)),
}


@dataclass
class SyntheticStudy:
    case_id: str
    tracer: str
    ct: sitk.Image            # HU, CT grid
    suv: sitk.Image           # SUVbw, PET grid
    ct_on_pet: sitk.Image     # CT resampled onto the PET grid (autoPET "CTres")
    lesions_ct: sitk.Image    # instance labels 1..K on the CT grid
    lesions_pet: sitk.Image   # instance labels 1..K on the PET grid
    truth: dict
    dicom_study: DicomStudyInfo
    dose: PetDose
    case: Case | None = None  # what it was made of (patient frame), for a follow-up of the same patient
    scanner_lesions: list = field(default_factory=list)   # the lesions in this scan's frame, numbered as its masks


@dataclass
class Case:
    """A patient before any scanner sees them: anatomy, tracer uptake and lesions in the patient's frame."""

    seed: int
    index: int
    case_id: str
    tracer: str
    patient: Patient
    uptake: dict
    lesions: list[Lesion]


def case_rng(seed: int, index: int, *more: int) -> np.random.Generator:
    """Case ``index`` depends only on (seed, index), never on how many cases are made."""
    return np.random.default_rng(np.random.SeedSequence([seed, index, *more]))


def generate_study(
    seed: int, index: int = 0, *, tracer: str = "mixed", profile: str = "full",
    case_id: str | None = None, progress: Progress = None,
) -> SyntheticStudy:
    """Generate synthetic study ``index`` of the series started by ``seed``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    if tracer not in ("psma", "fdg", "mixed"):
        raise ValueError(f"unknown tracer {tracer!r}; choose psma, fdg or mixed")
    rng = case_rng(seed, index)
    tracer = str(rng.choice(["psma", "fdg"])) if tracer == "mixed" else tracer
    patient = Patient.sample(rng)
    uptake = sample_uptake(tracer, rng)
    lesions = sample_lesions(patient, rng, liver_suv=uptake[Tissue.LIVER])
    case = Case(seed, index, case_id or f"synth_{index:04d}", tracer, patient, uptake, lesions)
    return render_study(case, profile, rng, progress=progress)


def render_study(case: Case, profile: str, rng: np.random.Generator, *, pose: Pose | None = None,
                 visit: Visit | None = None, progress: Progress = None) -> SyntheticStudy:
    """What the scanners make of ``case``; with a ``pose``, the patient lies moved in the scanner.

    Lesions too small to cover one voxel centre on the coarse PET grid are dropped, so every
    ground-truth lesion is visible on both grids; the rest are renumbered 1..K (each lesion's
    ``source_id`` in the truth is its id in ``case``).
    """
    say = progress or (lambda f, s: None)
    settings, patient = PROFILES[profile], case.patient
    ct_grid, pet_grid = _grids(patient, settings, rng)
    if pose is not None:
        ct_grid, pet_grid = (_shifted(grid, pose.translation_mm) for grid in (ct_grid, pet_grid))
    frame = Frame(patient, pose, ct_grid)
    fine_grid = pet_grid.subdivided(settings.fine_factors_xyz)
    fwhm, noise_level, ct_sigma = rng.uniform(5.0, 7.0), rng.uniform(0.15, 0.3), rng.uniform(8.0, 25.0)

    lesions = frame.lesions(case.lesions)
    pet_body = frame.body(pet_grid)
    lesions_pet = _lesion_labels(lesions, pet_grid, pet_body)
    visible = np.bincount(lesions_pet.ravel(), minlength=len(lesions) + 1)[1:] > 0
    sources = [lesion.id for lesion, keep in zip(lesions, visible) if keep]
    lesions = [lesion for lesion, keep in zip(lesions, visible) if keep]
    for number, lesion in enumerate(lesions, start=1):
        lesion.id = number
    if not visible.all():
        lesions_pet = _lesion_labels(lesions, pet_grid, pet_body)
    if pose is None:   # the patient frame is the scanner frame: the case's lesions are these
        case.lesions[:] = lesions

    say(0.05, "anatomy on the CT grid")
    hu_body, body_grid = frame.render(ct_grid, lambda tissue: lookup_table(HU)[tissue])
    hu_body += 6.0 * smooth_field(hu_body.shape, rng)
    hu = frame.to_scanner(hu_body, body_grid, ct_grid, default=-1000.0)
    ct_body = frame.body(ct_grid)
    lesions_ct = _lesion_labels(lesions, ct_grid, ct_body)
    for lesion in lesions:
        hu[lesions_ct == lesion.id] = lesion.hu
    ct = ct_grid.image(ct_with_noise(hu, sigma_hu=ct_sigma, rng=rng))
    del hu, hu_body

    say(0.4, "activity on the fine PET grid")

    def activity_of(tissue: np.ndarray) -> np.ndarray:
        activity = lookup_table(case.uptake)[tissue]
        texture = smooth_field(activity.shape, rng)
        patchy = np.isin(tissue, [int(t) for t in PATCHY])
        # bowel: loops of uptake with quiet gaps between them; other organs: mild heterogeneity
        activity *= np.where(patchy, np.clip(0.3 + 0.7 * texture, 0.08, 1.5), 1.0 + 0.08 * texture)
        return activity

    activity_body, body_grid = frame.render(fine_grid, activity_of)
    activity = frame.to_scanner(activity_body, body_grid, fine_grid, default=0.0)
    del activity_body
    lesions_fine = _lesion_labels(lesions, fine_grid, frame.body(fine_grid))
    for lesion in lesions:
        activity[lesions_fine == lesion.id] = lesion.suv
    del lesions_fine

    say(0.7, "PET blur, partial volume and noise")
    factors_zyx = settings.fine_factors_xyz[::-1]
    pet = pet_from_activity(activity, fine_grid.spacing[::-1], factors_zyx, fwhm_mm=fwhm, noise_level=noise_level, rng=rng)
    suv = pet_grid.image(pet)

    say(0.9, "resampling CT onto the PET grid")
    ct_on_pet = resample_to(ct, suv, kind="image", default=-1024)
    dicom_study, dose = _dicom_info(case.case_id, patient, case.tracer, case.seed, case.index, rng, visit)
    truth = _truth(case.case_id, case.seed, case.index, case.tracer, patient, ct_grid, pet_grid, lesions, lesions_ct,
                   lesions_pet, fwhm, noise_level, ct_sigma)
    for entry, source in zip(truth["lesions"], sources):
        entry["source_id"] = source
    if pose is not None:
        truth["pose"] = pose.to_json()
    say(1.0, "done")
    return SyntheticStudy(case.case_id, case.tracer, ct, suv, ct_on_pet, ct_grid.image(lesions_ct),
                          pet_grid.image(lesions_pet), truth, dicom_study, dose, case, lesions)


def _grids(patient: Patient, settings: Profile, rng) -> tuple[Grid, Grid]:
    """CT: 500-mm field, feet to head; PET: a wider field with its own origin and extent."""
    length = patient.length_mm
    ct_spacing = (float(rng.choice(settings.ct_inplane_mm)),) * 2 + (float(rng.choice(settings.ct_slice_mm)),)
    ct = Grid.covering((-250.0, -240.0, 0.0), (250.0, 260.0, length), ct_spacing)
    pet_spacing = (float(rng.choice(settings.pet_inplane_mm)),) * 2 + (float(rng.choice(settings.pet_slice_mm)),)
    shift = rng.uniform(-6.0, 6.0, size=3)
    pet = Grid.covering(
        (-290.0 + shift[0], -280.0 + shift[1], -25.0 + shift[2]), (290.0 + shift[0], 300.0 + shift[1], length + 15.0), pet_spacing
    )
    return ct, pet


def _shifted(grid: Grid, shift_mm) -> Grid:
    """The same grid moved by ``shift_mm`` rounded to whole millimetres (a table position)."""
    return Grid(grid.size, grid.spacing, tuple(float(o + round(s)) for o, s in zip(grid.origin, shift_mm)))


def _lesion_labels(lesions: list[Lesion], grid: Grid, inside_body: np.ndarray) -> np.ndarray:
    """Instance labels rasterised from the analytic solids (voxel centres), restricted to the body."""
    labels = np.zeros(grid.shape, np.uint16)
    for lesion in lesions:
        paint(labels, grid, lesion.solid.inside, *lesion.solid.bbox(), lesion.id, only_where=inside_body)
    return labels


@dataclass(frozen=True)
class Visit:
    """A later visit of a study's patient: same patient id, a later date, the weight measured then."""

    patient_id: str
    days_after: int
    weight_kg: float
    tag: str                   # makes the visit's UIDs its own


def _dicom_info(case_id, patient: Patient, tracer, seed, index, rng, visit: Visit | None = None
                ) -> tuple[DicomStudyInfo, PetDose]:
    radiopharmaceutical, nuclide, half_life, dose_of = TRACERS[tracer]
    study_time = dt.datetime(2026, 1, 5, 8, 0) + dt.timedelta(days=int(index), minutes=int(rng.integers(0, 480)))
    if visit is not None:
        study_time += dt.timedelta(days=visit.days_after)
    injection = study_time - dt.timedelta(minutes=float(rng.uniform(50, 70)))
    suffix = f"/{visit.tag}" if visit is not None else ""
    uid = lambda what: generate_uid(entropy_srcs=[f"attumamba-synth/{seed}/{index}{suffix}/{what}"])  # noqa: E731
    weight = visit.weight_kg if visit is not None else patient.weight_kg
    info = DicomStudyInfo(
        patient_id=visit.patient_id if visit is not None else case_id.upper(), patient_name=f"Synthetic^{case_id}",
        patient_sex=patient.sex, patient_age_years=patient.age_years, patient_weight_kg=weight,
        patient_size_m=patient.height_m, study_uid=uid("study"), frame_of_reference_uid=uid("frame"),
        study_datetime=study_time, study_description=f"Synthetic whole-body {tracer.upper()} PET/CT",
    )
    dose = PetDose(radiopharmaceutical, nuclide, half_life, float(dose_of(weight, rng)), injection, study_time)
    return info, dose


def _truth(case_id, seed, index, tracer, patient, ct_grid, pet_grid, lesions, lesions_ct, lesions_pet, fwhm, noise, ct_sigma) -> dict:
    ct_voxel_ml = float(np.prod(ct_grid.spacing)) / 1000.0
    pet_voxel_ml = float(np.prod(pet_grid.spacing)) / 1000.0
    ct_counts = np.bincount(lesions_ct.ravel(), minlength=len(lesions) + 1)
    pet_counts = np.bincount(lesions_pet.ravel(), minlength=len(lesions) + 1)
    entries = []
    for lesion in lesions:
        entry = lesion.to_json()
        entry["voxels_ct"], entry["voxels_pet"] = int(ct_counts[lesion.id]), int(pet_counts[lesion.id])
        entry["volume_ml_ct_mask"] = round(entry["voxels_ct"] * ct_voxel_ml, 4)
        entry["volume_ml_pet_mask"] = round(entry["voxels_pet"] * pet_voxel_ml, 4)
        entries.append(entry)
    return {
        "case_id": case_id, "seed": seed, "index": index, "tracer": tracer, "patient": patient.to_json(),
        "scanner": {"pet_fwhm_mm": round(fwhm, 3), "pet_noise_level": round(noise, 4), "ct_noise_hu": round(ct_sigma, 2)},
        "grids": {"ct": ct_grid.to_json(), "pet": pet_grid.to_json()},
        "coordinates": "LPS millimetres; rotation columns are the semi-axes' directions",
        "lesions": entries,
    }
