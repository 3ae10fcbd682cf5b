"""Which follow-up lesion is which baseline lesion: overlap and distance after registration.

The follow-up labelmap is brought onto the baseline grid through the registration transform
(nearest neighbour, so lesion ids survive). A baseline and a follow-up lesion are linked when they
share at least one voxel, or, failing that, when their centres lie closer than
``max(min_distance_mm, distance_factor × the mean of their equivalent-sphere radii)`` — a lesion
that shrank and moved a little still overlaps nothing but is the same lesion. The linked pairs form
groups (connected components of the link graph), and each group is named by its shape:

    matched      one baseline lesion, one follow-up lesion
    disappeared  a baseline lesion linked to nothing
    new          a follow-up lesion linked to nothing
    split        one baseline lesion, several follow-up lesions
    merged       several baseline lesions, one follow-up lesion
    complex      several on both sides (merged and split)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

KINDS = ("matched", "disappeared", "new", "split", "merged", "complex")


@dataclass
class LesionGroup:
    """Lesions that are one lesion across time points (ids as in each time point's report)."""

    group_id: str
    kind: str
    baseline_ids: list[int]
    follow_up_ids: list[int]
    overlap_voxels: int = 0
    centre_distance_mm: float | None = None

    def as_dict(self) -> dict:
        return {"group_id": self.group_id, "kind": self.kind, "baseline_ids": self.baseline_ids,
                "follow_up_ids": self.follow_up_ids, "overlap_voxels": self.overlap_voxels,
                "centre_distance_mm": None if self.centre_distance_mm is None else round(self.centre_distance_mm, 2)}


@dataclass
class Matching:
    groups: list[LesionGroup] = field(default_factory=list)
    rule: str = ""

    def of_kind(self, kind: str) -> list[LesionGroup]:
        return [g for g in self.groups if g.kind == kind]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "groups": [g.as_dict() for g in self.groups],
                "counts": {kind: len(self.of_kind(kind)) for kind in KINDS}}


def follow_up_on_baseline(follow_up: sitk.Image, baseline: sitk.Image, transform: sitk.Transform | None) -> sitk.Image:
    """The follow-up labelmap on the baseline grid (``transform`` maps baseline points to follow-up points)."""
    transform = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    return sitk.Resample(sitk.Cast(follow_up, sitk.sitkUInt32), baseline, transform, sitk.sitkNearestNeighbor, 0,
                         sitk.sitkUInt32)


def match_lesions(baseline: sitk.Image, follow_up: sitk.Image, transform: sitk.Transform | None = None, *,
                  min_distance_mm: float = 10.0, distance_factor: float = 1.0) -> Matching:
    """Group the lesions of two instance labelmaps (each numbered as its lesion report)."""
    moved = follow_up_on_baseline(follow_up, baseline, transform)
    base = sitk.GetArrayViewFromImage(baseline).astype(np.int64, copy=False)
    foll = sitk.GetArrayViewFromImage(moved).astype(np.int64, copy=False)
    base_ids = [int(i) for i in np.unique(base) if i > 0]
    foll_ids = [int(i) for i in np.unique(sitk.GetArrayViewFromImage(follow_up)) if i > 0]
    both = (base > 0) & (foll > 0)
    pairs, counts = np.unique(np.stack([base[both], foll[both]]), axis=1, return_counts=True) if both.any() \
        else (np.zeros((2, 0), np.int64), np.zeros(0, np.int64))
    overlap = {(int(b), int(f)): int(n) for b, f, n in zip(pairs[0], pairs[1], counts)}

    base_centres = _centres(baseline, base, base_ids)
    foll_centres = _follow_up_centres(follow_up, foll_ids, transform)
    base_radius = _radii(baseline, base, base_ids)
    foll_radius = _radii(follow_up, sitk.GetArrayViewFromImage(follow_up), foll_ids)
    links = set(overlap)
    for b in base_ids:
        for f in foll_ids:
            if (b, f) in links or f not in foll_centres:
                continue
            limit = max(min_distance_mm, distance_factor * 0.5 * (base_radius[b] + foll_radius[f]))
            if np.linalg.norm(base_centres[b] - foll_centres[f]) <= limit:
                links.add((b, f))
    groups = _groups(base_ids, foll_ids, links)
    result = []
    for number, (bs, fs) in enumerate(groups, start=1):
        kind = _kind(len(bs), len(fs))
        distance = None
        if bs and fs:
            centre_b = np.mean([base_centres[b] for b in bs], axis=0)
            centre_f = np.mean([foll_centres[f] for f in fs if f in foll_centres], axis=0)
            distance = float(np.linalg.norm(centre_b - centre_f))
        result.append(LesionGroup(f"M{number}", kind, bs, fs, sum(overlap.get((b, f), 0) for b in bs for f in fs),
                                  distance))
    rule = (f"linked when sharing a voxel after registration, or when centres are closer than max({min_distance_mm:g} mm, "
            f"{distance_factor:g} × mean equivalent radius); groups are the connected components of the links")
    return Matching(result, rule)


