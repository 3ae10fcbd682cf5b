"""Cohort outputs of a batch: a row per study, a row per lesion, and an HTML report.

They are rebuilt from the study folders at the end of every run (a resumed run included), so
they always describe everything in the output folder, never only the last invocation. Each is
replaced atomically after its bytes are on the disk, with the same permissions as every other
output (:mod:`attumamba.durable_files`).
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from ..io.study_types import Skipped, Study, safe_id
from ..lesions.report import CSV_COLUMNS, csv_rows
from .outputs import BatchFolder, write_atomic
from .task import MIP_NAME

STUDY_COLUMNS = ("study_id", "status", "n_lesions", "n_measurable", "mtv_ml", "tlg", "suv_max", "model",
                 "seconds", "kind", "ct", "pet", "reason")
STUDIES_CSV, LESIONS_CSV, REPORT_HTML = "cohort_studies.csv", "cohort_lesions.csv", "report.html"


def study_row(folder: BatchFolder, study: Study) -> tuple[dict, list[dict]]:
    """The study's cohort row and its lesions' rows (none unless it finished).

    Only the study's own results count: a folder at its id made from other inputs is "not run".
    """
    record = folder.record(study)
    row = dict.fromkeys(STUDY_COLUMNS, "")
    row.update(study_id=study.study_id, kind=study.kind, ct=str(study.ct), pet=str(study.pet), status="not run")
    if record is None:
        return row, []
    row.update(status="done" if record["ok"] else "failed", model=record.get("model", ""),
               seconds=round(record.get("seconds", 0.0), 1), reason=record.get("error", ""))
    if not record["ok"]:
        return row, []
    report = json.loads((folder.study_folder(study.study_id) / "lesions.json").read_text())
    lesions = [{"study_id": study.study_id, **r} for r in csv_rows(report)]
    totals = report["totals"]
    row.update(n_lesions=totals["n_lesions"], mtv_ml=totals["mtv_ml"], tlg=totals["tlg"], suv_max=totals["suv_max"],
               n_measurable=sum(1 for lesion in lesions if lesion["measurable"]))
    return row, lesions


def write_cohort(folder: BatchFolder, studies: list[Study], skipped: list[Skipped], title: str,
                 responses: list[dict] | None = None) -> dict[str, Path]:
    """``cohort_studies.csv``, ``cohort_lesions.csv`` and ``report.html`` (with the pairs' responses) in
    the output folder."""
    rows, lesions = [], []
    for study in studies:
        row, study_lesions = study_row(folder, study)
        rows.append(row)
        lesions += study_lesions
    return {
        "studies": write_atomic(folder.root / STUDIES_CSV, csv_text(STUDY_COLUMNS, rows)),
        "lesions": write_atomic(folder.root / LESIONS_CSV, csv_text(("study_id", *CSV_COLUMNS), lesions)),
        "html": write_atomic(folder.root / REPORT_HTML, _html(rows, skipped, title, responses or [])),
    }


def csv_text(columns, rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _number(value, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _responses_html(responses: list[dict]) -> str:
    if not responses:
        return ""
    cells = ("patient", "baseline", "follow_up", "status", "recist", "percist", "deauville", "sum_change_pct",
             "new_lesions", "reason")
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cells) + "</tr>"
                   for r in responses)
    links = "".join(f'<li><a href="responses/{safe_id(r["patient"])}/response.png">{html.escape(r["patient"])}</a></li>'
                    for r in responses if r["status"] == "done")
    return (f"<h2>Response (baseline → follow-up)</h2><table><tr>{''.join(f'<th>{c}</th>' for c in cells)}</tr>"
            f"{body}</table><ul>{links}</ul>")


def _html(rows: list[dict], skipped: list[Skipped], title: str, responses: list[dict]) -> str:
    counts = {status: sum(1 for r in rows if r["status"] == status) for status in ("done", "failed", "not run")}
    cards = []
    for row in rows:
        name = html.escape(row["study_id"])
        if row["status"] == "done":
            link = f"studies/{safe_id(row['study_id'])}"
            cards.append(
                f'<figure><a href="{link}/{MIP_NAME}"><img src="{link}/{MIP_NAME}" alt="MIP of {name}"></a>'
                f"<figcaption><b>{name}</b>: {row['n_lesions']} lesions ({row['n_measurable']} measurable), "
                f"MTV {_number(row['mtv_ml'])} mL, TLG {_number(row['tlg'])}, SUVmax {_number(row['suv_max'])} · "
                f'<a href="{link}/lesions.csv">lesions.csv</a></figcaption></figure>')
    table = "".join(
        f"<tr class='{r['status'].replace(' ', '-')}'><td>{html.escape(r['study_id'])}</td><td>{r['status']}</td>"
        f"<td>{r['n_lesions']}</td><td>{r['n_measurable']}</td><td>{_number(r['mtv_ml'])}</td>"
        f"<td>{_number(r['tlg'])}</td><td>{_number(r['suv_max'], 2)}</td><td>{html.escape(str(r['reason']))}</td></tr>"
        for r in rows)
    skipped_items = "".join(f"<li><code>{html.escape(str(s.path))}</code>: {html.escape(s.reason)}</li>"
                            for s in skipped)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
td:first-child, td:nth-child(2), td:last-child {{ text-align: left; }}
tr.failed {{ background: #fde8e8; }} tr.not-run {{ color: #888; }}
figure {{ display: inline-block; width: 300px; margin: 0.5em; vertical-align: top; }}
figure img {{ width: 100%; }} figcaption {{ font-size: 0.85em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{counts['done']} studies segmented, {counts['failed']} failed, {counts['not run']} not run;
{len(skipped)} input items skipped during discovery. Tables: <a href="{STUDIES_CSV}">{STUDIES_CSV}</a>,
<a href="{LESIONS_CSV}">{LESIONS_CSV}</a>.</p>
<table><tr><th>study</th><th>status</th><th>lesions</th><th>measurable</th><th>MTV mL</th><th>TLG</th>
<th>SUVmax</th><th>reason</th></tr>{table}</table>
{_responses_html(responses)}
{''.join(cards)}
{f'<h2>Skipped during discovery</h2><ul>{skipped_items}</ul>' if skipped else ''}
<p><small>Automatic segmentation for research; review every lesion before use.</small></p>
</body></html>
"""
