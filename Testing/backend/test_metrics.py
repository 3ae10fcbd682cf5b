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


# Lesion detection by autoPET V's rule: 18-connected lesions, matched at IoU >= 0.1, several-to-one unpunished.

def _detect(pred, gt) -> dict:
    """The detection columns of evaluate_case (1-mm voxels)."""
    from attumamba import metrics

    scores = metrics.evaluate_case(pred, gt, (1.0, 1.0, 1.0))
    return {key[len("lesion_"):]: value for key, value in scores.items() if key.startswith("lesion_")}


def _counts(pred, gt) -> tuple[int, int, int]:
    found = _detect(pred, gt)
    return found["tp"], found["fp"], found["fn"]


def _cube(shape=(20, 20, 20)) -> np.ndarray:
    return np.zeros(shape, bool)


def test_a_lesion_found_is_one_true_positive():
    gt = _cube()
    gt[4:7, 4:7, 4:7] = True
    pred = gt.copy()
    pred[4, 4, 4] = False                 # a slightly smaller prediction still matches
    assert _detect(pred, gt) == {"tp": 1, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_a_lesion_split_in_two_counts_once_and_a_sliver_of_it_is_a_false_positive():
    gt = _cube()
    gt[5:7, 5:7, 2:12] = True             # a 40-voxel bar
    pred = _cube()
    pred[5:7, 5:7, 2:6] = True            # 16 voxels: IoU 0.4
    pred[5:7, 5:7, 8:12] = True           # 16 voxels: IoU 0.4, a separate component
    assert _counts(pred, gt) == (1, 0, 0)
    sliver = pred.copy()
    sliver[5, 5:7, 7] = False
    sliver[5:7, 5:7, 8:12] = False
    sliver[5, 5:7, 10] = True             # 2 voxels: IoU 0.05 < 0.1
    assert _counts(sliver, gt) == (1, 1, 0)


def test_two_lesions_merged_into_one_prediction_both_count_while_it_keeps_iou_01():
    gt = _cube()
    gt[4:7, 4:7, 2:5] = True              # 27 voxels
    gt[4:7, 4:7, 6:9] = True              # 27 voxels, one empty slice apart
    pred = _cube()
    pred[4:7, 4:7, 2:9] = True            # 63 voxels bridging both: IoU 27/63 with each
    assert _counts(pred, gt) == (2, 0, 0)
    flood = pred.copy()
    flood[:, 7:20, :] = True              # the same prediction grown into an organ: IoU < 0.1 with both
    scores = _detect(flood, gt)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (0, 1, 2) and scores["f1"] == 0.0
    from attumamba import metrics
    assert metrics.evaluate_case(flood, gt, (1.0, 1.0, 1.0))["fnv_ml"] == 0.0  # FNV's any-voxel overlap


def test_a_lesion_touched_by_one_voxel_is_missed_unless_that_voxel_is_a_tenth_of_it():
    gt = _cube()
    gt[4:7, 4:7, 4:7] = True              # 27 voxels
    touch = _cube()
    touch[5, 5, 5] = True                 # IoU 1/27
    assert _counts(touch, gt) == (0, 1, 1)
    from attumamba import metrics
    scores = metrics.evaluate_case(touch, gt, (1.0, 1.0, 1.0))
    assert scores["fnv_ml"] == 0.0 and scores["fpv_ml"] == 0.0  # FPV/FNV count it as found
    ten, eleven = _cube(), _cube()
    ten[3, 3, 0:10] = True
    eleven[3, 3, 0:11] = True
    voxel = _cube()
    voxel[3, 3, 4] = True
    assert _counts(voxel, ten) == (1, 0, 0)      # IoU exactly 0.1 matches
    assert _counts(voxel, eleven) == (0, 1, 1)   # IoU 1/11 does not


def test_false_positives_and_empty_cases_follow_autopet_v():
    gt = _cube()
    gt[2:5, 2:5, 2:5] = True
    pred = gt.copy()
    pred[12:15, 12:15, 12:15] = True      # found, plus one false positive far away
    scores = _detect(pred, gt)
    assert scores == {"tp": 1, "fp": 1, "fn": 0, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}
    no_lesion = _detect(pred, _cube())    # lesion-free case: F1 and recall undefined, the false positives count
    assert (no_lesion["tp"], no_lesion["fp"], no_lesion["fn"], no_lesion["precision"]) == (0, 2, 0, 0.0)
    assert math.isnan(no_lesion["f1"]) and math.isnan(no_lesion["recall"])
    empty = _detect(_cube(), _cube())
    assert (empty["tp"], empty["fp"], empty["fn"]) == (0, 0, 0)
    assert all(math.isnan(empty[k]) for k in ("precision", "recall", "f1"))
    missed = _detect(_cube(), gt)         # nothing predicted: F1 0, precision undefined
    assert (missed["fn"], missed["f1"], missed["recall"]) == (1, 0.0, 0.0) and math.isnan(missed["precision"])


def test_lesions_are_18_connected_or_the_ground_truths_own_numbers():
    gt = _cube()
    gt[3, 3, 3] = gt[4, 4, 4] = True      # corner neighbours: two lesions under 18-connectivity
    pred = _cube()
    pred[3, 3, 3] = True
    assert _counts(pred, gt) == (1, 0, 1)
    numbered = _cube().astype(np.uint8)
    numbered[2:5, 2:5, 2:5] = 1
    numbered[2:5, 2:5, 5:8] = 2           # two touching lesions, numbered apart
    pred = numbered == 1
    assert _counts(pred, numbered) == (1, 0, 1)
    assert _counts(pred, numbered > 0) == (1, 0, 0)  # as one binary mask they are one lesion (IoU 0.5)


def test_scores_over_cases_come_from_the_summed_counts():
    from attumamba import metrics

    rows = [{"lesion_tp": 1, "lesion_fp": 0, "lesion_fn": 1}, {"lesion_tp": 0, "lesion_fp": 2, "lesion_fn": 0}]
    total = metrics.summed_detection(rows)
    assert (total["lesion_tp"], total["lesion_fp"], total["lesion_fn"]) == (1, 2, 1)
    assert total["lesion_precision"] == pytest.approx(1 / 3) and total["lesion_recall"] == 0.5
    assert total["lesion_f1"] == pytest.approx(2 / 5)  # not the mean of the per-case F1 (0.667 and NaN)
