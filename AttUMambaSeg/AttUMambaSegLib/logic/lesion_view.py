"""What the module's results section shows of a lesion report: table cells, totals, where to look.

The columns are the lesion table node's (:data:`tables.LESION_COLUMNS`), so the panel and
the table node never disagree on what a column holds. Where to look at a lesion is the middle
of its RECIST long axis, which lies on the axial slice it was measured on, so centring the
views there shows the lesion with its axis lines.

The panel is narrow (about 400 px in Slicer's module panel), so it shows the primary columns
(:data:`PANEL_COLUMNS`) and hides the others until the user asks for them; the table node and
every export keep all columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import lps_to_ras
from .tables import LESION_COLUMNS

#: Decimals per unit; values are rounded for reading, the table node and exports keep full precision.
DECIMALS = {"mm": 1, "mL": 2, "g/mL": 2, "g": 1, "HU": 0}


#: Shown in the panel by default: the lesion, its size, uptake (PERCIST's SUVpeak) and the RECIST axes.
PANEL_COLUMNS = ("lesion", "volume_ml", "suv_max", "suv_peak", "long_axis_mm", "short_axis_mm")
#: The panel's width budget and the estimate behind :func:`estimated_width_px`: a column is as wide
#: as its longest header line or cell (numbers up to 3 digits before the point), at about 7 px a
#: character in Slicer's default 9-10 pt UI font, plus 10 px of header margins and grid line; the
#: vertical scroll bar and the frame add 21 px (the .ui hides the row-number header).
PANEL_WIDTH_PX = 400
CHAR_PX = 7
COLUMN_MARGIN_PX = 10
FIXED_PX = 17 + 4
WIDEST_CELL = {"int": "999", "double": "123.45", "string": "Lesion 999"}  # per column kind


@dataclass(frozen=True)
class LesionRow:
    lesion_id: int
    cells: list[str]


def headers() -> list[str]:
    """Column headers in two lines, title over unit, so that a column is as narrow as its numbers."""
    return [f"{c.title}\n({c.unit})" if c.unit else c.title for c in LESION_COLUMNS]


def column_shown() -> list[bool]:
    """Per column of :func:`headers`: shown in the panel by default (the others are a right-click away)."""
    return [c.name in PANEL_COLUMNS for c in LESION_COLUMNS]


def estimated_width_px(shown: list[bool]) -> int:
    """The panel table's width with the ``shown`` columns, by the estimate documented at :data:`PANEL_WIDTH_PX`."""
    width = FIXED_PX
    for column, header, visible in zip(LESION_COLUMNS, headers(), shown):
        if visible:
            widest = max(len(text) for text in (*header.split("\n"), WIDEST_CELL[column.kind]))
            width += widest * CHAR_PX + COLUMN_MARGIN_PX
    return width


def header_tooltips() -> list[str]:
    return [c.description or c.title for c in LESION_COLUMNS]


def lesion_rows(report: dict) -> list[LesionRow]:
    """One row of display text per lesion, in the report's order (decreasing volume)."""
    return [LesionRow(int(lesion["id"]), [format_cell(c.value(lesion), c.kind, c.unit) for c in LESION_COLUMNS])
            for lesion in report.get("lesions", [])]


def format_cell(value, kind: str, unit: str = "") -> str:
    if kind == "double":
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{float(value):.{DECIMALS.get(unit, 2)}f}"
    return "" if value is None else str(value)


def totals_text(report: dict) -> str:
    """One line: number of lesions, total metabolic tumour volume, total TLG, highest SUVmax."""
    lesions = report.get("lesions", [])
    if not lesions:
        return "No lesions."
    totals = report.get("totals") or {}
    count = len(lesions)
    parts = [f"{count} lesion{'s' if count != 1 else ''}"]
    for key, label, unit in (("mtv_ml", "MTV", "mL"), ("tlg", "TLG", "g"), ("suv_max", "SUVmax", "g/mL")):
        value = totals.get(key)
        if value is None:
            values = [lesion.get(key if key != "mtv_ml" else "volume_ml") for lesion in lesions]
            values = [v for v in values if v is not None]
            value = (max(values) if key == "suv_max" else sum(values)) if values else None
        if value is not None:
            parts.append(f"{label} {format_cell(value, 'double', unit)} {unit}")
    return "; ".join(parts)


def lesion_focus_ras(report: dict, lesion_id: int) -> tuple[float, float, float]:
    """The RAS point to centre the views on for a lesion: its long axis' middle, else its centroid."""
    for lesion in report.get("lesions", []):
        if int(lesion["id"]) != int(lesion_id):
            continue
        axis = (lesion.get("recist") or {}).get("long_axis_lps")
        if axis is not None and np.asarray(axis, float).shape == (2, 3) and np.all(np.isfinite(axis)):
            return lps_to_ras(np.mean(np.asarray(axis, float), axis=0))
        return lps_to_ras(lesion["centroid_lps"])
    raise KeyError(f"lesion {lesion_id} is not in the report; update the measurements")
