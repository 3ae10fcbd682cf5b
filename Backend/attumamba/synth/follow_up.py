"""A baseline and a follow-up study of one synthetic patient, with the response's ground truth.

The baseline is exactly ``generate_study(seed, index)``. The follow-up is the same patient
(anatomy, sex, height; weight within −8…+4 %, normal-organ uptake within ±7 %) some 8–17 weeks
later, lying differently in the scanner (:class:`Pose`), scanned with new noise, the lesions
changed by a scenario (:mod:`.evolution`). Lesions that fall below one PET voxel disappear from
the follow-up's masks, as they would from a reader's.

The truth (``response_truth.json``) says which follow-up lesion is which baseline lesion, each
lesion's true RECIST axes (measured on its analytic solid rasterised at 0.5 mm in that scan's
frame), its uptake as a perfect reader measures it (SUV/SUL max and peak on the written PET within
the true mask, beside the painted activity), the reference regions placed on the true anatomy
(:mod:`.measured_truth`), and the true RECIST 1.1, PERCIST 1.0 and (FDG) Deauville categories from
:mod:`attumamba.response` applied to those values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..lesions.recist import Grid as RecistGrid
from ..lesions.recist import recist_axes
from ..response import deauville, percist, recist, sul_scale
from .evolution import evolve, sample_scenario
from .grid import Grid, paint
from .lesions import Lesion
from .measured_truth import lesion_uptake, true_references
from .pose import Pose
from .study import Case, SyntheticStudy, Visit, case_rng, generate_study, render_study
from .tissues import Tissue

@dataclass
class FollowUpPair:
    baseline: SyntheticStudy
    follow_up: SyntheticStudy
    truth: dict


def generate_pair(seed: int, index: int = 0, *, tracer: str = "mixed", profile: str = "full",
                  progress=None) -> FollowUpPair:
    say = progress or (lambda f, s: None)
    baseline = generate_study(seed, index, tracer=tracer, profile=profile,
                              progress=lambda f, s: say(0.5 * f, f"baseline: {s}"))
    case = baseline.case
    rng = case_rng(seed, index, 1)
    scenario = sample_scenario(rng, bool(case.lesions))
    uptake = {tissue: value * float(rng.uniform(0.93, 1.07)) for tissue, value in case.uptake.items()}
    evolution = evolve(case.lesions, case.patient, scenario, rng, liver_suv=uptake[Tissue.LIVER])
    pose = Pose.sample(rng, diaphragm_z_mm=float(case.patient.point(0, 0, 600)[2]))
    visit = Visit(baseline.dicom_study.patient_id, int(rng.integers(56, 120)),
                  round(case.patient.weight_kg * float(rng.uniform(0.92, 1.04)), 1), "follow-up")
    later = Case(seed, index, case.case_id, case.tracer, case.patient, uptake, evolution.follow_up)
    follow_up = render_study(later, profile, rng, pose=pose, visit=visit,
                             progress=lambda f, s: say(0.5 + 0.5 * f, f"follow-up: {s}"))
    truth = _truth(baseline, follow_up, evolution, pose, visit, later)
    return FollowUpPair(baseline, follow_up, truth)


def _truth(baseline: SyntheticStudy, follow_up: SyntheticStudy, evolution, pose: Pose, visit: Visit,
           later: Case) -> dict:
    case = baseline.case
    scales = {"baseline": sul_scale(case.patient.sex, case.patient.height_m, case.patient.weight_kg),
              "follow_up": sul_scale(case.patient.sex, case.patient.height_m, visit.weight_kg)}
    studies, poses = {"baseline": baseline, "follow_up": follow_up}, {"baseline": None, "follow_up": pose}
    regions = {when: true_references(studies[when], poses[when], scales[when]) for when in studies}
    references = {when: _reference_values(regions[when]) for when in studies}
    uptake = {when: lesion_uptake(studies[when]) for when in studies}
    follow_lesions = {entry["source_id"]: entry for entry in follow_up.truth["lesions"]}
    base_measures = {entry["id"]: _measures(entry, lesion, uptake["baseline"][entry["id"]])
                     for entry, lesion in zip(baseline.truth["lesions"], case.lesions)}
    moved = {lesion.id: lesion for lesion in follow_up.scanner_lesions}

    def follow_measures(seen: dict) -> dict:
        return _measures(seen, moved[seen["id"]], uptake["follow_up"][seen["id"]])

    rows = []
    for entry in baseline.truth["lesions"]:
        seen = follow_lesions.get(entry["id"])
        rows.append({"baseline_id": entry["id"], "follow_up_id": seen["id"] if seen else None,
                     "kind": "matched" if seen else "disappeared", "type": entry["type"], "organ": entry["organ"],
                     "size_factor": round(evolution.size_factor.get(entry["id"], 0.0), 4),
                     "uptake_factor": round(evolution.uptake_factor.get(entry["id"], 0.0), 4),
                     "baseline": base_measures[entry["id"]], "follow_up": follow_measures(seen) if seen else None})
    for source, seen in follow_lesions.items():
        if evolution.baseline_of.get(source) is None:
            rows.append({"baseline_id": None, "follow_up_id": seen["id"], "kind": "new", "type": seen["type"],
                         "organ": seen["organ"], "size_factor": None, "uptake_factor": None, "baseline": None,
                         "follow_up": follow_measures(seen)})
    slice_mm = baseline.truth["grids"]["ct"]["spacing_mm"][2]
    return {"case_id": case.case_id, "seed": case.seed, "index": case.index, "tracer": case.tracer,
            "scenario": evolution.scenario, "days_between": visit.days_after, "pose": pose.to_json(),
            "sul": {when: scale.describe() for when, scale in scales.items()}, "references": references,
            "reference_regions": {when: {k: r.as_dict() for k, r in found.items()} for when, found in regions.items()},
            "activity": {when: {"liver_suv": round(u[Tissue.LIVER], 4), "blood_pool_suv": round(u[Tissue.BLOOD], 4)}
                         for when, u in (("baseline", case.uptake), ("follow_up", later.uptake))},
            "lesions": rows, "categories": true_categories(rows, references, case.tracer, slice_mm)}


def _reference_values(regions: dict) -> dict:
    values = {}
    for kind, region in regions.items():
        for unit in ("suv", "sul"):
            values[f"{kind}_{unit}"] = region.stats.get(f"{unit}_mean")
            values[f"{kind}_{unit}_sd"] = region.stats.get(f"{unit}_sd")
    return values


def true_categories(rows: list[dict], references: dict, tracer: str, slice_thickness_mm: float) -> dict:
    """The criteria of :mod:`attumamba.response` applied to the true values of a pair."""
    candidates = [recist.Candidate(str(r["baseline_id"]), r["baseline"]["long_axis_mm"], r["baseline"]["short_axis_mm"],
                                   organ="lymph node" if r["type"] == "nodal" else r["type"], nodal=r["type"] == "nodal")
                  for r in rows if r["baseline"] is not None]
    chosen, _ = recist.select_targets(candidates, slice_thickness_mm)
    by_id = {str(r["baseline_id"]): r for r in rows if r["baseline"] is not None}
    targets = [recist.Target(c.lesion_id, c.nodal, c.diameter_mm, _follow_diameter(by_id[c.lesion_id], c.nodal),
                             c.organ) for c in chosen]
    chosen_ids = {c.lesion_id for c in chosen}
    new = sum(r["kind"] == "new" for r in rows)
    remains = any(r["follow_up"] is not None for key, r in by_id.items() if key not in chosen_ids)
    result = {"recist": recist.assess(targets, new_lesions=new, non_target_disease_remains=remains).as_dict()}
    refs = {when: (percist.Reference("liver", references[when]["liver_sul"], references[when]["liver_sul_sd"]),
                   percist.Reference("blood_pool", references[when]["blood_pool_sul"], references[when]["blood_pool_sul_sd"]))
            for when in references}
    baseline = [percist.Uptake(str(r["baseline_id"]), r["baseline"]["sul_peak"]) for r in rows if r["baseline"]]
    follow = [percist.Uptake(str(r["follow_up_id"]), r["follow_up"]["sul_peak"]) for r in rows if r["follow_up"]]
    result["percist"] = percist.assess(baseline, follow, baseline_liver=refs["baseline"][0],
                                       follow_up_liver=refs["follow_up"][0], baseline_blood_pool=refs["baseline"][1],
                                       follow_up_blood_pool=refs["follow_up"][1], new_lesions=new).as_dict()
    if tracer == "fdg":
        before = max((r["baseline"]["suv_max"] for r in rows if r["baseline"]), default=None)
        after = max((r["follow_up"]["suv_max"] for r in rows if r["follow_up"]), default=None)
        result["deauville"] = deauville.assess(before, after, blood_pool_suv=references["follow_up"]["blood_pool_suv"],
                                               liver_suv=references["follow_up"]["liver_suv"], new_lesions=new).as_dict()
    else:
        result["deauville"] = None   # a lymphoma scale: FDG only
    return result


def _follow_diameter(row: dict, nodal: bool) -> float:
    if row["follow_up"] is None:
        return 0.0
    return row["follow_up"]["short_axis_mm" if nodal else "long_axis_mm"]


def _measures(entry: dict, lesion: Lesion, uptake: dict) -> dict:
    long_axis, short_axis = true_axes(lesion.solid)
    return {"long_axis_mm": round(long_axis, 2), "short_axis_mm": round(short_axis, 2), "volume_ml": entry["volume_ml"],
            **{key: _round(value) for key, value in uptake.items()}, "activity_suv": round(lesion.suv, 4),
            "centre_lps_mm": entry["centre_lps_mm"]}


def true_axes(solid, spacing_mm: float = 0.5) -> tuple[float, float]:
    """RECIST long and short axes of an analytic solid, on axial planes of a 0.5 mm grid."""
    low, high = solid.bbox()
    grid = Grid.covering(np.asarray(low) - spacing_mm, np.asarray(high) + spacing_mm, (spacing_mm,) * 3)
    mask = np.zeros(grid.shape, bool)
    paint(mask, grid, solid.inside, low, high, True)
    axes = recist_axes(mask, RecistGrid(np.asarray(grid.origin, float), np.eye(3) * spacing_mm))
    return float(axes.long_axis_mm), float(axes.short_axis_mm)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
