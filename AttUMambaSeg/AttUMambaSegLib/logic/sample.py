"""A tiny synthetic PET/CT study for the module's self-test: a body with one hot sphere.

CT in HU and PET in SUV on grids of their own (as a scanner writes them): a soft-tissue
elliptic cylinder in air, and on the PET a sphere of SUV 12 in a background of SUV 1. Small
enough to segment in seconds on a CPU backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: Where the hot sphere is (LPS, mm) and its radius.
LESION_CENTRE_LPS = (20.0, -10.0, 6.0)
LESION_RADIUS_MM = 12.0
LESION_SUV = 12.0


def _grid(size, spacing) -> tuple[sitk.Image, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An empty image centred on the origin and its voxel centres' LPS coordinates (x, y, z arrays)."""
    size, spacing = np.asarray(size), np.asarray(spacing, float)
    origin = -(size - 1) * spacing / 2.0
    k, j, i = np.indices(size[::-1])
    coordinates = (origin[0] + i * spacing[0], origin[1] + j * spacing[1], origin[2] + k * spacing[2])
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    return image, coordinates


def _with_array(template: sitk.Image, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(template)
    return image


def synthetic_study(seed: int = 0) -> tuple[sitk.Image, sitk.Image]:
    """(CT, PET) as SimpleITK images, sharing one patient space."""
    rng = np.random.default_rng(seed)
    ct_template, (x, y, z) = _grid((80, 64, 40), (2.5, 2.5, 3.0))
    body = (x / 90.0) ** 2 + (y / 70.0) ** 2 <= 1.0
    sphere = _sphere(x, y, z)
    ct = np.where(body, rng.normal(40.0, 12.0, body.shape), -1000.0) + np.where(sphere, 15.0, 0.0)

    pet_template, (x, y, z) = _grid((52, 40, 30), (4.0, 4.0, 4.0))
    body = (x / 90.0) ** 2 + (y / 70.0) ** 2 <= 1.0
    pet = np.where(body, rng.normal(1.0, 0.08, body.shape).clip(0.2), 0.0)
    pet = np.where(_sphere(x, y, z), LESION_SUV, pet)
    return _with_array(ct_template, ct), _with_array(pet_template, pet)


def _sphere(x, y, z) -> np.ndarray:
    cx, cy, cz = LESION_CENTRE_LPS
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= LESION_RADIUS_MM ** 2


def write_synthetic_study(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the study as ``CT.nrrd`` and ``PET.nrrd`` into ``folder``; their paths by name."""
    paths = {"CT": Path(folder) / "CT.nrrd", "PET": Path(folder) / "PET.nrrd"}
    for image, name in zip(synthetic_study(seed), ("CT", "PET")):
        sitk.WriteImage(image, str(paths[name]))
    return paths
