"""The lesion table: one row per lesion of a report, in a vtkMRMLTableNode, refilled in place.

Refilling the same node (rather than replacing it) keeps the table where the user put it: in
a view, in a layout, selected in the Tables module. Column names are stable identifiers; the
headers users see are the titles with units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import vtk


@dataclass(frozen=True)
class Column:
    name: str
    title: str
    unit: str
    kind: str  # "int", "double" or "string"
    value: Callable[[dict], object]
    description: str = ""


def _recist(key: str) -> Callable[[dict], object]:
    return lambda lesion: lesion["recist"][key]


LESION_COLUMNS: tuple[Column, ...] = (
    Column("lesion", "Lesion", "", "int", lambda lesion: lesion["id"], "lesion number (label value)"),
    Column("segment", "Segment", "", "string", lambda lesion: lesion.get("segment", ""), "segment name"),
    Column("volume_ml", "Volume", "mL", "double", lambda lesion: lesion["volume_ml"], "metabolic tumour volume"),
    Column("suv_max", "SUVmax", "g/mL", "double", lambda lesion: lesion["suv_max"]),
    Column("suv_mean", "SUVmean", "g/mL", "double", lambda lesion: lesion["suv_mean"]),
    Column("suv_peak", "SUVpeak", "g/mL", "double", lambda lesion: lesion["suv_peak"],
           "PERCIST: highest mean SUV in a 1 cm3 sphere"),
    Column("tlg", "TLG", "g", "double", lambda lesion: lesion["tlg"], "total lesion glycolysis = SUVmean x volume"),
    Column("ct_mean_hu", "CT mean", "HU", "double", lambda lesion: lesion["ct_mean_hu"]),
    Column("long_axis_mm", "Long axis", "mm", "double", _recist("long_axis_mm"), "RECIST 1.1 longest axial diameter"),
    Column("short_axis_mm", "Short axis", "mm", "double", _recist("short_axis_mm"),
           "RECIST 1.1 longest diameter perpendicular to the long axis"),
    Column("measurable", "Measurable", "", "string", lambda lesion: "yes" if lesion["recist"]["measurable"] else "no",
           "RECIST 1.1 measurable (long axis >= 10 mm, or 2 slice thicknesses for slices over 5 mm)"),
)

_ARRAYS = {"int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray, "string": vtk.vtkStringArray}


def _cell(kind: str, value: object) -> object:
    if kind == "double":
        return math.nan if value is None else float(value)
    if kind == "int":
        return int(value)
    return "" if value is None else str(value)


def fill_lesion_table(table_node, lesions: list[dict]) -> None:
    """Replace the table's content with one row per lesion (``lesion["segment"]`` names its segment)."""
    fill_table(table_node, LESION_COLUMNS, lesions)


def fill_table(table_node, columns: tuple[Column, ...], rows: list[dict]) -> None:
    """Replace the table's content with one row per item of ``rows``, cells from ``columns``."""
    was_modifying = table_node.StartModify()
    try:
        table_node.RemoveAllColumns()
        for column in columns:
            array = _ARRAYS[column.kind]()
            array.SetName(column.name)
            for row in rows:
                array.InsertNextValue(_cell(column.kind, column.value(row)))
            table_node.AddColumn(array)
            table_node.SetColumnTitle(column.name, column.title)
            table_node.SetColumnUnitLabel(column.name, column.unit)
            table_node.SetColumnDescription(column.name, column.description or column.title)
        table_node.SetUseColumnTitleAsColumnHeader(True)
    finally:
        table_node.EndModify(was_modifying)


def table_rows(table_node) -> list[dict]:
    """The table back as dicts by column name (for scripts and tests)."""
    table = table_node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for row in range(table.GetNumberOfRows()):
        rows.append({name: table.GetValue(row, c).ToString() if isinstance(table.GetColumn(c), vtk.vtkStringArray)
                     else table.GetValue(row, c).ToDouble() for c, name in enumerate(names)})
    return rows