def _centres(image: sitk.Image, array: np.ndarray, ids: list[int]) -> dict[int, np.ndarray]:
    """Physical (LPS) centres of mass of each label."""
    if not ids:
        return {}
    indices = ndimage.center_of_mass(np.ones(array.shape, np.uint8), array, ids)
    return {i: np.array(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in c[::-1]]))
            for i, c in zip(ids, indices)}


def _follow_up_centres(follow_up: sitk.Image, ids: list[int], transform: sitk.Transform | None) -> dict[int, np.ndarray]:
    """Follow-up centres in baseline space (through the transform's inverse, when it has one)."""
    centres = _centres(follow_up, sitk.GetArrayViewFromImage(follow_up), ids)
    if transform is None:
        return centres
    try:
        inverse = transform.GetInverse()
    except RuntimeError:  # e.g. a B-spline: find each centre's preimage by fixed-point iteration
        return {i: _preimage(transform, c) for i, c in centres.items()}
    return {i: np.array(inverse.TransformPoint(c.tolist())) for i, c in centres.items()}


def _preimage(transform: sitk.Transform, point: np.ndarray, steps: int = 20) -> np.ndarray:
    guess = point.copy()
    for _ in range(steps):
        guess = guess - (np.array(transform.TransformPoint(guess.tolist())) - point)
    return guess


def _radii(image: sitk.Image, array: np.ndarray, ids: list[int]) -> dict[int, float]:
    """Equivalent-sphere radius (mm) of each label."""
    if not ids:
        return {}
    voxel = float(np.prod(image.GetSpacing()))
    counts = ndimage.sum_labels(np.ones(array.shape, np.uint8), array, ids)
    return {i: (3.0 * n * voxel / (4.0 * math.pi)) ** (1.0 / 3.0) for i, n in zip(ids, counts)}


def _groups(base_ids: list[int], foll_ids: list[int], links: set[tuple[int, int]]) -> list[tuple[list[int], list[int]]]:
    """Connected components of the bipartite link graph, ordered by their smallest baseline id, new ones last."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node in [("b", b) for b in base_ids] + [("f", f) for f in foll_ids]:
        find(node)
    for b, f in links:
        parent[find(("b", b))] = find(("f", f))
    members: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for node in parent:
        bs, fs = members.setdefault(find(node), ([], []))
        (bs if node[0] == "b" else fs).append(node[1])
    groups = [(sorted(bs), sorted(fs)) for bs, fs in members.values()]
    return sorted(groups, key=lambda g: (not g[0], g[0][0] if g[0] else g[1][0]))


def _kind(n_base: int, n_follow: int) -> str:
    if n_base == 1 and n_follow == 1:
        return "matched"
    if n_follow == 0:
        return "disappeared"
    if n_base == 0:
        return "new"
    if n_base == 1:
        return "split"
    return "merged" if n_follow == 1 else "complex"
