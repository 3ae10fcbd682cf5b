"""Metrics on hand-computed cases: counts, exact surface distances, autoPET conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attumamba.metrics import evaluate_case, overlap_metrics, surface_metrics, unmatched_volume_ml


def test_overlap_metrics_from_known_counts():
    pred, gt = np.zeros(100, bool), np.zeros(100, bool)
    pred[[0, 1, 2, 3]] = True          # 4 predicted
    gt[[1, 2, 3, 4, 5, 6]] = True      # 6 true, 3 shared -> TP 3, FP 1, FN 3, TN 93
    m = overlap_metrics(pred, gt)
    assert m["dice"] == pytest.approx(6 / 10)
    assert m["iou"] == pytest.approx(3 / 7)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["sensitivity"] == pytest.approx(3 / 6)
    assert m["specificity"] == pytest.approx(93 / 94)
    assert m["accuracy"] == pytest.approx(96 / 100)
    assert m["mcc"] == pytest.approx((3 * 93 - 1 * 3) / math.sqrt(4 * 6 * 94 * 96))
    assert m["ravd"] == pytest.approx(2 / 6)


def test_surface_distances_are_exact_in_mm_with_anisotropic_voxels():
    pred, gt = np.zeros((10, 10, 10), bool), np.zeros((10, 10, 10), bool)
    gt[2, 5, 5] = True
    pred[5, 5, 5] = True                 # 3 voxels apart along axis 0, spaced 2.5 mm
    m = surface_metrics(pred, gt, spacing=(2.5, 1.0, 1.0), tolerance_mm=7.0)
    assert m["hd95_mm"] == pytest.approx(7.5) and m["assd_mm"] == pytest.approx(7.5)
    assert m["nsd_7mm"] == 0.0
    assert surface_metrics(pred, gt, (2.5, 1.0, 1.0), tolerance_mm=7.5)["nsd_7.5mm"] == 1.0
    # the same offset along a 1-mm axis is 3 mm
    pred2 = np.zeros_like(gt)
    pred2[2, 5, 8] = True
    assert surface_metrics(pred2, gt, (2.5, 1.0, 1.0))["hd95_mm"] == pytest.approx(3.0)


def test_identical_masks_have_zero_distance_and_full_nsd():
    mask = np.zeros((12, 12, 12), bool)
    mask[3:9, 2:10, 4:8] = True
    m = surface_metrics(mask, mask, (1.0, 0.8, 3.0), tolerance_mm=0.5)
    assert m["hd95_mm"] == 0.0 and m["assd_mm"] == 0.0 and m["nsd_0.5mm"] == 1.0


def test_shifted_cube_has_the_shift_as_hd95():
    gt = np.zeros((20, 20, 20), bool)
    gt[5:15, 5:15, 5:15] = True
    pred = np.roll(gt, 2, axis=2)        # shifted 2 voxels of 1.5 mm
    m = surface_metrics(pred, gt, (1.0, 1.0, 1.5))
    assert m["hd95_mm"] == pytest.approx(3.0)  # the front and back faces lie 3 mm from the other surface


def test_fpv_uses_18_connectivity_and_zero_overlap():
    gt = np.zeros((4, 4, 4), bool)
    gt[0, 0, 0] = True
    corner = gt.copy()
    corner[1, 1, 1] = True               # touches the GT voxel's component only at a corner
    voxel_ml = 2.0 * 1.0 * 1.0 / 1000.0
    assert unmatched_volume_ml(corner, gt, (2.0, 1.0, 1.0)) == pytest.approx(voxel_ml)   # its own 18-component
    assert unmatched_volume_ml(corner, gt, (2.0, 1.0, 1.0), connectivity=26) == 0.0      # merged with 26
    edge = gt.copy()
    edge[1, 1, 0] = True                 # shares an edge: one 18-connected component touching GT
    assert unmatched_volume_ml(edge, gt, (2.0, 1.0, 1.0)) == 0.0


def test_fnv_counts_only_lesions_the_prediction_misses_entirely():
    gt = np.zeros((10, 10, 10), bool)
    gt[1:3, 1:3, 1:3] = True             # 8 voxels, missed
    gt[6:9, 6:9, 6:9] = True             # 27 voxels, touched by one predicted voxel
    pred = np.zeros_like(gt)
    pred[7, 7, 7] = True
    m = evaluate_case(pred, gt, (2.0, 1.0, 1.0))
    assert m["fnv_ml"] == pytest.approx(8 * 2.0 / 1000.0)
    assert m["fpv_ml"] == 0.0


def test_empty_ground_truth_follows_autopet_iii():
    gt = np.zeros((6, 6, 6), bool)
    pred = gt.copy()
    pred[1:3, 1:3, 1:3] = True
    m = evaluate_case(pred, gt, (1.0, 1.0, 1.0))
    assert math.isnan(m["dice"]) and math.isnan(m["fnv_ml"]) and math.isnan(m["hd95_mm"])
    assert m["fpv_ml"] == pytest.approx(8 / 1000.0)
    empty = evaluate_case(gt, gt, (1.0, 1.0, 1.0))
    assert empty["fpv_ml"] == 0.0 and math.isnan(empty["dice"])
