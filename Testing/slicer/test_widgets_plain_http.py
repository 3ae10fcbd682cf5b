"""The Backend section warns in red about plain HTTP to another computer, and Segment asks once per
backend and session before volumes go there (issue 15, item 8; the decision is the Logic's).

The panels run on the stand-in widgets of test_widgets_panels.py; the "remote" backend is a
recording server on loopback reached under the name gpu-box.test.
"""

from __future__ import annotations

import importlib
import socket
import time
from types import SimpleNamespace

import pytest
from http_doubles import recording_server
from test_widgets_panels import Signal, Widget, choices, dialogs, qt_stub, ui, widgets  # noqa: F401 (fixtures)

REMOTE = 1  # backendModeComboBox: "Connect to a running backend"


class Combo(Widget):
    """A QComboBox as the Backend section uses it."""

    def __init__(self):
        super().__init__()
        self.currentIndex, self.currentIndexChanged, self.items = 0, Signal(), []

    def setVisible(self, visible):
        self.visible = visible

    def blockSignals(self, block):
        return False

    def clear(self):
        self.items = []

    def addItem(self, label, data):
        self.items.append((label, data))

    def findData(self, data):
        return next((i for i, item in enumerate(self.items) if item[1] == data), -1)

    def itemData(self, index):
        return self.items[index][1]


@pytest.fixture
def backend_ui(ui):
    for name in ("backendModeComboBox", "modelComboBox", "managedBackendWidget", "remoteBackendWidget"):
        setattr(ui, name, Combo())
    ui.backendUrlLineEdit.editingFinished = Signal()
    return ui


#: Put before the transfer helper's bootstrap: gpu-box.test resolves to 127.0.0.1 in the helper too.
RESOLVE_GPU_BOX = ("import socket; _resolve = socket.getaddrinfo; socket.getaddrinfo = lambda host, *a, **k: "
                   "_resolve('127.0.0.1' if host == 'gpu-box.test' else host, *a, **k)")


@pytest.fixture
def gpu_box(monkeypatch, logic):
    """A stand-in backend on loopback, reached as http://gpu-box.test:<port>; this session's consents emptied.

    The name resolves to loopback here and in the transfer helper process (which sends the volumes):
    its bootstrap line starts with the same resolver. The consent is checked here, before the helper starts.
    """
    transport = importlib.import_module("AttUMambaSegLib.logic.transport")
    transfers = importlib.import_module("AttUMambaSegLib.logic.transfers")
    transport.CONSENT.forget()
    resolve = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *a, **k: resolve("127.0.0.1" if host == "gpu-box.test" else host, *a, **k))
    monkeypatch.setattr(transfers, "BOOTSTRAP", f"{RESOLVE_GPU_BOX}; {transfers.BOOTSTRAP}")
    answers = {("GET", "/v1/health"): {"status": "ok", "version": "9.9", "devices": ["cpu"]},
               ("GET", "/v1/models"): [{"name": "tiny"}], ("POST", "/v1/studies"): {"study_id": "s1"},
               ("POST", "/v1/jobs"): {"job_id": "j1"},
               ("GET", "/v1/jobs/j1"): {"state": "failed", "message": "stand-in backend"}}
    with recording_server(lambda method, path: (200, {}, answers.get((method, path), {}))) as server:
        yield SimpleNamespace(server=server, url=server.url.replace("127.0.0.1", "gpu-box.test"))
    transport.CONSENT.forget()


def _drive(panel, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while panel.poll():
        assert time.monotonic() < deadline, "the panel never settled"
        time.sleep(0.02)


def test_plain_http_to_another_computer_is_red_and_confirmed_before_volumes_go(
        module, widgets, backend_ui, gpu_box, choices, study_nodes, dialogs, monkeypatch):
    import slicer

    ui, facade = backend_ui, module.AttUMambaSegLogic()
    backend = widgets("backend_panel").BackendPanel(ui, facade, lambda: choices, lambda: None, lambda: None)
    ui.backendModeComboBox.currentIndex = REMOTE
    ui.backendUrlLineEdit.text, ui.backendTokenLineEdit.text = gpu_box.url, "remote-token"
    ui.testConnectionButton.clicked.emit()
    assert "plain HTTP to another computer" in ui.backendStatusLabel.text  # already while checking
    _drive(backend)
    assert backend.connected and "#2e7d32" in ui.backendStatusLabel.text  # green: it answers
    warning = ui.backendStatusLabel.text.split("<br>")[-1]
    assert warning.startswith('<span style="color:#c62828">') and "ssh -N -L 8765:127.0.0.1:8765" in warning

    asked, answers = [], [False, True]
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, **kwargs: (asked.append(text), answers.pop(0))[1])
    choices.ct, choices.pet = study_nodes[:2]
    results = SimpleNamespace(show=lambda force=False: None)
    segment = widgets("segment_panel").SegmentPanel(ui, facade, lambda: choices, results, lambda: backend.connected,
                                                    lambda: None, lambda: None)
    ui.segmentButton.clicked.emit()  # declined
    assert segment.run is None and len(asked) == 1 and "unencrypted" in asked[0]
    assert [r.path for r in gpu_box.server.requests] == ["/v1/health", "/v1/models"]  # no volume went out

    ui.segmentButton.clicked.emit()  # confirmed: the volumes go, sent by the transfer helper
    _drive(segment)
    upload = [r for r in gpu_box.server.requests if (r.method, r.path) == ("POST", "/v1/studies")]
    assert len(upload) == 1 and upload[0].headers["authorization"] == "Bearer remote-token"
    assert upload[0].body_bytes > 2 * study_nodes[0].GetImageData().GetNumberOfPoints()  # the CT's voxels went
    assert dialogs.errors[-1].endswith("stand-in backend")  # the stand-in's job fails; the run ends cleanly
    ui.segmentButton.clicked.emit()  # the same backend in the same session: not asked again
    _drive(segment)
    assert len(asked) == 2


def test_no_warning_and_no_question_for_a_backend_on_this_computer(module, widgets, backend_ui, lesion_backend,
                                                                   dialogs):
    from conftest import TOKEN

    ui, facade = backend_ui, module.AttUMambaSegLogic()
    backend = widgets("backend_panel").BackendPanel(ui, facade, lambda: None, lambda: None, lambda: None)
    ui.backendModeComboBox.currentIndex = REMOTE
    ui.backendUrlLineEdit.text, ui.backendTokenLineEdit.text = lesion_backend, TOKEN
    ui.testConnectionButton.clicked.emit()
    _drive(backend)
    assert backend.connected and "#c62828" not in ui.backendStatusLabel.text
    assert widgets("backend_panel").confirmPlainHttp(facade.client)  # nothing to ask
