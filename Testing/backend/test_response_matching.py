"""Registration and lesion matching on a synthetic study moved by a known transform (issue 18, item 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from attumamba.response.matching import match_lesions
from attumamba.response.registration import point_error_mm, register_follow_up
from attumamba.synth.study import generate_study


@pytest.fixture(scope="module")
def study():
    found = generate_study(7, 4, tracer="psma", profile="compact")
    assert len(found.truth["lesions"]) >= 3
    return found


def known_motion() -> sitk.Euler3DTransform:
    """Baseline point → follow-up point: 3° about z, 2° about x, a shift of about 27 mm."""
    motion = sitk.Euler3DTransform()
    motion.SetRotation(math.radians(2.0), 0.0, math.radians(3.0))
    motion.SetTranslation((15.0, -10.0, 20.0))
    return motion


def moved(image: sitk.Image, motion: sitk.Transform, label: bool) -> sitk.Image:
    """What the scanner sees at follow-up: the image at y is the baseline at motion⁻¹(y)."""
    kind = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    return sitk.Resample(image, image, motion.GetInverse(), kind, 0 if label else -1024.0, image.GetPixelID())


def lesion_centres(study) -> list:
    return [lesion["centre_lps_mm"] for lesion in study.truth["lesions"]]


@pytest.mark.slow
def test_rigid_registration_recovers_a_known_motion(study):
    motion = known_motion()
    result = register_follow_up(study.ct, moved(study.ct, motion, label=False), deformable=False)
    errors = point_error_mm(result.transform, motion, lesion_centres(study))
    assert result.kind == "rigid"
    assert errors.max() < 2.5, errors        # compact CT: 2.5 mm voxels


def test_matching_names_disappeared_new_split_and_merged(study):
    motion = known_motion()
    base = study.lesions_ct
    follow = sitk.GetArrayFromImage(moved(base, motion, label=True)).astype(np.uint16)
    ids = [int(i) for i in np.unique(follow) if i > 0]
    by_size = sorted(ids, key=lambda i: int((follow == i).sum()))
    gone, split = by_size[0], by_size[-1]            # the smallest disappears, the largest splits
    follow[follow == gone] = 0                               # disappeared
    z = np.nonzero(follow == split)[0]                       # split: erase a slab through the middle
    middle = int(np.median(z))
    slab = (follow == split) & (np.abs(np.arange(follow.shape[0])[:, None, None] - middle) <= 1)
    follow[slab] = 0
    lower = (follow == split) & (np.arange(follow.shape[0])[:, None, None] < middle)
    follow[lower] = 500
    new_centre = np.array(follow.shape) // 2 + np.array([0, 30, 0])
    follow[tuple(slice(c - 2, c + 3) for c in new_centre)] = 900   # new, away from every lesion
    image = sitk.GetImageFromArray(follow)
    image.CopyInformation(base)
    matching = match_lesions(base, image, motion)
    kinds = {g.kind: g for g in matching.groups}
    assert kinds["disappeared"].baseline_ids == [gone]
    assert kinds["split"].baseline_ids == [split] and sorted(kinds["split"].follow_up_ids) == sorted([split, 500])
    assert kinds["new"].follow_up_ids == [900]
    matched = matching.of_kind("matched")
    assert len(matched) == len(ids) - 2 and all(g.baseline_ids == g.follow_up_ids for g in matched)
    assert all(g.centre_distance_mm < 3.0 for g in matched)

    merged = sitk.GetArrayFromImage(base).astype(np.uint16)
    merged[merged == ids[1]] = ids[0]              # two lesions drawn as one at follow-up
    merged_image = sitk.GetImageFromArray(merged)
    merged_image.CopyInformation(base)
    result = match_lesions(base, merged_image)
    assert [g.baseline_ids for g in result.of_kind("merged")] == [sorted(ids[:2])]


def test_without_the_transform_a_moved_lesion_is_found_by_distance_or_not_at_all(study):
    base = study.lesions_ct
    shift = sitk.TranslationTransform(3, (8.0, 0.0, 0.0))     # 8 mm: small lesions overlap nothing
    follow = moved(base, shift, label=True)
    linked = match_lesions(base, follow)
    assert not linked.of_kind("new") and not linked.of_kind("disappeared")
    far = moved(base, sitk.TranslationTransform(3, (80.0, 0.0, 0.0)), label=True)
    apart = match_lesions(base, far, min_distance_mm=10.0, distance_factor=1.0)
    assert apart.of_kind("new") or apart.of_kind("disappeared") or any(
        g.kind != "matched" for g in apart.groups)
