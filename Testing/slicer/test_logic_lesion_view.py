"""What the results panel shows: rows with the table node's columns, totals, and where a lesion is."""

from __future__ import annotations

import importlib

import numpy as np


def _module(name: str):
    return importlib.import_module(f"AttUMambaSegLib.logic.{name}")


def _result(handmade, scene):
    return _module("results").build_result(scene, handmade.ct, handmade.labelmap, handmade.report,
                                           pet_node=handmade.pet, study_id=handmade.study_id)


def test_rows_follow_the_table_node(handmade, scene, logic):
    result = _result(handmade, scene)
    view = _module("lesion_view")
    rows = view.lesion_rows(result.report)
    headers = view.headers()
    assert headers[:3] == ["Lesion", "Segment", "Volume\n(mL)"] and "Long axis\n(mm)" in headers
    assert len(view.header_tooltips()) == len(headers)
    table = _module("tables").table_rows(result.table)
    assert [row.lesion_id for row in rows] == [int(r["lesion"]) for r in table] == [1, 2, 3]
    for row, stored in zip(rows, table):
        assert len(row.cells) == len(headers)
        assert row.cells[1] == stored["segment"] == f"Lesion {row.lesion_id}"
        assert float(row.cells[2]) == round(stored["volume_ml"], 2)
        assert row.cells[headers.index("Measurable")] in ("yes", "no")


def test_format_and_totals(logic):
    view = _module("lesion_view")
    assert view.format_cell(None, "double", "mL") == "-"
    assert view.format_cell(float("nan"), "double", "mm") == "-"
    assert view.format_cell(12.345, "double", "mm") == "12.3"
    assert view.format_cell(-12.6, "double", "HU") == "-13"
    assert view.totals_text({"lesions": []}) == "No lesions."
    report = {"lesions": [{"id": 1, "volume_ml": 2.0, "tlg": 10.0, "suv_max": 8.0},
                          {"id": 2, "volume_ml": 1.5, "tlg": 3.0, "suv_max": 11.0}], "totals": {"tlg": 13.0}}
    assert view.totals_text(report) == "2 lesions; MTV 3.50 mL; TLG 13.0 g; SUVmax 11.00 g/mL"


def test_focus_is_inside_the_lesion_on_its_long_axis_slice(handmade, scene, logic):
    result = _result(handmade, scene)
    view, geometry = _module("lesion_view"), _module("geometry")
    ijk_to_ras = _module("volumes").world_ijk_to_ras(handmade.ct)
    for lesion in result.report["lesions"]:
        ras = view.lesion_focus_ras(result.report, lesion["id"])
        k, j, i = np.round(geometry.ras_to_ijk(ijk_to_ras, ras)[::-1]).astype(int)
        assert handmade.labels[k, j, i] == lesion["id"], f"lesion {lesion['id']}: focus {ras} is outside"
        assert np.isclose(geometry.ras_to_lps(ras)[2], lesion["recist"]["slice_z_lps"])
    try:
        view.lesion_focus_ras(result.report, 99)
    except KeyError as error:
        assert "update the measurements" in str(error)
    else:
        raise AssertionError("an unknown lesion has no focus")
