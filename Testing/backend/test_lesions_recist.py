"""RECIST long/short axes on analytic shapes: ellipses at several rotations, anisotropic voxels,
a C-shape, a one-slice lesion, a rotated grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.lesions import analyze
from attumamba.lesions.recist import Grid, measurable, recist_axes


def image(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    result = sitk.GetImageFromArray(array.astype(np.uint8))
    result.SetSpacing(spacing)
    result.SetOrigin(origin)
    if direction is not None:
        result.SetDirection(direction)
    return result


def ellipse_mask(shape_zyx, spacing_xyz, a_mm, b_mm, angle_deg, slices=slice(None)):
    """A cylinder of elliptic section (semi-axes a, b in mm, rotated in-plane) centred in the grid."""
    z, y, x = np.indices(shape_zyx, dtype=float)
    x = (x - (shape_zyx[2] - 1) / 2) * spacing_xyz[0]
    y = (y - (shape_zyx[1] - 1) / 2) * spacing_xyz[1]
    t = np.radians(angle_deg)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    mask = (u / a_mm) ** 2 + (v / b_mm) ** 2 <= 1
    keep = np.zeros(shape_zyx[0], bool)
    keep[slices] = True
    return mask & keep[:, None, None]


@pytest.mark.parametrize("angle", [0, 20, 45, 70, 90, 135])
@pytest.mark.parametrize("spacing", [(0.5, 0.5, 2.0), (0.6, 0.9, 3.0)], ids=["isotropic-in-plane", "anisotropic"])
def test_ellipse_axes_at_any_in_plane_rotation(angle, spacing):
    shape = (5, int(60 / spacing[1]), int(60 / spacing[0]))
    mask = ellipse_mask(shape, spacing, a_mm=20.0, b_mm=8.0, angle_deg=angle, slices=slice(1, 4))
    axes = recist_axes(mask, Grid.of(image(mask, spacing)))
    # sub-voxel contours sit about half a voxel outside the outermost voxel centres
    tolerance = 1.0 * max(spacing[:2])
    assert axes.long_axis_mm == pytest.approx(40.0, abs=tolerance)
    assert axes.short_axis_mm == pytest.approx(16.0, abs=tolerance)
    long_ends, short_ends = np.asarray(axes.long_axis_lps), np.asarray(axes.short_axis_lps)
    assert np.linalg.norm(long_ends[1] - long_ends[0]) == pytest.approx(axes.long_axis_mm)
    assert np.linalg.norm(short_ends[1] - short_ends[0]) == pytest.approx(axes.short_axis_mm)
    direction = np.diff(long_ends, axis=0)[0]
    off = (np.degrees(np.arctan2(direction[1], direction[0])) - angle) % 180
    assert min(off, 180 - off) < 6  # along the ellipse's major axis (a flat voxel tip may tilt the chord)
    assert abs(np.dot(direction, np.diff(short_ends, axis=0)[0])) < 1e-6  # perpendicular
    assert long_ends[0][2] == long_ends[1][2] == short_ends[0][2] == axes.slice_z_lps  # one axial plane
    assert axes.measurable


def test_sphere_axes_equal_its_diameter_and_the_slice_is_the_widest():
    spacing = (0.8, 0.8, 0.8)
    z, y, x = np.indices((40, 40, 40), dtype=float)
    mask = ((x - 19.5) ** 2 + (y - 19.5) ** 2 + (z - 21.5) ** 2) * 0.64 <= 12.0 ** 2
    axes = recist_axes(mask, Grid.of(image(mask, spacing)))
    assert axes.long_axis_mm == pytest.approx(24.0, abs=0.8)
    assert axes.short_axis_mm == pytest.approx(24.0, abs=1.2)
    assert axes.slice_z_lps == pytest.approx(21.5 * 0.8, abs=0.8 + 1e-6)


def brute_force_short_axis(section: np.ndarray, ends) -> float:
    """Longest run of lesion pixels along lines perpendicular to the long axis through it (0.05 mm steps)."""
    start, end = (np.asarray(e)[:2] for e in ends)
    length = np.linalg.norm(end - start)
    u = (end - start) / length
    v = np.array([-u[1], u[0]])
    b = np.arange(-80, 80, 0.05)
    best = 0.0
    for t in np.linspace(0, length, 600):
        points = start + t * u + b[:, None] * v
        col, row = np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)
        valid = (row >= 0) & (row < section.shape[0]) & (col >= 0) & (col < section.shape[1])
        inside = np.zeros(b.size, bool)
        inside[valid] = section[row[valid], col[valid]]
        centre = np.searchsorted(b, 0.0)
        if not inside[centre]:
            continue
        low = centre - np.argmin(inside[centre::-1]) + 1
        high = centre + np.argmin(inside[centre:]) - 1
        best = max(best, b[high] - b[low] + 1.0 * abs(v).max())  # a run of n pixels spans n pixel widths
    return best


def test_c_shape_short_axis_is_the_inside_chord_crossing_the_long_axis():
    """A thick C open to +x: the long axis runs top to bottom across the hole; the short axis must be
    an inside segment of the wall that crosses it, not the 61 mm caliper width of the outline."""
    y, x = np.indices((80, 80), dtype=float)
    r = np.hypot(x - 40, y - 40)
    ring = (r <= 30) & (r >= 20) & ~((x > 40) & (np.abs(y - 40) < 12))
    mask = np.repeat(ring[None], 3, axis=0)
    axes = recist_axes(mask, Grid.of(image(mask)))
    assert axes.long_axis_mm == pytest.approx(61.0, abs=1.5)
    assert axes.short_axis_mm == pytest.approx(brute_force_short_axis(ring, axes.long_axis_lps), abs=1.5)
    assert axes.short_axis_mm < 0.8 * 61.0
    a, b = np.asarray(axes.short_axis_lps)
    for point in a + np.linspace(0.02, 0.98, 50)[:, None] * (b - a):
        assert ring[int(round(point[1])), int(round(point[0]))]  # the chord lies in the lesion


def test_one_slice_lesion_and_the_thick_slice_rule():
    thin = ellipse_mask((3, 40, 40), (1.0, 1.0, 6.0), 5.5, 3.0, 0, slices=slice(1, 2))
    axes = recist_axes(thin, Grid.of(image(thin, (1.0, 1.0, 6.0))))
    assert axes.slice_z_lps == pytest.approx(6.0)
    assert 10.0 <= axes.long_axis_mm < 12.5
    assert not axes.measurable  # slices > 5 mm: the minimum is 2 x 6 mm
    assert measurable(10.0, 5.0) and not measurable(9.9, 5.0) and measurable(12.0, 6.0)


def test_a_rotated_grid_measures_in_patient_millimetres():
    """The same lesion on a grid whose rows and columns are swapped and flipped in LPS."""
    mask = ellipse_mask((3, 50, 50), (1.0, 1.0, 2.0), 15.0, 6.0, 30, slices=slice(1, 2))
    direction = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    rotated = recist_axes(mask, Grid.of(image(mask, (1.0, 1.0, 2.0), (10.0, -5.0, 100.0), direction)))
    plain = recist_axes(mask, Grid.of(image(mask, (1.0, 1.0, 2.0))))
    assert rotated.long_axis_mm == pytest.approx(plain.long_axis_mm)
    assert rotated.short_axis_mm == pytest.approx(plain.short_axis_mm)
    assert rotated.slice_z_lps == pytest.approx(102.0)


def test_report_recist_end_points_are_in_the_lesion_and_in_lps():
    spacing, origin = (0.9, 0.9, 2.5), (-100.0, 50.0, -300.0)
    mask = ellipse_mask((7, 60, 60), spacing, 18.0, 9.0, 40, slices=slice(2, 5))
    labels = image(mask, spacing, origin)
    lesion = analyze(labels)["lesions"][0]
    for end in lesion["recist"]["long_axis_lps"] + lesion["recist"]["short_axis_lps"]:
        index = np.round(labels.TransformPhysicalPointToContinuousIndex(end)).astype(int)
        # end points sit on the sub-voxel outline: at most one voxel from a lesion voxel
        near = mask[index[2], index[1] - 1:index[1] + 2, index[0] - 1:index[0] + 2]
        assert near.any()
