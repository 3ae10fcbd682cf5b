"""The lesion report: instances, volumes, SUV on the PET grid, PERCIST SUVpeak, HU, filters, files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.errors import InputError
from attumamba.lesions import (
    CSV_COLUMNS,
    PEAK_SPHERE_RADIUS_MM,
    analyze,
    analyze_instances,
    label_instances,
    sphere_kernel,
    write_report,
)


def image(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), pixel=None) -> sitk.Image:
    result = sitk.GetImageFromArray(np.asarray(array, dtype=pixel or np.asarray(array).dtype))
    result.SetSpacing(spacing)
    result.SetOrigin(origin)
    return result


def ball(shape, centre_zyx, radius_mm, spacing_zyx=(1.0, 1.0, 1.0)):
    grid = np.indices(shape, dtype=float)
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre_zyx, spacing_zyx)) <= radius_mm ** 2


def test_18_connectivity_splits_corner_contacts_and_numbers_by_volume():
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1          # 8 voxels
    mask[3, 3, 3] = 1                # touches the cube by a corner only: its own lesion under 18-connectivity
    mask[5:8, 5:8, 5:8] = 1          # 27 voxels
    mask[8, 8, 7] = 1                # touches the big cube by an edge: part of it
    instances = sitk.GetArrayFromImage(label_instances(image(mask)))
    assert instances.max() == 3
    assert (instances == 1).sum() == 28 and instances[8, 8, 7] == 1
    assert (instances == 2).sum() == 8 and instances[3, 3, 3] == 3


def test_an_instance_labelmap_keeps_its_numbering():
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[0:2, 0:2, 0:2] = 4
    labels[3:6, 3:6, 3:6] = 2
    report = analyze(image(labels))
    assert [(lesion["id"], lesion["voxels"]) for lesion in report["lesions"]] == [(2, 27), (4, 8)]


def test_volume_suv_and_hu_on_each_images_own_grid():
    """Labels on a 1 mm CT grid, PET on a 4 mm grid: SUV comes from PET voxels, not interpolated ones."""
    ct_shape, spacing_ct = (48, 48, 48), (1.0, 1.0, 1.0)
    lesion = ball(ct_shape, (24, 24, 24), 10.0)
    labels = image(lesion.astype(np.uint8), spacing_ct)
    ct = image(np.where(lesion, 40.0, -100.0).astype(np.float32), spacing_ct)
    pet_array = np.full((12, 12, 12), 1.0, np.float32)
    pet_array[4:8, 4:8, 4:8] = 6.0
    pet_array[6, 6, 5] = 9.5
    pet = image(pet_array, (4.0, 4.0, 4.0), origin=(1.5, 1.5, 1.5))  # voxel edges on the CT grid's
    report = analyze(labels, ct=ct, pet_suv=pet)
    (entry,) = report["lesions"]
    assert entry["volume_ml"] == pytest.approx(4 / 3 * np.pi * 10 ** 3 / 1000, rel=0.02)
    assert entry["suv_max"] == 9.5
    assert entry["ct_mean_hu"] == pytest.approx(40.0)
    assert entry["tlg"] == pytest.approx(entry["suv_mean"] * entry["volume_ml"])
    assert entry["centroid_lps"] == pytest.approx([24.0, 24.0, 24.0], abs=1e-6)
    assert report["totals"] == {"n_lesions": 1, "mtv_ml": entry["volume_ml"], "tlg": entry["tlg"], "suv_max": 9.5}


def test_suv_peak_of_a_uniform_sphere_is_its_uptake():
    spacing = (2.0, 2.0, 2.0)
    lesion = ball((40, 40, 40), (20, 20, 20), 16.0, spacing)
    pet = image(np.where(lesion, 7.0, 1.0).astype(np.float32), spacing)
    (entry,) = analyze(image(lesion.astype(np.uint8), spacing), pet_suv=pet)["lesions"]
    assert entry["suv_peak"] == pytest.approx(7.0)
    assert entry["suv_max"] == entry["suv_mean"] == 7.0


def test_suv_peak_of_one_hot_voxel_is_its_share_of_a_1_ml_sphere():
    spacing = (4.0, 4.0, 4.0)
    pet_array = np.zeros((15, 15, 15), np.float32)
    pet_array[7, 7, 7] = 10.0
    mask = np.zeros_like(pet_array, dtype=np.uint8)
    mask[7, 7, 7] = 1
    (entry,) = analyze(image(mask, spacing), pet_suv=image(pet_array, spacing))["lesions"]
    kernel = sphere_kernel((4.0, 4.0, 4.0))
    assert entry["suv_peak"] == pytest.approx(10.0 * kernel[2, 2, 2])
    # the kernel holds 1 cm³: 1000 mm³ / 64 mm³ voxels, the centre voxel wholly inside
    assert kernel.shape == (5, 5, 5) and kernel[2, 2, 2] == pytest.approx(64.0 / 1000.0, rel=0.01)
    assert PEAK_SPHERE_RADIUS_MM == pytest.approx(6.2035, abs=1e-3)


def test_suv_peak_finds_the_hottest_1_ml_not_the_hottest_voxel():
    spacing = (2.0, 2.0, 2.0)
    lesion = ball((30, 30, 40), (15, 15, 20), 20.0, spacing)
    pet_array = np.where(lesion, 4.0, 1.0).astype(np.float32)
    pet_array[ball(pet_array.shape, (15, 15, 17), 10.0, spacing)] = 8.0  # a hot 4 mL core
    pet_array[15, 15, 27] = 12.0  # a single hotter voxel elsewhere in the lesion
    (entry,) = analyze(image(lesion.astype(np.uint8), spacing), pet_suv=image(pet_array, spacing))["lesions"]
    assert entry["suv_max"] == 12.0
    assert entry["suv_peak"] == pytest.approx(8.0, rel=0.02)


def test_filters_drop_small_and_cold_lesions_and_renumber():
    mask = np.zeros((30, 30, 30), np.uint8)
    mask[2:12, 2:12, 2:12] = 1     # 1.0 mL, cold
    mask[15:20, 15:20, 15:20] = 1  # 0.125 mL, hot
    mask[25:27, 25:27, 25:27] = 1  # 0.008 mL, hot
    pet = np.ones(mask.shape, np.float32)
    pet[15:20, 15:20, 15:20] = 5.0
    pet[25:27, 25:27, 25:27] = 5.0
    labels, pet_image = image(mask), image(pet)
    assert [e["voxels"] for e in analyze(labels, pet_suv=pet_image)["lesions"]] == [1000, 125, 8]
    assert [e["voxels"] for e in analyze(labels, min_volume_ml=0.1)["lesions"]] == [1000, 125]
    instances, report = analyze_instances(labels, pet_suv=pet_image, min_volume_ml=0.1, min_suv_max=2.5)
    assert [(e["id"], e["voxels"]) for e in report["lesions"]] == [(1, 125)]
    assert np.array_equal(np.unique(sitk.GetArrayFromImage(instances)), [0, 1])
    with pytest.raises(InputError, match="PET"):
        analyze(labels, min_suv_max=2.5)


def test_an_empty_mask_gives_an_empty_report():
    report = analyze(image(np.zeros((4, 4, 4), np.uint8)), pet_suv=image(np.ones((4, 4, 4), np.float32)))
    assert report["lesions"] == [] and report["totals"]["n_lesions"] == 0 and report["totals"]["mtv_ml"] == 0


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4), np.uint8), "3D"),
    (np.full((3, 3, 3), 0.5, np.float32), "non-integer"),
    (np.full((3, 3, 3), -1, np.int16), "negative"),
])
def test_bad_labelmaps_are_refused_with_a_reason(array, message):
    with pytest.raises(InputError, match=message):
        analyze(image(array))


def test_a_pet_from_another_place_is_refused():
    labels = image(np.ones((4, 4, 4), np.uint8))
    far_pet = image(np.ones((4, 4, 4), np.float32), origin=(500.0, 0.0, 0.0))
    with pytest.raises(InputError, match="overlap"):
        analyze(labels, pet_suv=far_pet)


def test_report_files_round_trip(tmp_path):
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[2:8, 2:8, 2:8] = 1
    mask[12:15, 12:15, 12:15] = 1
    report = analyze(image(mask), pet_suv=image(np.full(mask.shape, 2.0, np.float32)))
    json_path, csv_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(report))
    rows = list(csv.DictReader(csv_path.open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [float(r["volume_ml"]) for r in rows] == [e["volume_ml"] for e in report["lesions"]]
    assert [float(r["long_axis_mm"]) for r in rows] == [e["recist"]["long_axis_mm"] for e in report["lesions"]]
