"""PERCIST reference regions: a 3 cm sphere in normal right-lobe liver and a 1 cm × 2 cm cylinder
in the descending thoracic aorta (blood pool) — proposed from CT and PET, always adjustable.

How they are proposed (on the PET grid, CT resampled onto it):
- **Liver.** The right lung's base is found on CT (air-density voxels inside the body, patient's
  right half); below it, soft tissue (20–100 HU after a 3 mm smoothing) in the right half within
  15 cm under the lung base is the liver candidate, its largest connected part the liver. The
  sphere goes where it sits deepest inside that part, away from every lesion (10 mm margin).
- **Blood pool.** On the axial slices from a fifth to half-way up the lungs (the descending aorta
  runs from the arch to the diaphragm), the vertebral body is the bone (> 150 HU) near the body's
  midline in its back half. Without contrast the aorta's wall does not show where it touches the
  spine and the heart, so the cylinder is placed by anatomy: 13 mm to the patient's left of the
  vertebral body's middle and 6 mm in front of its front edge, on slices where that spot is soft
  tissue; the cylinder stands along z at the median of those centres.

How they fail (and then say so, or mislead — which is why the reader can move them): a liver
full of metastases or fatty (below 20 HU), lungs outside the field of view, a patient lying on
the side (left/right taken from the image axes), a right hemi-hepatectomy; for the aorta, a
tortuous or right-sided aorta, large mediastinal nodes of the same density, a scan without the
thorax. A region is measured on the PET in SUV (and SUL when the patient's size is known):
mean, SD, max and the number of voxels whose centres lie inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..io import resample_to
from ..lesions.recist import Grid
from .sul import SulScale

LIVER_RADIUS_MM = 15.0
AORTA_RADIUS_MM, AORTA_LENGTH_MM = 5.0, 20.0
# The descending aorta's centre relative to the front of the vertebral body (x: to the patient's
# left, y: forward is negative in LPS): its lumen sits left-anterolateral of the body.
AORTA_OFFSET_MM = (13.0, -6.0)
LESION_MARGIN_MM = 10.0


@dataclass
class ReferenceRegion:
    kind: str                          # "liver" (sphere) or "blood_pool" (cylinder along z)
    centre_lps: tuple[float, float, float]
    radius_mm: float
    length_mm: float | None = None     # cylinders only
    how: str = "given"
    stats: dict | None = None

    def contains(self, points: np.ndarray) -> np.ndarray:
        offset = points - np.asarray(self.centre_lps)
        if self.length_mm is None:
            return np.linalg.norm(offset, axis=-1) <= self.radius_mm
        return (np.linalg.norm(offset[..., :2], axis=-1) <= self.radius_mm) & (np.abs(offset[..., 2]) <= self.length_mm / 2)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "centre_lps_mm": [round(float(c), 2) for c in self.centre_lps],
                "radius_mm": self.radius_mm, "length_mm": self.length_mm, "how": self.how, "stats": self.stats}


class NoReference(Exception):
    """No region could be proposed; the message says why and what to do."""


def measure(region: ReferenceRegion, pet_suv: sitk.Image, scale: SulScale | None = None) -> dict:
    """SUV (and SUL) statistics of the PET voxels whose centres lie inside ``region``."""
    low = np.asarray(region.centre_lps) - max(region.radius_mm, (region.length_mm or 0) / 2) - 1.0
    high = np.asarray(region.centre_lps) + max(region.radius_mm, (region.length_mm or 0) / 2) + 1.0
    corners = [pet_suv.TransformPhysicalPointToContinuousIndex(tuple(map(float, c))) for c in (low, high)]
    start = np.clip(np.floor(np.min(corners, axis=0)).astype(int), 0, np.array(pet_suv.GetSize()) - 1)
    stop = np.clip(np.ceil(np.max(corners, axis=0)).astype(int) + 1, 0, np.array(pet_suv.GetSize()))
    values = sitk.GetArrayViewFromImage(pet_suv)[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]]
    index = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(start, stop)), indexing="ij"), axis=-1)
    points = Grid.of(pet_suv).to_lps(index.reshape(-1, 3)).reshape(index.shape)
    inside = region.contains(points).transpose(2, 1, 0)
    chosen = values[inside].astype(np.float64)
    if chosen.size == 0:
        raise NoReference(f"the {region.kind} region at {region.centre_lps} holds no PET voxel; move it into the body")
    stats = {"voxels": int(chosen.size), "suv_mean": round(float(chosen.mean()), 4),
             "suv_sd": round(float(chosen.std(ddof=1)) if chosen.size > 1 else 0.0, 4),
             "suv_max": round(float(chosen.max()), 4)}
    if scale is not None and scale.available:
        stats.update(sul_mean=round(stats["suv_mean"] * scale.factor, 4), sul_sd=round(stats["suv_sd"] * scale.factor, 4),
                     sul_max=round(stats["suv_max"] * scale.factor, 4))
    return stats


def propose_liver(ct: sitk.Image, pet_suv: sitk.Image, lesions: sitk.Image | None = None) -> ReferenceRegion:
    """A 3 cm sphere deep in the right liver lobe, away from lesions (see the module docstring)."""
    hu, body, x_mid = _ct_on(ct, pet_suv)
    spacing = np.array(pet_suv.GetSpacing())[::-1]
    x = _axis_lps(pet_suv, 0)
    right = (x < x_mid)[None, None, :]
    lung = (hu < -500) & body & right
    if lung.sum() * np.prod(spacing) < 50_000:     # 50 mL: no right lung in the field of view
        raise NoReference("no right lung found on the CT, so the liver cannot be located; place the liver sphere by hand")
    z = _axis_lps(pet_suv, 2)
    lung_slices = np.nonzero(lung.sum(axis=(1, 2)) * spacing[1] * spacing[2] > 500)[0]
    base = float(np.min(z[lung_slices]))
    band = ((z > base - 150.0) & (z < base + 10.0))[:, None, None]
    soft = ndimage.gaussian_filter(hu, 3.0 / spacing)
    candidate = (soft > 20) & (soft < 100) & body & right & band
    labels, count = ndimage.label(candidate)
    if count == 0:
        raise NoReference("no soft tissue of liver density below the right lung; the liver may be fatty or out of view — "
                          "place the liver sphere by hand")
    sizes = ndimage.sum_labels(candidate, labels, range(1, count + 1))
    liver = labels == 1 + int(np.argmax(sizes))
    depth = ndimage.distance_transform_edt(liver, sampling=spacing)
    if lesions is not None:
        lesion_mask = sitk.GetArrayViewFromImage(resample_to(lesions, pet_suv, kind="label")) > 0
        clearance = ndimage.distance_transform_edt(~lesion_mask, sampling=spacing)
        depth = np.where(clearance > LIVER_RADIUS_MM + LESION_MARGIN_MM, depth, 0.0)
    best = np.unravel_index(int(np.argmax(depth)), depth.shape)
    if depth[best] < LIVER_RADIUS_MM:
        raise NoReference(f"no place in the liver holds a 3 cm sphere clear of lesions (deepest {depth[best]:.0f} mm); "
                          "the liver may be abnormal: use the blood pool, or place the sphere by hand")
    centre = pet_suv.TransformIndexToPhysicalPoint([int(v) for v in best[::-1]])
    return ReferenceRegion("liver", tuple(centre), LIVER_RADIUS_MM,
                           how=f"proposed: deepest point of the soft tissue below the right lung base (depth "
                               f"{depth[best]:.0f} mm), clear of lesions")


def propose_blood_pool(ct: sitk.Image, pet_suv: sitk.Image) -> ReferenceRegion:
    """A 1 cm × 2 cm cylinder in the descending thoracic aorta (see the module docstring)."""
    hu, body, x_mid = _ct_on(ct, pet_suv)
    spacing = np.array(pet_suv.GetSpacing())
    x, y, z = (_axis_lps(pet_suv, d) for d in range(3))
    lung = (hu < -500) & body
    slices = np.nonzero(lung.sum(axis=(1, 2)) * spacing[0] * spacing[1] > 2000)[0]
    if slices.size < 3:
        raise NoReference("no lungs found on the CT, so the thoracic aorta cannot be located; place the blood-pool "
                          "cylinder by hand")
    lo, hi = slices.min(), slices.max()
    # the descending aorta runs from the arch (upper third of the lungs) to the diaphragm (their base)
    middle = range(lo + (hi - lo) // 5, lo + (hi - lo) // 2 + 1)
    centres = []
    for k in middle:
        found = _aorta_on_slice(hu[k], body[k], x, y, x_mid, spacing)
        if found is not None:
            centres.append(found)
    if len(centres) < 2:
        raise NoReference("no aorta-like soft-tissue disc beside the spine on the thoracic slices; place the blood-pool "
                          "cylinder by hand")
    cx, cy = np.median(np.array(centres), axis=0)
    cz = float(np.mean(z[[middle.start, middle.stop - 1]]))  # mid-way along the searched stretch
    return ReferenceRegion("blood_pool", (float(cx), float(cy), cz), AORTA_RADIUS_MM, AORTA_LENGTH_MM,
                           how=f"proposed: soft-tissue disc left-anterior of the vertebral body on {len(centres)} "
                               "mid-thoracic slices (median centre)")


def _aorta_on_slice(hu: np.ndarray, body: np.ndarray, x: np.ndarray, y: np.ndarray, x_mid: float,
                    spacing: np.ndarray) -> tuple[float, float] | None:
    """The aorta's centre on one axial slice: left-anterolateral of the vertebral body's front."""
    yy, xx = np.meshgrid(y, x, indexing="ij")
    back = yy > np.median(yy[body]) if body.any() else np.zeros_like(body)
    bone = (hu > 150) & body & back & (np.abs(xx - x_mid) < 40.0)
    if bone.sum() < 4:
        return None                                   # a disc, or no spine on this slice
    spine_x, front = float(np.median(xx[bone])), float(yy[bone].min())
    centre = np.array([spine_x + AORTA_OFFSET_MM[0], front + AORTA_OFFSET_MM[1]])
    # the aorta must be there as soft tissue (not lung, not bone): check a 1 cm disc
    near = np.hypot(xx - centre[0], yy - centre[1]) <= AORTA_RADIUS_MM
    soft = (hu > -20) & (hu < 100)
    return (float(centre[0]), float(centre[1])) if near.any() and soft[near].mean() > 0.8 else None


def _ct_on(ct: sitk.Image, pet: sitk.Image) -> tuple[np.ndarray, np.ndarray, float]:
    """CT (HU) on the PET grid, the body mask (largest non-air part) and the body's mid x (LPS)."""
    hu = sitk.GetArrayFromImage(resample_to(ct, pet, default=-1024)).astype(np.float32)
    labels, count = ndimage.label(hu > -300)
    if count == 0:
        raise NoReference("the CT shows no body")
    body = labels == 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(labels), labels, range(1, count + 1))))
    body = ndimage.binary_fill_holes(body)
    x = _axis_lps(pet, 0)
    x_mid = float(np.median(np.broadcast_to(x[None, None, :], body.shape)[body]))
    return hu, body, x_mid


def _axis_lps(image: sitk.Image, axis: int) -> np.ndarray:
    """LPS coordinate along ``axis`` (0 x, 1 y, 2 z) of each index on that axis (axis-aligned grids)."""
    return image.GetOrigin()[axis] + np.arange(image.GetSize()[axis]) * image.GetSpacing()[axis] * \
        np.sign(image.GetDirection()[4 * axis] or 1.0)
