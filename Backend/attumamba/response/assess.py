"""Baseline vs follow-up: registration, lesion matching, reference regions and the three criteria.

Everything a reader may decide is a :class:`ReaderInputs` field (targets, each lesion's organ and
nodal status, follow-up findings that are not lesions, reference positions, whether the liver is
normal); what the reader leaves open is proposed, and the record says which was which. Every
number in the result can be traced to a lesion id of one of the two lesion reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import InputError
from . import deauville, percist, recist
from .matching import Matching, match_lesions
from .references import NoReference, ReferenceRegion, measure, propose_blood_pool, propose_liver
from .registration import Registration, register_follow_up
from .sul import SulScale
from ..io.patient import tracer_of
from .timepoint import TimePoint

WHEN = ("baseline", "follow_up")


@dataclass
class ReaderInputs:
    targets: list[int] | None = None                    # baseline lesion ids; None: the largest measurable
    lesion_info: dict[int, dict] = field(default_factory=dict)   # baseline id -> {"organ": ..., "nodal": ...}
    not_lesions: list[int] = field(default_factory=list)  # follow-up ids the reader rejects (e.g. uptake in a gland)
    liver: dict[str, tuple | None] = field(default_factory=dict)       # when -> centre (LPS mm) or None: proposed
    blood_pool: dict[str, tuple | None] = field(default_factory=dict)
    liver_normal: bool = True
    non_target_progression: bool = False
    min_new_lesion_ml: float = 0.5      # smaller new findings are listed but do not count as new lesions
    tracer: str | None = None           # the radiopharmaceutical when the PET's header does not say it


def assess_response(baseline: TimePoint, follow_up: TimePoint, reader: ReaderInputs | None = None, *,
                    registration: Registration | None = None, deformable: bool = True, progress=None) -> dict:
    reader = reader or ReaderInputs()
    registration = registration or register_follow_up(baseline.ct, follow_up.ct, deformable=deformable,
                                                      progress=progress)
    matching = match_lesions(baseline.labels, follow_up.labels, registration.transform)
    points = {"baseline": baseline, "follow_up": follow_up}
    scales = {when: _scale(points[when].report) for when in WHEN}
    references = {when: _references(points[when], reader, when, scales[when]) for when in WHEN}
    lesions = {when: {lesion["id"]: lesion for lesion in points[when].report["lesions"]} for when in WHEN}
    notes = [f"{when}: {scales[when].reason}" for when in WHEN if not scales[when].available]
    tracer = reader.tracer or tracer_of(follow_up.pet) or tracer_of(baseline.pet)
    if deauville.applies_to(tracer) is False:
        notes.append(f"Deauville not scored: it is defined for FDG, and the PET's tracer is {tracer}")
    new_ids = [f for g in matching.of_kind("new") for f in g.follow_up_ids
               if f not in reader.not_lesions and lesions["follow_up"][f]["volume_ml"] >= reader.min_new_lesion_ml]
    categories = {"recist": _recist(matching, lesions, reader, baseline, new_ids),
                  "percist": _percist(lesions, references, reader, scales, new_ids, notes),
                  "deauville": _deauville(lesions, references, new_ids, tracer)}
    return {"baseline": baseline.source, "follow_up": follow_up.source, "registration": registration.describe(),
            "references": {when: {k: (v.as_dict() if isinstance(v, ReferenceRegion) else v)
                                  for k, v in references[when].items()} for when in WHEN},
            "matching": matching.as_dict(), "new_lesions_counted": new_ids,
            "lesions": rows(matching, lesions), "categories": categories, "notes": notes}


def rows(matching: Matching, lesions: dict) -> list[dict]:
    """One row per lesion group: both time points' measurements and the changes."""
    result = []
    for group in matching.groups:
        row = {"group": group.group_id, "kind": group.kind, "baseline_ids": group.baseline_ids,
               "follow_up_ids": group.follow_up_ids}
        for when, ids in (("baseline", group.baseline_ids), ("follow_up", group.follow_up_ids)):
            chosen = [lesions[when][i] for i in ids]
            row[when] = {"volume_ml": sum(l["volume_ml"] for l in chosen) if chosen else 0.0,
                         "suv_max": max((l["suv_max"] for l in chosen if l["suv_max"] is not None), default=None),
                         "sul_peak": max((l.get("sul_peak") for l in chosen if l.get("sul_peak") is not None),
                                         default=None),
                         "long_axis_mm": sum(l["recist"]["long_axis_mm"] for l in chosen),
                         "short_axis_mm": sum(l["recist"]["short_axis_mm"] for l in chosen)}
        before, after = row["baseline"]["volume_ml"], row["follow_up"]["volume_ml"]
        row["volume_change_pct"] = round(100 * (after - before) / before, 2) if before else None
        result.append(row)
    return result


