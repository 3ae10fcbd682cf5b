"""The Widget's Segment, Results and Batch panels on stand-in widgets, against the real facade and backend.

Slicer's Qt cannot exist here, so every widget named in the .ui becomes a small stand-in with
PythonQt's habits (properties as attributes, signals with ``connect``), and the dialogs of
``slicer.util`` are recorded instead of shown. What the panels do with the facade (start, poll,
cancel, open) is real; the static checks of the widget names and classes are in
test_module_files.py.
"""

from __future__ import annotations

import sys
import time
import types
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import ClassVar

import pytest
import SimpleITK as sitk
from conftest import REPO, TOKEN

USER_ROLE = 256
ACTIONS_CONTEXT_MENU = 2


class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in self.slots:
            slot(*args)


class Widget:
    def __init__(self):
        self.enabled, self.visible, self.text, self.toolTip, self.value, self.checked = True, True, "", "", 0, False
        self.clicked, self.currentPathChanged = Signal(), Signal()
        self.currentPath = ""

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False


class Item:
    def __init__(self, text=""):
        self.texts, self.roles, self.toolTip = text, {}, ""

    def setToolTip(self, text):
        self.toolTip = text

    def setText(self, text):
        self.texts = text

    def text(self):
        return self.texts

    def setData(self, role, value):
        self.roles[role] = value

    def data(self, role):
        return self.roles.get(role)


class Action:
    """A checkable QAction of a right-click menu; ``trigger()`` is the user's click on it."""

    def __init__(self, text, parent=None):
        self.text, self.checkable, self.checked, self.toggled = text, False, False, Signal()

    def trigger(self):
        self.checked = not self.checked
        self.toggled.emit(self.checked)


class Table(Widget):
    def __init__(self):
        super().__init__()
        self.cells, self.current, self.headers = [], -1, []
        self.itemSelectionChanged, self.cellDoubleClicked, self.cellClicked = Signal(), Signal(), Signal()
        self.contextMenuPolicy, self.menu, self.hidden = None, [], set()

    def addAction(self, action):
        self.menu.append(action)

    def setColumnHidden(self, column, hidden):
        (self.hidden.add if hidden else self.hidden.discard)(column)

    def isColumnHidden(self, column):
        return column in self.hidden

    def clear(self):
        self.cells, self.current = [{} for _ in self.cells], -1

    def setColumnCount(self, count):
        self.headers = (self.headers + [Item() for _ in range(count)])[:count]

    def setHorizontalHeaderLabels(self, labels):
        self.headers = [Item(label) for label in labels]

    def horizontalHeaderItem(self, column):
        return self.headers[column]

    def setRowCount(self, count):
        self.cells = (self.cells + [{} for _ in range(count)])[:count]
        self.current = self.current if self.current < count else -1

    def item(self, row, column):
        return self.cells[row].get(column) if 0 <= row < len(self.cells) else None

    def setItem(self, row, column, item):
        self.cells[row][column] = item

    def currentRow(self):
        return self.current

    def selectedItems(self):
        return list(self.cells[self.current].values()) if 0 <= self.current < len(self.cells) else []

    def resizeColumnsToContents(self):
        pass

    def select(self, row):
        self.current = row
        self.itemSelectionChanged.emit()

    def rows(self):
        return [[row[column].text() for column in sorted(row)] for row in self.cells]


class Settings:
    store: ClassVar[dict] = {}

    def value(self, key, default=None):
        return self.store.get(key, default)

    def setValue(self, key, value):
        self.store[key] = value


@pytest.fixture
def qt_stub():
    Settings.store = {}
    qt = types.ModuleType("qt")
    qt.QTableWidgetItem, qt.QSettings, qt.QAction = Item, Settings, Action
    qt.Qt = SimpleNamespace(UserRole=USER_ROLE, ActionsContextMenu=ACTIONS_CONTEXT_MENU)
    return qt


@pytest.fixture
def ui():
    """A stand-in for every widget of the .ui, under its name."""
    widgets = ET.parse(REPO / "AttUMambaSeg" / "Resources" / "UI" / "AttUMambaSeg.ui").getroot().iter("widget")
    return SimpleNamespace(**{w.get("name"): Table() if w.get("class") == "QTableWidget" else Widget()
                              for w in widgets})


