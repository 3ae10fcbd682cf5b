"""Load sample study and Export DICOM SEG + SR as the panel wires them, on the stand-in widgets of
test_widgets_panels.py, against the real facade and backend: the buttons' states and tooltips, the
work stepped by the module's timer, the inputs chosen, the files written and offered to Slicer's
DICOM database, cancel and failures shown."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import TOKEN
from test_logic_dicom_export import FakeDicomDatabase, dicom_result  # noqa: F401 (a fixture)
from test_widgets_panels import (  # noqa: F401 (fixtures)
    _drive, choices, dialogs, facade, qt_stub, ui, widgets)


def _volume_names(scene) -> list[str]:
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    return [nodes.GetItemAsObject(n).GetName() for n in range(nodes.GetNumberOfItems())]


def test_load_sample_study_chooses_the_inputs_and_cancels(widgets, ui, facade, choices, dialogs, scene):
    connected, changes = [False], []
    panel = widgets("sample_panel").SamplePanel(ui, facade, lambda: choices, lambda: connected[0],
                                                lambda: (changes.append(1), panel.updateButtons()), lambda: None)
    panel.updateButtons()
    button = ui.loadSampleButton
    assert not button.enabled and "connect to a backend" in button.toolTip
    connected[0] = True
    panel.updateButtons()
    assert button.enabled and button.text == "Load sample study" and "synthetic whole-body PET/CT" in button.toolTip

    button.clicked.emit()
    assert button.text == "Cancel loading the sample" and button.enabled and changes
    _drive(panel)
    assert (choices.ct.GetName(), choices.pet.GetName()) == ("Sample synth_0000 CT", "Sample synth_0000 PET")
    assert dialogs.layers == [{"background": choices.ct, "foreground": choices.pet, "foregroundOpacity": 0.4,
                               "fit": True}]
    assert ui.stageLabel.text.startswith("Loaded Sample synth_0000:") and ui.stageLabel.text.endswith("Press Segment.")
    assert button.text == "Load sample study" and panel.seed == 1 and dialogs.errors == []

    button.clicked.emit()
    button.clicked.emit()  # Cancel
    assert panel.loading is None and not panel.poll() and ui.stageLabel.text.startswith("Loading the sample study was "
                                                                                         "cancelled")
    assert len(_volume_names(scene)) == 2 and button.text == "Load sample study"

    facade.connect("http://127.0.0.1:9", TOKEN)  # nothing listens there
    button.clicked.emit()
    _drive(panel, timeout_s=60)
    assert dialogs.errors and dialogs.errors[0].startswith("Could not load a sample study:")
    assert ui.stageLabel.text.startswith("Loading the sample study failed") and len(_volume_names(scene)) == 2


@pytest.fixture
def database(monkeypatch, dicom_result):
    """``slicer.dicomDatabase`` as an open database that knows the result's DICOM files."""
    import slicer

    fake = FakeDicomDatabase(*dicom_result[1:3])
    fake.isOpen = True
    monkeypatch.setattr(slicer, "dicomDatabase", fake, raising=False)
    return fake


def test_export_dicom_writes_the_files_and_offers_the_import(widgets, ui, facade, dicom_result, database, dialogs,
                                                            monkeypatch, tmp_path):
    import slicer

    node = dicom_result[0]
    module = widgets("dicom_export_panel")
    imported, asked = [], []
    monkeypatch.setattr(module, "importIntoDicomDatabase", lambda paths: imported.extend(paths))
    monkeypatch.setattr(slicer.util, "confirmYesNoDisplay", lambda text, **kwargs: asked.append(text) or True,
                        raising=False)
    panel = module.DicomExportPanel(ui, facade, lambda: node, lambda: panel.updateButtons(True, True), lambda: None)
    button = ui.exportDicomButton
    panel.updateButtons(hasResult=True, connected=True)
    assert button.enabled and button.text == "Export DICOM SEG + SR" and "TID 1500" in button.toolTip
    panel.updateButtons(hasResult=True, connected=False)
    assert not button.enabled and "connect to a backend" in button.toolTip

    ui.exportDirectoryButton.directory = str(tmp_path / "out")
    panel.updateButtons(hasResult=True, connected=True)
    button.clicked.emit()
    assert button.text == "Cancel DICOM export" and panel.busy
    _drive(panel, timeout_s=120)
    files = [tmp_path / "out" / "lesions_seg.dcm", tmp_path / "out" / "lesions_sr.dcm"]
    assert all(path.is_file() for path in files) and [str(p) for p in imported] == [str(p) for p in files]
    assert len(asked) == 1 and ui.stageLabel.text.endswith("imported them into the DICOM database.")
    assert button.text == "Export DICOM SEG + SR" and dialogs.errors == []

    before = files[0].stat().st_ino
    button.clicked.emit()  # the files exist: the overwrite is confirmed (the stand-in says yes)
    _drive(panel, timeout_s=120)
    assert files[0].stat().st_ino != before and dialogs.errors == []  # replaced whole

    button.clicked.emit()
    button.clicked.emit()  # Cancel
    assert not panel.busy and ui.stageLabel.text.startswith("DICOM export cancelled") and not panel.poll()


def test_export_dicom_says_why_it_cannot(widgets, ui, facade, dicom_result, database, dialogs, monkeypatch):
    import slicer

    from AttUMambaSegLib.logic.results import CT_ROLE

    node = dicom_result[0]
    panel = widgets("dicom_export_panel").DicomExportPanel(ui, facade, lambda: node, lambda: None, lambda: None)
    node.GetNodeReference(CT_ROLE).RemoveAttribute("DICOM.instanceUIDs")
    panel.updateButtons(hasResult=True, connected=True)
    assert not ui.exportDicomButton.enabled
    assert "was not loaded from Slicer's DICOM database" in ui.exportDicomButton.toolTip
    monkeypatch.setattr(slicer, "dicomDatabase", SimpleNamespace(isOpen=False))
    panel.updateButtons(hasResult=True, connected=True)
    assert "DICOM database is not open" in ui.exportDicomButton.toolTip


def test_the_results_and_segment_panels_step_their_new_parts(widgets, ui, facade, choices, handmade_result, dialogs):
    """The Results panel owns the DICOM export and the Segment panel the sample loading: updated, stepped, cancelled."""
    results = widgets("results_panel").ResultsPanel(ui, facade, lambda: handmade_result.segmentation, lambda: None,
                                                    lambda: None)
    results.updateButtons(segmenting=False, connected=True)
    assert not ui.exportDicomButton.enabled and "DICOM database is not open" in ui.exportDicomButton.toolTip
    segment = widgets("segment_panel").SegmentPanel(ui, facade, lambda: choices, results, lambda: True,
                                                    lambda: segment.updateButtons(), lambda: None)
    segment.updateButtons()
    assert ui.loadSampleButton.enabled
    ui.loadSampleButton.clicked.emit()
    assert segment.poll() and segment.sample.loading is not None
    segment.cancel()  # a scene closing
    assert segment.sample.loading is None and not segment.poll()