def _recist(matching: Matching, lesions: dict, reader: ReaderInputs, baseline: TimePoint, new_ids: list) -> dict:
    info = reader.lesion_info
    candidates = [recist.Candidate(str(i), l["recist"]["long_axis_mm"], l["recist"]["short_axis_mm"],
                                   organ=info.get(i, {}).get("organ"), nodal=bool(info.get(i, {}).get("nodal", False)))
                  for i, l in lesions["baseline"].items()]
    by_id = {c.lesion_id: c for c in candidates}
    notes: list[str] = []
    if reader.targets is None:
        chosen, notes = recist.select_targets(candidates, baseline.report["grid"]["slice_thickness_mm"])
        how = "proposed: the largest measurable lesions (at most 5, 2 per organ)"
    else:
        unknown = [t for t in reader.targets if str(t) not in by_id]
        if unknown:
            raise InputError(f"target lesion(s) {unknown} are not in the baseline report (ids {sorted(lesions['baseline'])})")
        chosen, how = [by_id[str(t)] for t in reader.targets], "chosen by the reader"
    group_of = {b: g for g in matching.groups for b in g.baseline_ids}
    targets = []
    for candidate in chosen:
        group = group_of[int(candidate.lesion_id)]
        axis = "short_axis_mm" if candidate.nodal else "long_axis_mm"
        after = sum(lesions["follow_up"][f]["recist"][axis] for f in group.follow_up_ids)
        if group.kind in ("merged", "complex") and int(candidate.lesion_id) != min(
                int(c.lesion_id) for c in chosen if int(c.lesion_id) in group.baseline_ids):
            after = 0.0     # coalesced lesions: the whole lesion counts once, for the first target in it
        targets.append(recist.Target(candidate.lesion_id, candidate.nodal, candidate.diameter_mm, after,
                                     candidate.organ))
    target_ids = {int(c.lesion_id) for c in chosen}
    remains = any(group_of[b].follow_up_ids for b in lesions["baseline"] if b not in target_ids)
    result = recist.assess(targets, new_lesions=len(new_ids), non_target_progression=reader.non_target_progression,
                           non_target_disease_remains=remains).as_dict()
    result["targets"] = [{"baseline_id": int(t.lesion_id), "nodal": t.nodal, "organ": t.organ,
                          "baseline_mm": t.baseline_mm, "follow_up_mm": round(t.follow_up_mm, 2)} for t in targets]
    result["targets_how"] = how
    result["notes"] += notes
    return result


def _percist(lesions: dict, references: dict, reader: ReaderInputs, scales: dict, new_ids: list, notes: list) -> dict:
    key = "sul" if all(scales[when].available for when in WHEN) else "suv"
    if key == "suv":
        notes.append("PERCIST read in SUVbw, not SUL: the patient's sex, height or weight is unknown")
    uptakes = {when: [percist.Uptake(str(i), l[f"{key}_peak"]) for i, l in lesions[when].items()
                      if l.get(f"{key}_peak") is not None and not (when == "follow_up" and i in reader.not_lesions)]
               for when in WHEN}
    refs = {when: {kind: _reference(references[when].get(kind), kind, key, reader.liver_normal)
                   for kind in ("liver", "blood_pool")} for when in WHEN}
    return percist.assess(uptakes["baseline"], uptakes["follow_up"], baseline_liver=refs["baseline"]["liver"],
                          follow_up_liver=refs["follow_up"]["liver"], baseline_blood_pool=refs["baseline"]["blood_pool"],
                          follow_up_blood_pool=refs["follow_up"]["blood_pool"], new_lesions=len(new_ids)).as_dict()


def _deauville(lesions: dict, references: dict, new_ids: list, tracer: str | None) -> dict | None:
    applies = deauville.applies_to(tracer)
    if applies is False:
        return None      # a scale for FDG: meaningless for PSMA and the other tracers
    liver, blood = references["follow_up"].get("liver"), references["follow_up"].get("blood_pool")
    if not isinstance(liver, ReferenceRegion) or not isinstance(blood, ReferenceRegion):
        return None
    hottest = {when: max((l["suv_max"] for l in lesions[when].values() if l["suv_max"] is not None), default=None)
               for when in WHEN}
    result = deauville.assess(hottest["baseline"], hottest["follow_up"], blood_pool_suv=blood.stats["suv_mean"],
                              liver_suv=liver.stats["suv_mean"], new_lesions=len(new_ids)).as_dict()
    result["notes"].append("the Deauville scale is defined for FDG PET in lymphoma")
    if applies is None:
        result["notes"].append("the PET does not name its tracer: read as FDG (give the tracer when it is another)")
    return result


def _reference(region, kind: str, key: str, liver_normal: bool) -> percist.Reference | None:
    if not isinstance(region, ReferenceRegion):
        return None
    return percist.Reference(kind, region.stats[f"{key}_mean"], region.stats[f"{key}_sd"],
                             normal=liver_normal if kind == "liver" else True)


def _references(point: TimePoint, reader: ReaderInputs, when: str, scale: SulScale) -> dict:
    """Each reference region measured (a region, or the reason it could not be placed)."""
    found: dict = {}
    for kind, given, propose in (("liver", reader.liver.get(when), lambda: propose_liver(point.ct, point.pet, point.labels)),
                                 ("blood_pool", reader.blood_pool.get(when), lambda: propose_blood_pool(point.ct, point.pet))):
        try:
            if given is not None:
                region = ReferenceRegion(kind, tuple(map(float, given)), 15.0 if kind == "liver" else 5.0,
                                         None if kind == "liver" else 20.0, how="placed by the reader")
            else:
                region = propose()
            region.stats = measure(region, point.pet, scale)
            found[kind] = region
        except NoReference as reason:
            found[kind] = f"not available: {reason}"
    return found


def _scale(report: dict) -> SulScale:
    described = report.get("sul") or {"factor": None, "reason": "no PET"}
    names = {f.name for f in fields(SulScale)}
    return SulScale(**{k: v for k, v in described.items() if k in names})
