"""Which tracer each evaluated case used, so that metrics can be split by tracer as autoPET reports them.

A case's tracer comes from, in this order: a CSV with the columns ``case,tracer``; a folder of
studies whose ``<case>/ground_truth.json`` (or ``<case>/truth/ground_truth.json``, as
``attumamba-seg synth`` writes them) names it; one tracer given for every case; a ``psma`` or
``fdg`` word in the case name (autoPET's ``psma_<patient>_<date>``). Tracers are lower case;
a case with none stays out of the per-tracer summaries only.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ..errors import InputError

_NAMED = re.compile(r"(?:^|[^a-z0-9])(psma|fdg)(?:$|[^a-z0-9])")


def tracer_in_name(case: str) -> str:
    """``psma`` or ``fdg`` when the case name holds it as a word, else ''."""
    found = _NAMED.search(case.lower())
    return found.group(1) if found else ""


def _clean(tracer: str, where: str) -> str:
    name = str(tracer).strip().lower()
    if not name:
        raise InputError(f"{where}: the tracer is empty; write e.g. psma or fdg")
    return name


def read_tracer_csv(path: Path) -> dict[str, str]:
    """``case -> tracer`` from a CSV file with a header row naming the columns ``case`` and ``tracer``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read the tracer table {path}: {error}") from error
    if not rows or not {"case", "tracer"} <= set(rows[0]):
        raise InputError(f"{path} needs a header row with the columns case,tracer and one row per case")
    tracers: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        case, tracer = (row.get("case") or "").strip(), _clean(row.get("tracer") or "", f"{path} line {line}")
        if not case:
            raise InputError(f"{path} line {line}: the case is empty")
        if tracers.setdefault(case, tracer) != tracer:
            raise InputError(f"{path}: case {case} is listed as both {tracers[case]} and {tracer}")
    return tracers


def read_study_tracers(folder: Path) -> dict[str, str]:
    """``case -> tracer`` from the ``ground_truth.json`` of each study folder under ``folder``."""
    tracers = {}
    for study in sorted(p for p in folder.iterdir() if p.is_dir()):
        for truth in (study / "ground_truth.json", study / "truth" / "ground_truth.json"):
            if truth.is_file():
                try:
                    tracer = json.loads(truth.read_text()).get("tracer")
                except (OSError, ValueError, AttributeError) as error:
                    raise InputError(f"cannot read the tracer from {truth}: {error}") from error
                if tracer:
                    tracers[study.name] = _clean(tracer, str(truth))
                break
    if not tracers:
        raise InputError(f"no study under {folder} has a ground_truth.json naming its tracer; "
                         "give a CSV with the columns case,tracer instead")
    return tracers


def read_tracers(source: Path) -> dict[str, str]:
    """``case -> tracer`` from a CSV file or a folder of studies (see the module docstring)."""
    source = Path(source)
    if source.is_dir():
        return read_study_tracers(source)
    if source.is_file():
        return read_tracer_csv(source)
    raise InputError(f"{source} is neither a CSV with the columns case,tracer nor a folder of studies")


def case_tracers(cases, table: dict[str, str] | None = None, tracer: str | None = None) -> dict[str, str]:
    """The tracer of every case ('' when unknown): the table, else ``tracer``, else the case name."""
    cases, table = sorted(cases), table or {}
    if table and cases and not set(table) & set(cases):
        raise InputError(f"the tracer table names none of the evaluated cases (e.g. {cases[0]}); its "
                         "case column must hold the mask file names without their extension")
    default = _clean(tracer, "--tracer") if tracer is not None else ""
    return {case: table.get(case) or default or tracer_in_name(case) for case in cases}
