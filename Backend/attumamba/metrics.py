"""Segmentation metrics for one case: overlap, surface distances, and autoPET's FPV/FNV.

Definitions (binary masks on one grid; ``spacing`` in mm in the arrays' axis order):

- Dice, IoU, precision, sensitivity, specificity, accuracy, MCC: from the voxel confusion
  counts. RAVD is the *absolute* relative volume difference | |P| - |G| | / |G|.
- Surface distances are between boundary voxels (mask voxels with a face neighbour outside),
  measured exactly with SciPy's Euclidean distance transform in mm, as MedPy and MONAI do by
  default. (DeepMind's area-weighted ``surface-distance`` 0.1 does not run on NumPy 2.)
  HD95 = the larger of the two directed 95th percentiles (MONAI); ASSD = the mean of the two
  directed mean distances (MedPy); NSD at tolerance τ mm = the fraction of both boundaries
  within τ of the other (boundary-voxel surface Dice).
- FPV / FNV (mL), as in the autoPET III/IV evaluation: 18-connected components (cc3d) of the
  prediction (FPV) or the ground truth (FNV) with no voxel in common with the other mask.
- Empty ground truth follows autoPET III/IV: Dice and FNV are NaN and FPV is computed (0 for
  an empty prediction). Surface metrics are NaN when either mask is empty.
- Lesion detection (TP, FP, FN lesions; precision, recall, F1) by autoPET V's rule, the
  ``MetricEvaluator`` of the challenge's evaluation code (``metrics.py`` of the official
  autoPETV repository, read through its fork github.com/yoonjun0330p/autoPETV at 0d80f474; the
  "Detection-Matching Metric" of autopet-v.grand-challenge.org/evaluation):
  the lesions are the 18-connected components of each mask (a ground truth whose values go
  above 1 already numbers its lesions). A true and a predicted lesion match when their IoU is
  at least 0.1. TP = true lesions matched by at least one predicted lesion, FN = the other true
  lesions, FP = predicted lesions that match none; one lesion may match several, unpunished
  (a lesion split in two counts once; two lesions merged into one prediction count twice if
  both keep IoU >= 0.1). Unlike FPV/FNV's any-voxel overlap, a prediction that touches a lesion
  in a few voxels is a miss and a false positive. F1 = 2TP / (2TP + FP + FN), NaN without true
  lesions and 0 when none is found; precision = TP / (TP + FP) and recall = TP / (TP + FN)
  (NaN when the denominator is 0), so F1 is their harmonic mean. Over several cases the counts
  are summed and the scores taken from the sums, as autoPET V aggregates F1.
"""

from __future__ import annotations

import math

import cc3d
import numpy as np
from scipy import ndimage

NAN = float("nan")


def _binary(mask) -> np.ndarray:
    return np.asarray(mask) > 0


def confusion(pred, gt) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) voxel counts."""
    p, g = _binary(pred), _binary(gt)
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(g)) - tp
    return tp, fp, fn, p.size - tp - fp - fn


def _ratio(num: float, den: float) -> float:
    return num / den if den else NAN


def overlap_metrics(pred, gt) -> dict[str, float]:
    tp, fp, fn, tn = confusion(pred, gt)
    mcc_den = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn) if tp + fn else NAN,
        "iou": _ratio(tp, tp + fp + fn) if tp + fn else NAN,
        "precision": _ratio(tp, tp + fp),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "mcc": _ratio(tp * tn - fp * fn, mcc_den),
        "ravd": _ratio(abs((tp + fp) - (tp + fn)), tp + fn),
    }


def boundary(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with at least one face neighbour outside the mask (or outside the image)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(pred, gt, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Directed distances (mm): every boundary voxel of ``pred`` to ``gt``'s boundary, and back."""
    bp, bg = boundary(_binary(pred)), boundary(_binary(gt))
    to_gt = ndimage.distance_transform_edt(~bg, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~bp, sampling=spacing)
    return to_gt[bp], to_pred[bg]


