"""resample_to, overlap_fraction and check_same_space on grids with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.errors import InputError
from attumamba.io import check_same_space, overlap_fraction, resample_to
from attumamba.io.resample import default_fill


def ramp_x(size=(10, 6, 4), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    """Voxel value = physical x (mm): linear interpolation reproduces it exactly."""
    x = np.arange(size[0]) * spacing[0] + origin[0]
    array = np.broadcast_to(x, (size[2], size[1], size[0])).astype(np.float32)
    image = sitk.GetImageFromArray(array.copy())
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def grid(size, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    image = sitk.Image(size, sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_half_voxel_shift_interpolates_linearly_and_fills_outside():
    reference = grid((10, 6, 4), origin=(0.5, 0.0, 0.0))
    out = sitk.GetArrayFromImage(resample_to(ramp_x(), reference, default=-7.0))
    # Reference voxel i sits at x = i + 0.5: the ramp gives 0.5, 1.5, ... 8.5; x = 9.5 is outside.
    np.testing.assert_allclose(out[2, 3, :9], np.arange(9) + 0.5, atol=1e-5)
    assert out[2, 3, 9] == -7.0


def test_coarser_spacing_and_origin_are_respected():
    reference = grid((4, 3, 2), spacing=(2.0, 2.0, 2.0), origin=(1.0, 0.0, 0.0))
    out = sitk.GetArrayFromImage(resample_to(ramp_x(), reference))
    np.testing.assert_allclose(out[0, 0], [1.0, 3.0, 5.0, 7.0], atol=1e-5)


def test_direction_is_respected():
    # Reference whose x axis points the other way, starting at x = 9: the ramp comes out reversed.
    reference = grid((10, 6, 4), origin=(9.0, 0.0, 0.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))
    reference.SetOrigin((9.0, 0.0, 3.0))
    out = sitk.GetArrayFromImage(resample_to(ramp_x(), reference))
    np.testing.assert_allclose(out[0, 0], np.arange(9, -1, -1), atol=1e-5)


def test_labels_keep_their_values_and_type():
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2, 7], dtype=np.uint8), size=(6, 8, 8))
    image = sitk.GetImageFromArray(labels)
    reference = grid((13, 11, 9), spacing=(0.61, 0.7, 0.63), origin=(0.2, 0.1, 0.3))
    out = resample_to(image, reference, kind="label")
    assert out.GetPixelID() == sitk.sitkUInt8
    values = set(np.unique(sitk.GetArrayFromImage(out)).tolist())
    assert values <= {0, 1, 2, 7} and len(values) == 4
    # The same call with kind="image" blends labels into values that exist in neither.
    blended = set(np.round(np.unique(sitk.GetArrayFromImage(resample_to(image, reference))), 3))
    assert not blended <= {0, 1, 2, 7}
    with pytest.raises(ValueError):
        resample_to(image, reference, kind="nearest")


def test_default_fill_is_air_for_ct_and_zero_for_pet():
    ct = sitk.Image((4, 4, 4), sitk.sitkInt16) - 1000
    pet = sitk.Image((4, 4, 4), sitk.sitkFloat32)
    pet.SetMetaData("attumamba.units", "SUVbw")
    tagged_ct = sitk.Image((4, 4, 4), sitk.sitkInt16)
    tagged_ct.SetMetaData("attumamba.modality", "CT")
    assert default_fill(ct) == -1024.0  # minimum −1000 looks like air in HU
    assert default_fill(pet) == 0.0
    assert default_fill(tagged_ct) == -1024.0
    assert default_fill(tagged_ct, "label") == 0.0
    far = grid((4, 4, 4), origin=(100.0, 0.0, 0.0))
    assert sitk.GetArrayFromImage(resample_to(tagged_ct, far)).max() == -1024.0
    assert sitk.GetArrayFromImage(resample_to(pet, far)).min() == 0.0
    moved = resample_to(pet, far, default=3.0)
    assert sitk.GetArrayFromImage(moved).min() == 3.0
    assert moved.GetMetaData("attumamba.units") == "SUVbw"


def test_overlap_fraction_of_known_boxes():
    a = grid((10, 10, 10))  # box −0.5..9.5 mm on each axis
    assert overlap_fraction(a, grid((10, 10, 10), origin=(5.0, 0.0, 0.0))) == pytest.approx(0.5)
    assert overlap_fraction(a, grid((4, 4, 4), spacing=(2.0, 2.0, 2.0), origin=(2.0, 2.0, 2.0))) == 1.0
    assert overlap_fraction(a, grid((10, 10, 10), origin=(50.0, 0.0, 0.0))) == 0.0


def test_check_same_space_refuses_little_overlap_and_other_frames():
    a = grid((10, 10, 10))
    assert check_same_space(a, grid((10, 10, 10), origin=(2.0, 0.0, 0.0))) == pytest.approx(0.8)
    with pytest.raises(InputError, match=r"overlap by only 30%"):
        check_same_space(a, grid((10, 10, 10), origin=(7.0, 0.0, 0.0)))
    b = grid((10, 10, 10))
    a.SetMetaData("attumamba.frame_of_reference_uid", "1.2.3")
    b.SetMetaData("attumamba.frame_of_reference_uid", "1.2.4")
    with pytest.raises(InputError, match=r"CT and PET have different FrameOfReferenceUIDs \(1.2.3 vs 1.2.4\)"):
        check_same_space(a, b)
