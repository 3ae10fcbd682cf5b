"""The coronal MIP figure: orientation (patient right on the viewer's left, head up) and outlines."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from matplotlib.image import imread

from attumamba.viz import render_pet_ct_mip


def _image(array: np.ndarray, spacing, origin) -> sitk.Image:
    image = sitk.GetImageFromArray(array)  # array is [z, y, x]
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _study():
    """CT 1 mm grid, PET 4 mm grid with another origin; one hot spot at the patient's left, high up."""
    ct = _image(np.full((60, 40, 50), 40, np.int16), (1.0, 1.0, 2.0), (-25.0, -20.0, 0.0))
    pet = np.zeros((32, 12, 15), np.float32)
    pet_origin = (-30.0, -24.0, -4.0)
    # physical x = +15 mm (patient left), z = +100 mm (upper part of the 120 mm field)
    ix, iz = round((15.0 - pet_origin[0]) / 4.0), round((100.0 - pet_origin[2]) / 4.0)
    pet[iz - 1 : iz + 2, 5:8, ix - 1 : ix + 2] = 7.0  # inside the 0..10 display range (hot saturates to white above it)
    labels = (pet > 0).astype(np.uint8)
    return ct, _image(pet, (4.0, 4.0, 4.0), pet_origin), _image(labels, (4.0, 4.0, 4.0), pet_origin)


def _hot_pixels(png) -> np.ndarray:
    rgb = imread(png)[..., :3]
    return (rgb[..., 0] > 0.8) & (rgb[..., 2] < 0.5)  # hot colormap: red/yellow, not blue


def test_hot_spot_at_patient_left_appears_top_right(tmp_path):
    ct, pet, _ = _study()
    png = render_pet_ct_mip(ct, pet, tmp_path / "mip.png", colorbar=False)
    hot = _hot_pixels(png)
    rows, cols = np.nonzero(hot)
    assert rows.size > 0, "the hot spot is not drawn"
    height, width = hot.shape
    assert cols.mean() > 0.6 * width, "patient left (+x in LPS) must be on the viewer's right"
    assert rows.mean() < 0.3 * height, "superior (+z) must be at the top"
    # the figure keeps the CT's physical aspect: 50 mm wide, 120 mm high
    assert abs(width / height - 50 / 120) < 0.05


def test_lesion_outline_is_drawn_in_cyan(tmp_path):
    ct, pet, labels = _study()
    plain = imread(render_pet_ct_mip(ct, pet, tmp_path / "plain.png", colorbar=False))[..., :3]
    outlined = imread(render_pet_ct_mip(ct, pet, tmp_path / "outlined.png", labels=labels, colorbar=False))[..., :3]
    cyan = lambda rgb: (rgb[..., 0] < 0.4) & (rgb[..., 1] > 0.7) & (rgb[..., 2] > 0.7)  # noqa: E731
    assert cyan(plain).sum() == 0
    assert cyan(outlined).sum() > 10
