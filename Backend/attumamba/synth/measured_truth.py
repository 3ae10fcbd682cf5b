"""The response truth's uptake, as a perfect reader would measure it on the scan the scanner made.

PERCIST and Deauville are defined on measured images: a lesion's SUVmax and SULpeak include the
scanner's blur and partial volume, and a reference region's SD is mostly the image's noise. So the
true uptake of a pair is measured on each time point's written PET, within the *true* lesion
masks (the same lesion analysis the product uses) and within the *true* reference regions, placed
on the generator's anatomy, not on what the CT shows:

- liver: a 3 cm sphere at the deepest point of the true liver (on the PET grid), at least 25 mm
  (sphere radius + 10 mm) from every true lesion;
- blood pool: a 1 cm × 2 cm cylinder along z on the true aorta's axis, at the middle of its
  thoracic part (the slices where the lungs are, 20 mm clear of the aortic arch's top).

The activity the generator painted (the lesion's "real" SUV, before the scanner) stays in the
truth beside it as ``activity_suv``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..lesions.report import analyze_instances
from ..response.references import (AORTA_LENGTH_MM, AORTA_RADIUS_MM, LESION_MARGIN_MM, LIVER_RADIUS_MM,
                                   ReferenceRegion, measure)
from .frame import Frame
from .grid import Grid
from .pose import Pose
from .study import SyntheticStudy
from .tissues import Tissue

ARCH_CLEARANCE_MM = 20.0


def lesion_uptake(study: SyntheticStudy) -> dict[int, dict]:
    """Each true lesion's SUV/SUL max and peak on the written PET, by its id in the truth."""
    info = study.dicom_study
    _, report = analyze_instances(study.lesions_ct, study.ct, study.suv,
                                  patient=(info.patient_sex, info.patient_size_m, info.patient_weight_kg))
    return {entry["id"]: {key: entry[key] for key in ("suv_max", "suv_peak", "sul_max", "sul_peak")}
            for entry in report["lesions"]}


def true_references(study: SyntheticStudy, pose: Pose | None, scale) -> dict[str, ReferenceRegion]:
    """The liver sphere and blood-pool cylinder on the true anatomy, measured on the written PET."""
    grids = study.truth["grids"]
    ct_grid, pet_grid = (Grid(tuple(g["size"]), tuple(g["spacing_mm"]), tuple(g["origin_lps_mm"]))
                         for g in (grids["ct"], grids["pet"]))
    frame = Frame(study.case.patient, pose, ct_grid)
    tissue, body_grid = frame.render(pet_grid, lambda classes: classes)
    masks = {kind: frame.to_scanner((tissue == kind).astype(np.float32), body_grid, pet_grid, default=0.0) > 0.5
             for kind in (Tissue.LIVER, Tissue.BLOOD, Tissue.LUNG)}
    spacing = np.asarray(pet_grid.spacing)[::-1]
    lesions = sitk.GetArrayViewFromImage(study.lesions_pet) > 0
    regions = {"liver": _liver(masks[Tissue.LIVER], lesions, spacing, pet_grid),
               "blood_pool": _blood_pool(masks[Tissue.BLOOD], masks[Tissue.LUNG], spacing, pet_grid)}
    for region in regions.values():
        region.stats = measure(region, study.suv, scale)
    return regions


def _liver(liver: np.ndarray, lesions: np.ndarray, spacing: np.ndarray, grid: Grid) -> ReferenceRegion:
    depth = ndimage.distance_transform_edt(liver, sampling=spacing)
    if lesions.any():
        clearance = ndimage.distance_transform_edt(~lesions, sampling=spacing)
        depth = np.where(clearance > LIVER_RADIUS_MM + LESION_MARGIN_MM, depth, 0.0)
    best = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return ReferenceRegion("liver", _lps(grid, best), LIVER_RADIUS_MM,
                           how=f"true anatomy: deepest normal liver ({depth[best]:.0f} mm), clear of lesions")


def _blood_pool(aorta: np.ndarray, lung: np.ndarray, spacing: np.ndarray, grid: Grid) -> ReferenceRegion:
    slices = np.nonzero(aorta.any(axis=(1, 2)) & lung.any(axis=(1, 2)))[0]
    top = int(slices.max()) - int(np.ceil(ARCH_CLEARANCE_MM / spacing[0]))
    thoracic = slices[slices <= top] if (slices <= top).any() else slices
    middle = int(thoracic[len(thoracic) // 2])
    y, x = ndimage.center_of_mass(aorta[middle])
    return ReferenceRegion("blood_pool", _lps(grid, (middle, y, x)), AORTA_RADIUS_MM, AORTA_LENGTH_MM,
                           how="true anatomy: the aorta's axis at the middle of its thoracic part")


def _lps(grid: Grid, zyx) -> tuple[float, float, float]:
    return tuple(float(o + s * i) for o, s, i in zip(grid.origin, grid.spacing, (zyx[2], zyx[1], zyx[0])))
