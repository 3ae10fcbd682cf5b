"""The Response panel on stand-in widgets (see test_widgets_panels.py) against the real facade and backend:
Compare -> categories and the group table; unticking a target assesses again; a row click centres the views."""

from __future__ import annotations

import time
import types
from types import SimpleNamespace

import pytest
from test_widgets_panels import USER_ROLE, Item, Settings, Signal, Table, Widget, dialogs, facade, ui, widgets  # noqa: F401
from test_logic_response import follow_up_result  # noqa: F401

CHECKED, UNCHECKED = 2, 0


class CheckItem(Item):
    def __init__(self, text=""):
        super().__init__(text)
        self.check, self.flags, self.table, self.col = None, 0, None, -1

    def setFlags(self, flags):
        self.flags = flags

    def setCheckState(self, state):
        self.check = state
        if self.table is not None:
            self.table.itemChanged.emit(self)

    def checkState(self):
        return self.check

    def column(self):
        return self.col


class Combo(Widget):
    def __init__(self):
        super().__init__()
        self.node = None

    def currentNode(self):
        return self.node


@pytest.fixture
def qt_stub():
    Settings.store = {}
    qt = types.ModuleType("qt")
    qt.QTableWidgetItem, qt.QSettings = CheckItem, Settings
    qt.Qt = SimpleNamespace(UserRole=USER_ROLE, Checked=CHECKED, Unchecked=UNCHECKED, ItemIsUserCheckable=16,
                            ItemIsEnabled=32, ItemIsEditable=2, ItemIsSelectable=1)
    return qt


@pytest.fixture
def response_ui(ui):
    ui.baselineResultSelector, ui.followUpResultSelector = Combo(), Combo()
    table = ui.responseTableWidget
    table.itemChanged = Signal()
    original = table.setItem

    def set_item(row, column, item):
        item.table, item.col = table, column
        original(row, column, item)

    table.setItem = set_item
    return ui


