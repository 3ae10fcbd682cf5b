"""Response assessments in a batch: pairs of one patient's studies (baseline, follow-up) named in a
CSV, each compared from its two finished result folders once the batch has segmented them.

    PAIRS.csv:  patient,baseline,follow_up      (study ids as the batch names them)

Per pair ``OUT/responses/<patient>/`` gets what ``compare`` writes (response.json/.csv/.png and the
registration), assembled in a hidden folder and renamed into place; ``OUT/cohort_responses.csv``
has a row per pair with the three categories and the numbers behind them, and the HTML report a
table. A pair whose studies did not both finish is listed as not run, with the reason.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CancelledError, InputError
from ..io.study_types import safe_id
from .cohort import csv_text
from .outputs import BatchFolder, write_atomic

RESPONSES_FOLDER, RESPONSES_CSV = "responses", "cohort_responses.csv"
PAIR_COLUMNS = ("patient", "baseline", "follow_up", "status", "recist", "percist", "deauville", "sum_change_pct",
                "new_lesions", "matched", "disappeared", "registration", "reason")


@dataclass(frozen=True)
class Pair:
    patient: str
    baseline: str
    follow_up: str


def read_pairs(path: str | Path, study_ids: set[str]) -> list[Pair]:
    """The pairs of a CSV, every id checked against the studies found (InputError naming what is wrong)."""
    try:
        with Path(path).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputError(f"--pairs {path} cannot be read ({error.strerror})") from None
    if not rows or not {"patient", "baseline", "follow_up"} <= set(rows[0]):
        raise InputError(f"--pairs {path} needs a header 'patient,baseline,follow_up' and a row per pair")
    pairs, patients = [], set()
    for number, row in enumerate(rows, start=2):
        pair = Pair(*(str(row[k] or "").strip() for k in ("patient", "baseline", "follow_up")))
        unknown = [s for s in (pair.baseline, pair.follow_up) if s not in study_ids]
        if unknown:
            raise InputError(f"--pairs {path}, line {number}: no study {', '.join(map(repr, unknown))} was found; "
                             f"the studies are {', '.join(sorted(study_ids)[:10])}{' …' if len(study_ids) > 10 else ''}")
        if not pair.patient or pair.patient in patients or pair.baseline == pair.follow_up:
            raise InputError(f"--pairs {path}, line {number}: give a patient name used once and two different studies")
        patients.add(pair.patient)
        pairs.append(pair)
    return pairs


def assess_pairs(folder: BatchFolder, pairs: list[Pair], studies: dict, cancel: Callable[[], bool],
                 on_pair: Callable[[Pair, dict], None] | None = None) -> list[dict]:
    """Compare every pair whose studies finished; the cohort rows (also written as a CSV)."""
    rows = []
    for pair in pairs:
        if cancel():
            raise CancelledError("cancelled between response assessments")
        row = dict.fromkeys(PAIR_COLUMNS, "") | {"patient": pair.patient, "baseline": pair.baseline,
                                                 "follow_up": pair.follow_up}
        # only results made from the study's own inputs count (a folder of another study's is "not run")
        missing = [s for s in (pair.baseline, pair.follow_up) if folder.check(studies[s])[0] is None]
        if missing:
            row.update(status="not run", reason=f"not segmented: {', '.join(missing)}")
        else:
            try:
                row.update(_assess(folder, pair))
            except InputError as error:
                row.update(status="failed", reason=str(error))
        rows.append(row)
        if on_pair:
            on_pair(pair, row)
    write_atomic(folder.root / RESPONSES_CSV, csv_text(PAIR_COLUMNS, rows))
    return rows


def _assess(folder: BatchFolder, pair: Pair) -> dict:
    from ..response.assess import assess_response
    from ..response.outputs import write_response
    from ..response.registration import register_follow_up
    from ..response.timepoint import load_time_point

    baseline = load_time_point("baseline", folder.study_folder(pair.baseline))
    follow_up = load_time_point("follow-up", folder.study_folder(pair.follow_up))
    registration = register_follow_up(baseline.ct, follow_up.ct)
    response = assess_response(baseline, follow_up, registration=registration)
    target = folder.root / RESPONSES_FOLDER / safe_id(pair.patient)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_response(response, baseline, follow_up, partial, registration.transform)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    categories, counts = response["categories"], response["matching"]["counts"]
    return {"status": "done", "recist": categories["recist"]["category"],
            "percist": categories["percist"]["category"],
            "deauville": categories["deauville"]["category"] if categories["deauville"] else "",
            "sum_change_pct": categories["recist"]["numbers"]["change_from_baseline_pct"],
            "new_lesions": len(response["new_lesions_counted"]), "matched": counts["matched"],
            "disappeared": counts["disappeared"], "registration": response["registration"]["kind"]}
