"""RECIST axes as locked markups lines: "Lesion N long axis" and "Lesion N short axis".

Lines are locked because they are measurements, not inputs: moving one by hand would show a
length that no longer matches the table. They are recomputed by re-measuring instead. The
end points arrive in LPS from the backend and are converted once, in :mod:`geometry`.
Their labels (name and length) are off: a whole-body study has dozens of lines, and their
labels would cover the images; the lesion a user selects shows its own (:func:`show_label`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .geometry import lps_to_ras

AXES = ("long", "short")
LESION_ATTRIBUTE = "AttUMambaSeg.Lesion"
AXIS_ATTRIBUTE = "AttUMambaSeg.Axis"
LINE_CLASS = "vtkMRMLMarkupsLineNode"


def axis_name(segment_name: str, axis: str) -> str:
    return f"{segment_name} {axis} axis"


def axis_ends_lps(lesion: dict, axis: str) -> Sequence[Sequence[float]]:
    ends = lesion["recist"][f"{axis}_axis_lps"]
    if len(ends) != 2 or any(len(point) != 3 for point in ends):
        raise ValueError(f"lesion {lesion['id']}: the {axis} axis needs two 3D end points, got {ends!r}")
    return ends


def set_axis(line, lesion: dict, axis: str, segment_name: str, color: Sequence[float]) -> None:
    """Make ``line`` show the lesion's axis: end points (LPS -> RAS), name, colour, lock, attributes."""
    was_modifying = line.StartModify()
    try:
        line.SetName(axis_name(segment_name, axis))
        line.SetFixedNumberOfControlPoints(False)  # a fixed count refuses removing and adding points
        line.RemoveAllControlPoints()
        for point in axis_ends_lps(lesion, axis):
            line.AddControlPoint(*lps_to_ras(point))
        line.SetLocked(True)
        line.SetFixedNumberOfControlPoints(True)
        line.SetAttribute(LESION_ATTRIBUTE, str(int(lesion["id"])))
        line.SetAttribute(AXIS_ATTRIBUTE, axis)
    finally:
        line.EndModify(was_modifying)
    _color(line, color)


def _color(line, color: Sequence[float]) -> None:
    if line.GetDisplayNode() is None:
        line.CreateDefaultDisplayNodes()
    display = line.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*color)
        display.SetColor(*color)
        display.SetPointLabelsVisibility(False)
    show_label(line, False)


def show_label(line, visible: bool) -> None:
    """Show or hide the line's label (its name and length); the line itself stays shown."""
    display = line.GetDisplayNode()
    if display is not None:
        display.SetPropertiesLabelVisibility(bool(visible))


def line_key(line) -> tuple[int, str] | None:
    """(lesion number, axis) of a line made by :func:`set_axis`, else None."""
    lesion, axis = line.GetAttribute(LESION_ATTRIBUTE), line.GetAttribute(AXIS_ATTRIBUTE)
    if lesion is None or axis not in AXES:
        return None
    try:
        return int(lesion), axis
    except ValueError:
        return None


def ends_ras(line) -> list[tuple[float, float, float]]:
    points = []
    for index in range(line.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        line.GetNthControlPointPosition(index, position)
        points.append(tuple(position))
    return points
