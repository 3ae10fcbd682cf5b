"""Lesion analysis: instances, volume, SUV, HU and RECIST axes (the report of DESIGN.md §4)."""

from .instances import filter_instances, instances_of, label_instances
from .label_values import compact_labels
from .recist import RecistAxes, recist_axes
from .report import CSV_COLUMNS, analyze, analyze_instances, csv_rows, write_report
from .uptake import PEAK_SPHERE_RADIUS_MM, sphere_kernel

__all__ = [
    "CSV_COLUMNS",
    "PEAK_SPHERE_RADIUS_MM",
    "RecistAxes",
    "analyze",
    "analyze_instances",
    "compact_labels",
    "csv_rows",
    "filter_instances",
    "instances_of",
    "label_instances",
    "recist_axes",
    "sphere_kernel",
    "write_report",
]