@pytest.fixture
def dialogs(monkeypatch, scene):
    """What the panels would have shown: error messages, confirmations, the slice views' layers."""
    import contextlib

    import slicer

    shown = SimpleNamespace(errors=[], layers=[])

    @contextlib.contextmanager
    def try_with_error_display(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as error:
            shown.errors.append(f"{message}\n\n{error}")
            raise

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", try_with_error_display)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: shown.errors.append(text))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, **kwargs: True)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **layers: shown.layers.append(layers))
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    return shown


@pytest.fixture
def widgets(module):
    """``AttUMambaSegLib.widgets`` loaded afresh on the stand-in ``qt``; unloaded afterwards."""
    def drop():
        for name in [n for n in sys.modules if n.startswith(f"{module.LIBRARY}.widgets")]:
            del sys.modules[name]

    drop()
    yield module.widgetsModule
    drop()


@pytest.fixture
def facade(module, lesion_backend):
    logic = module.AttUMambaSegLogic()
    logic.connect(lesion_backend, TOKEN)
    return logic


@pytest.fixture
def choices():
    return SimpleNamespace(model="tiny", device="auto", tta=False, reference="CT", minVolumeMl=0.0,
                           replaceExisting=False, ct=None, pet=None, result=None)


@pytest.fixture
def folder(tmp_path):
    from tiny_model import small_study

    (tmp_path / "in").mkdir()
    for image, kind in zip(small_study(), ("ct", "pet")):
        sitk.WriteImage(image, str(tmp_path / "in" / f"solo_{kind}.nii.gz"))
    return tmp_path / "in"


def _drive(panel, timeout_s: float = 300.0) -> None:
    """Call poll() as the module's timer does until nothing goes on."""
    deadline = time.monotonic() + timeout_s
    while panel.poll():
        assert time.monotonic() < deadline, "the panel never settled"
        time.sleep(0.02)


def _batch_panel(widgets, ui, facade, choices, connected=True):
    wakes = []
    panel = widgets("batch_panel").BatchPanel(ui, facade, lambda: choices, lambda: connected,
                                              lambda: wakes.append(1))
    return panel, wakes


def test_the_batch_panel_runs_a_folder_and_opens_a_finished_study(widgets, ui, facade, choices, folder, dialogs,
                                                                   tmp_path):
    panel, wakes = _batch_panel(widgets, ui, facade, choices)
    assert not ui.batchRunButton.enabled and "Choose the study folder" in ui.batchRunButton.toolTip
    for line_edit, path in ((ui.batchInputPathLineEdit, folder), (ui.batchOutputPathLineEdit, tmp_path / "out")):
        line_edit.currentPath = str(path)
        line_edit.currentPathChanged.emit(str(path))
    assert ui.batchRunButton.enabled and Settings.store["AttUMambaSeg/BatchOutputFolder"] == str(tmp_path / "out")

    ui.batchRunButton.clicked.emit()
    assert ui.batchRunButton.text == "Cancel batch" and ui.batchProgressBar.visible and wakes
    _drive(panel)
    assert ui.batchRunButton.text == "Run batch" and not ui.batchProgressBar.visible
    assert ui.batchStatusLabel.text.startswith("Done: 1 segmented") and ui.batchProgressBar.value == 100
    (row,) = ui.batchTableWidget.rows()
    assert row[:3] == ["solo", "done", "1"] and float(row[3]) > 0 and row[4] == ""
    assert not ui.batchOpenButton.enabled  # nothing selected yet

    ui.batchTableWidget.select(0)
    assert ui.batchOpenButton.enabled
    ui.batchOpenButton.clicked.emit()
    assert ui.batchStatusLabel.text.startswith("Opening solo") and not ui.batchOpenButton.enabled
    _drive(panel)
    assert ui.batchStatusLabel.text == "Opened solo: lesions found: 1." and ui.batchOpenButton.enabled
    assert (choices.ct.GetName(), choices.pet.GetName()) == ("solo CT", "solo PET")
    assert choices.result.GetName() == "solo lesions"
    assert dialogs.layers == [{"background": choices.ct, "foreground": choices.pet, "foregroundOpacity": 0.4,
                               "fit": True}]
    assert dialogs.errors == []


def test_the_batch_panel_shows_errors_and_cancels(widgets, ui, facade, choices, folder, dialogs, tmp_path):
    panel, _ = _batch_panel(widgets, ui, facade, choices)
    ui.batchInputPathLineEdit.currentPath, ui.batchOutputPathLineEdit.currentPath = str(tmp_path / "nope"), "/tmp/x"
    panel.updateButtons()
    ui.batchRunButton.clicked.emit()  # returns at once: the backend's answer comes through poll()
    _drive(panel, 30)
    assert dialogs.errors[-1].startswith("The batch failed:") and "not a folder" in dialogs.errors[-1]
    assert ui.batchRunButton.text == "Run batch" and ui.batchStatusLabel.text.startswith("Failed")

    ui.batchInputPathLineEdit.currentPath, ui.batchOutputPathLineEdit.currentPath = str(folder), str(tmp_path / "o")
    ui.batchRunButton.clicked.emit()
    ui.batchRunButton.clicked.emit()  # Cancel
    assert ui.batchStatusLabel.text.startswith("Cancelling") and not ui.batchRunButton.enabled
    _drive(panel)
    assert ui.batchStatusLabel.text.startswith("Cancelled") and ui.batchRunButton.text == "Run batch"
    if ui.batchTableWidget.rows():
        ui.batchTableWidget.select(0)
        assert not ui.batchOpenButton.enabled  # not segmented: nothing to open

    _batch_panel(widgets, ui, facade, choices, connected=False)
    assert not ui.batchRunButton.enabled and "connect to a backend" in ui.batchRunButton.toolTip
    assert not ui.batchOpenButton.enabled


def test_the_segment_panel_runs_cancels_and_selects_the_result(widgets, ui, facade, choices, study_nodes, dialogs):
    shown, changes = [], []
    results = SimpleNamespace(show=lambda force=False: shown.append(force))
    panel = widgets("segment_panel").SegmentPanel(ui, facade, lambda: choices, results, lambda: True,
                                                  lambda: (changes.append(1), panel.updateButtons()), lambda: None)
    panel.updateButtons()
    assert not ui.segmentButton.enabled and "Choose a CT and a PET" in ui.segmentButton.toolTip
    choices.ct, choices.pet = study_nodes[:2]
    panel.updateButtons()
    assert ui.segmentButton.enabled and not ui.progressBar.visible

    ui.segmentButton.clicked.emit()
    assert ui.segmentButton.text == "Cancel" and ui.progressBar.visible and changes
    _drive(panel)
    assert ui.stageLabel.text == "Done: 1 lesion" and choices.result.GetSegmentation().GetNumberOfSegments() == 1
    assert shown == [True] and ui.segmentButton.text == "Segment" and not ui.progressBar.visible

    first = choices.result
    ui.segmentButton.clicked.emit()
    ui.segmentButton.clicked.emit()  # Cancel
    assert ui.stageLabel.text.startswith("Cancelled") and choices.result is first and panel.run is None
    assert not panel.poll() and dialogs.errors == []


def test_the_results_panel_remeasures_without_blocking_cancels_and_shows_errors(widgets, ui, facade, handmade_result,
                                                                                dialogs):
    from mrml_helpers import edit_segment

    node = handmade_result.segmentation
    panel = widgets("results_panel").ResultsPanel(ui, facade, lambda: node,
                                                  lambda: panel.updateButtons(segmenting=False, connected=True),
                                                  lambda: None)
    panel.updateButtons(segmenting=False, connected=True)
    panel.show(force=True)
    button, before = ui.updateMeasurementsButton, ui.lesionTableWidget.rows()
    assert button.enabled and button.text == "Update measurements" and len(before) == 3
    edit_segment(node, "Lesion 1", lambda voxels, extent: voxels[:, :, 11 - extent[0]:].fill(0))

    button.clicked.emit()
    assert button.text == "Cancel" and button.enabled and not ui.exportButton.enabled
    _drive(panel)
    after = ui.lesionTableWidget.rows()
    assert ui.stageLabel.text == "Measurements updated." and button.text == "Update measurements"
    assert after != before and after[1:] == before[1:]  # lesion 1 re-measured, the others as they were
    assert ui.exportButton.enabled and dialogs.errors == []

    button.clicked.emit()
    button.clicked.emit()  # Cancel
    assert panel.measuring is None and not panel.poll() and ui.stageLabel.text.startswith("Measuring cancelled")
    assert ui.lesionTableWidget.rows() == after and button.text == "Update measurements"

    facade.connect("http://127.0.0.1:9", TOKEN)  # nothing listens there
    button.clicked.emit()
    _drive(panel, timeout_s=60)
    assert ui.stageLabel.text == "Measuring failed." and len(dialogs.errors) == 1
    assert dialogs.errors[0].startswith("Could not update the measurements:") and ui.lesionTableWidget.rows() == after


def test_the_results_panel_shows_the_primary_columns_and_the_clicked_lesions_labels(widgets, ui, facade,
                                                                                   handmade_result, dialogs,
                                                                                   monkeypatch):
    import slicer

    jumps = []
    monkeypatch.setattr(slicer, "modules", SimpleNamespace(markups=SimpleNamespace(logic=lambda: SimpleNamespace(
        JumpSlicesToLocation=lambda r, a, s, centred: jumps.append((r, a, s))))), raising=False)
    node, table = handmade_result.segmentation, ui.lesionTableWidget
    panel = widgets("results_panel").ResultsPanel(ui, facade, lambda: node, lambda: None, lambda: None)
    panel.show(force=True)
    titles = [header.text() for header in table.headers]
    shown = [titles[c] for c in range(len(titles)) if not table.isColumnHidden(c)]
    assert shown == ["Lesion", "Volume\n(mL)", "SUVmax\n(g/mL)", "SUVpeak\n(g/mL)", "Long axis\n(mm)",
                     "Short axis\n(mm)"]
    assert len(table.rows()) == 3 and all(len(row) == len(titles) for row in table.rows())  # every column filled
    assert table.contextMenuPolicy == ACTIONS_CONTEXT_MENU and [a.text for a in table.menu] == \
        [title.replace("\n", " ") for title in titles]
    tlg = titles.index("TLG\n(g)")
    table.menu[tlg].trigger()                      # the user ticks TLG in the right-click menu
    assert not table.isColumnHidden(tlg)
    panel.show(force=True)
    assert not table.isColumnHidden(tlg)           # and it stays shown when the table is filled again

    def labelled():
        lines = handmade_result.lines.items()
        return sorted(key for key, line in lines if line.GetDisplayNode().GetPropertiesLabelVisibility())

    assert labelled() == []
    row = next(r for r in range(3) if table.item(r, 0).data(USER_ROLE) == 2)
    table.cellClicked.emit(row, 3)
    assert labelled() == [(2, "long"), (2, "short")] and len(jumps) == 1 and dialogs.errors == []