def surface_metrics(pred, gt, spacing, tolerance_mm: float = 2.0) -> dict[str, float]:
    p, g = _binary(pred), _binary(gt)
    if not p.any() or not g.any():
        return {"hd95_mm": NAN, "assd_mm": NAN, f"nsd_{tolerance_mm:g}mm": NAN}
    d_pg, d_gp = surface_distances(p, g, spacing)
    within = np.count_nonzero(d_pg <= tolerance_mm) + np.count_nonzero(d_gp <= tolerance_mm)
    return {
        "hd95_mm": float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))),
        "assd_mm": float((d_pg.mean() + d_gp.mean()) / 2.0),
        f"nsd_{tolerance_mm:g}mm": within / (d_pg.size + d_gp.size),
    }


def unmatched_volume_ml(source, other, spacing, connectivity: int = 18) -> float:
    """Volume (mL) of the ``source`` components that share no voxel with ``other``."""
    labels = cc3d.connected_components(_binary(source).astype(np.uint8), connectivity=connectivity)
    touching = np.unique(labels[_binary(other)])
    counts = np.bincount(labels.ravel())
    unmatched = np.setdiff1d(np.arange(1, counts.size), touching)
    return float(counts[unmatched].sum() * np.prod(spacing) / 1000.0)


#: autoPET V: a true and a predicted lesion match when their IoU reaches this value.
DETECTION_IOU = 0.1
DETECTION_RULE = "autoPET V: 18-connected lesions; a true and a predicted lesion match at IoU >= 0.1"


def lesion_labels(mask, connectivity: int = 18) -> np.ndarray:
    """Lesion ids 1..N: the mask's own values when they go above 1, else its connected components."""
    array = np.asarray(mask)
    if array.size and array.max() > 1:
        ids, inverse = np.unique(np.where(array > 0, array, 0), return_inverse=True)
        inverse = inverse.reshape(array.shape)
        return inverse if ids[0] == 0 else inverse + 1
    return cc3d.connected_components(_binary(array).astype(np.uint8), connectivity=connectivity)


def lesion_counts(pred, gt, iou: float = DETECTION_IOU, connectivity: int = 18) -> tuple[int, int, int]:
    """(TP, FP, FN) lesions by autoPET V's matching rule (module docstring)."""
    pred_ids = cc3d.connected_components(_binary(pred).astype(np.uint8), connectivity=connectivity)
    gt_ids = lesion_labels(gt, connectivity)
    n_pred, n_gt = int(pred_ids.max(initial=0)), int(gt_ids.max(initial=0))
    both = (pred_ids > 0) & (gt_ids > 0)
    pairs, shared = np.unique(gt_ids[both].astype(np.int64) * (n_pred + 1) + pred_ids[both], return_counts=True)
    true_id, pred_id = np.divmod(pairs, n_pred + 1)
    true_size = np.bincount(gt_ids.ravel(), minlength=n_gt + 1)[true_id]
    pred_size = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)[pred_id]
    matched = shared / (true_size + pred_size - shared) >= iou
    tp = np.unique(true_id[matched]).size
    return tp, n_pred - np.unique(pred_id[matched]).size, n_gt - tp


def detection_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Lesion counts with precision, recall and F1 (autoPET V's conventions, module docstring)."""
    f1 = NAN if tp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return {"lesion_tp": int(tp), "lesion_fp": int(fp), "lesion_fn": int(fn),
            "lesion_precision": _ratio(tp, tp + fp), "lesion_recall": _ratio(tp, tp + fn), "lesion_f1": f1}


def summed_detection(rows) -> dict[str, float]:
    """Detection scores of several cases from their summed lesion counts (rows of :func:`evaluate_case`)."""
    return detection_scores(*(sum(int(row[f"lesion_{n}"]) for row in rows) for n in ("tp", "fp", "fn")))


def evaluate_case(pred, gt, spacing, tolerance_mm: float = 2.0) -> dict[str, float]:
    """Every metric for one case (see the module docstring for each definition)."""
    gt_empty = not _binary(gt).any()
    return {
        **overlap_metrics(pred, gt),
        **surface_metrics(pred, gt, spacing, tolerance_mm),
        "fpv_ml": unmatched_volume_ml(pred, gt, spacing),
        "fnv_ml": NAN if gt_empty else unmatched_volume_ml(gt, pred, spacing),
        "gt_volume_ml": float(np.count_nonzero(_binary(gt)) * np.prod(spacing) / 1000.0),
        "pred_volume_ml": float(np.count_nonzero(_binary(pred)) * np.prod(spacing) / 1000.0),
        **detection_scores(*lesion_counts(pred, gt)),
    }
