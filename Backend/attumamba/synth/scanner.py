"""What the scanners do to the truth: PET resolution, partial volume and noise; CT noise.

PET: the true activity, sampled on a grid twice as fine as PET's, is blurred with the
system's Gaussian point-spread function (FWHM 5–7 mm), averaged over each PET voxel
(partial volume), and given count-dependent noise (variance proportional to activity),
slightly correlated between neighbours as reconstruction makes it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def smooth_field(shape, rng: np.random.Generator, *, terms: int = 6, wavelength_voxels=(25.0, 120.0)) -> np.ndarray:
    """Low-frequency texture with zero mean and unit std: a sum of random separable cosines.

    Each term is an outer product of three 1-D cosines, so the field costs a few broadcast
    multiplies instead of interpolating a noise volume.
    """
    field = np.zeros(shape, np.float32)
    for _ in range(terms):
        factors = []
        for n in shape:
            k = 2.0 * np.pi / rng.uniform(*wavelength_voxels)
            factors.append(np.cos(k * np.arange(n, dtype=np.float32) + rng.uniform(0, 2 * np.pi)).astype(np.float32))
        field += factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]
    return field / np.float32(np.sqrt(terms / 8.0))


def pet_from_activity(
    activity: np.ndarray,
    fine_spacing_zyx,
    factors_zyx,
    *,
    fwhm_mm: float,
    noise_level: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Fine-grid activity (SUV) -> reconstructed PET (SUV) on the grid ``factors`` times coarser."""
    sigma = [fwhm_mm * FWHM_TO_SIGMA / s for s in fine_spacing_zyx]
    blurred = ndimage.gaussian_filter(activity, sigma=sigma, mode="constant", truncate=3.0)
    fz, fy, fx = factors_zyx
    nz, ny, nx = (n // f for n, f in zip(blurred.shape, factors_zyx))
    pet = blurred[: nz * fz, : ny * fy, : nx * fx].reshape(nz, fz, ny, fy, nx, fx).mean(axis=(1, 3, 5))
    noise = ndimage.gaussian_filter(rng.standard_normal(pet.shape, dtype=np.float32), 0.7)
    noise /= noise.std() + 1e-6
    pet = pet + noise_level * np.sqrt(np.maximum(pet, 0.0)) * noise
    return np.maximum(pet, 0.0).astype(np.float32)


def ct_with_noise(hu: np.ndarray, *, sigma_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian quantum noise and store as int16 HU."""
    noisy = hu.astype(np.float32)
    noisy += sigma_hu * rng.standard_normal(hu.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), -1024, 3071).astype(np.int16)