def _drive(panel, until, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while not until():
        panel.poll()
        assert time.monotonic() < deadline, "the panel never settled"
        time.sleep(0.02)


def test_the_response_panel_compares_reassesses_and_centres(widgets, response_ui, facade, handmade_result,
                                                            follow_up_result, dialogs, monkeypatch):  # noqa: F811
    import slicer

    jumps = []
    monkeypatch.setattr(slicer, "modules", SimpleNamespace(markups=SimpleNamespace(logic=lambda: SimpleNamespace(
        JumpSlicesToLocation=lambda r, a, s, centred: jumps.append((r, a, s))))), raising=False)
    ui = response_ui
    panel = widgets("response_panel").ResponsePanel(ui, facade, lambda: None)
    ui.baselineResultSelector.node, ui.followUpResultSelector.node = handmade_result.segmentation, \
        follow_up_result.segmentation
    ui.compareButton.clicked.emit()
    assert ui.compareButton.text == "Cancel" and ui.responseProgressBar.visible
    _drive(panel, lambda: panel.assessment is None)
    assert dialogs.errors == [] and ui.compareButton.text == "Compare"
    response = panel.result.response
    assert ui.recistLabel.text == f"RECIST 1.1: {response['categories']['recist']['category']}"
    assert ui.recistLabel.toolTip.startswith(response["categories"]["recist"]["rule"])
    assert ui.percistLabel.text.startswith("PERCIST 1.0: ") and ui.deauvilleLabel.text.startswith("Deauville")
    table = ui.responseTableWidget
    assert len(table.cells) == len(response["lesions"])
    target = panel.targetColumn()
    ticked = [row for row in table.cells if row[target].checkState() == CHECKED]
    assert len(ticked) == len(panel.result.target_ids()) >= 2

    before = panel.result.target_ids()
    ticked[0][target].setCheckState(UNCHECKED)            # the reader unticks a target
    assert panel.watch.changed_at is not None
    _drive(panel, lambda: panel.assessment is not None)    # settles, then assesses again
    _drive(panel, lambda: panel.assessment is None)
    assert dialogs.errors == []
    assert len(panel.result.target_ids()) == len(before) - 1
    assert sum(row[target].checkState() == CHECKED for row in table.cells) == len(before) - 1

    table.cellClicked.emit(0, 3)
    group = table.item(0, 0).data(USER_ROLE)
    expected = __import__("importlib").import_module("AttUMambaSegLib.logic.response_reader").group_focus(panel.result, group)
    assert jumps == [expected]


def test_the_response_panel_shows_one_message_when_the_backend_is_down(widgets, response_ui, facade, handmade_result,
                                                                      follow_up_result, dialogs, scene):  # noqa: F811
    ui = response_ui
    facade.connect("http://127.0.0.1:9", "token")
    panel = widgets("response_panel").ResponsePanel(ui, facade, lambda: None)
    ui.baselineResultSelector.node, ui.followUpResultSelector.node = handmade_result.segmentation, \
        follow_up_result.segmentation
    nodes = scene.GetNumberOfNodes()
    ui.compareButton.clicked.emit()
    _drive(panel, lambda: panel.assessment is None)
    assert len(dialogs.errors) == 1 and "not reachable" in dialogs.errors[0]
    assert ui.compareButton.text == "Compare" and scene.GetNumberOfNodes() == nodes


def _slicer_views(scene):
    """The view nodes Slicer's layout manager makes: the layout node, Red/Yellow slice views, one 3D view."""
    import slicer

    layout = scene.AddNode(slicer.vtkMRMLLayoutNode())
    layout.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
    for name in ("Red", "Yellow"):
        for node in (slicer.vtkMRMLSliceNode(), slicer.vtkMRMLSliceCompositeNode()):
            node.SetLayoutName(name)
            node.SetSingletonTag(name)
            scene.AddNode(node)
    view = slicer.vtkMRMLViewNode()
    view.SetLayoutName("1")
    view.SetSingletonTag("1")
    scene.AddNode(view)
    return layout


def test_the_follow_up_shows_beside_the_baseline_and_organ_and_node_are_reader_inputs(
        widgets, response_ui, facade, handmade_result, follow_up_result, dialogs, scene):  # noqa: F811
    import slicer
    from AttUMambaSegLib.logic.response_views import view_node
    from AttUMambaSegLib.logic.results import CT_ROLE, PET_ROLE

    layout = _slicer_views(scene)
    ui = response_ui
    panel = widgets("response_panel").ResponsePanel(ui, facade, lambda: None)
    ui.baselineResultSelector.node, ui.followUpResultSelector.node = handmade_result.segmentation, \
        follow_up_result.segmentation
    ui.compareButton.clicked.emit()
    _drive(panel, lambda: panel.assessment is None)
    assert dialogs.errors == []

    # side by side: baseline left (Red), the registered follow-up right (Yellow), linked, each with its own segments
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    for when, view in (("baseline", "Red"), ("follow_up", "Yellow")):
        segmentation = panel.result.segmentations[when]
        composite, slice_node = (view_node(scene, c, view) for c in ("vtkMRMLSliceCompositeNode", "vtkMRMLSliceNode"))
        assert composite.GetBackgroundVolumeID() == segmentation.GetNodeReference(CT_ROLE).GetID()
        assert composite.GetForegroundVolumeID() == segmentation.GetNodeReference(PET_ROLE).GetID()
        assert composite.GetLinkedControl()
        shown = [segmentation.GetDisplayNode().GetNthViewNodeID(i)
                 for i in range(segmentation.GetDisplayNode().GetNumberOfViewNodeIDs())]
        assert slice_node.GetID() in shown and not any("Red" in v or "Yellow" in v for v in shown if v != slice_node.GetID())
    assert panel.result.transform is not None and \
        panel.result.segmentations["follow_up"].GetNodeReference(CT_ROLE).GetTransformNodeID() == panel.result.transform.GetID()

    # the reader says a target is a lymph node in the neck: RECIST measures it by its short axis
    table, columns = ui.responseTableWidget, panel._columns("target", "organ", "nodal")
    target, organ, nodal = columns
    row = next(r for r in table.cells if r[target].checkState() == CHECKED)
    group = row[0].data(USER_ROLE)
    ids = next(g["baseline_ids"] for g in panel.result.response["lesions"] if str(g["group"]) == group)
    assert row[organ].flags & 2, "the organ cell is editable"
    row[organ].setText("neck")
    table.itemChanged.emit(row[organ])
    row[nodal].setCheckState(CHECKED)
    assert panel.watch.changed_at is not None
    _drive(panel, lambda: panel.assessment is not None)
    _drive(panel, lambda: panel.assessment is None)
    assert dialogs.errors == []
    assert panel.result.reader["lesion_info"][str(ids[0])] == {"organ": "neck", "nodal": True}
    chosen = {t["baseline_id"]: t for t in panel.result.response["categories"]["recist"]["targets"]}
    assert chosen[ids[0]]["nodal"] is True and chosen[ids[0]]["organ"] == "neck"
    lesion = next(l for l in panel.result.reports["baseline"]["lesions"] if l["id"] == ids[0])
    assert chosen[ids[0]]["baseline_mm"] == pytest.approx(lesion["recist"]["short_axis_mm"], abs=0.01)
    shown = next(r for r in table.cells if r[0].data(USER_ROLE) == group)
    assert shown[organ].text() == "neck" and shown[nodal].checkState() == CHECKED
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
