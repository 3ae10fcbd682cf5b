"""The Backend section with a backend that fails to start, and Stop: nothing waits on the GUI thread,
the failed start explains itself from the kept log, and Start works again (issue 17, items 4 and 6).

The panel runs on the stand-in widgets of test_widgets_panels.py; the backend's Python is a small
script standing for an environment without the backend package, or one that ignores SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from types import SimpleNamespace

import pytest
from test_widgets_panels import Signal, Widget, choices, dialogs, qt_stub, ui, widgets  # noqa: F401 (fixtures)
from test_widgets_plain_http import backend_ui  # noqa: F401 (fixture)

BROKEN = "#!{python}\nimport sys\nprint('Traceback (most recent call last):')\n" \
         "print(\"ModuleNotFoundError: No module named 'attumamba'\", file=sys.stderr)\nsys.exit(1)\n"
STUBBORN = "#!{python}\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" \
           "print('up', flush=True)\ntime.sleep(120)\n"


def _python(folder, text):
    path = folder / "python"
    path.write_text(text.format(python=sys.executable))
    path.chmod(0o700)
    return path


def _drive(panel, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while panel.poll():
        assert time.monotonic() < deadline, "the panel never settled"
        time.sleep(0.02)


@pytest.fixture
def panel(module, widgets, backend_ui, choices, dialogs, monkeypatch):  # noqa: F811
    import slicer

    monkeypatch.setattr(slicer.util, "startupEnvironment", lambda: dict(os.environ))  # Slicer's launcher's
    facade = module.AttUMambaSegLogic()
    panel = widgets("backend_panel").BackendPanel(backend_ui, facade, lambda: choices, lambda: None, lambda: None)
    yield SimpleNamespace(panel=panel, ui=backend_ui, facade=facade)
    facade.stopBackend()


def test_start_after_a_failed_start_shows_the_log_keeps_it_and_enables_start(panel, tmp_path):
    ui = panel.ui
    ui.backendPythonPathLineEdit.currentPath = str(_python(tmp_path, BROKEN))
    ui.startBackendButton.clicked.emit()
    assert not ui.startBackendButton.enabled
    _drive(panel.panel)
    status = ui.backendStatusLabel.text
    assert "exited with code 1" in status and "No module named &#x27;attumamba&#x27;" in status  # the log's end
    log = panel.facade.backend.log_file
    assert f"its log: {log}" in status
    assert ui.startBackendButton.enabled and not ui.stopBackendButton.enabled  # Start works again

    ui.stopBackendButton.clicked.emit()  # Stop (or a new Start) keeps the log that explains it
    assert log.is_file() and "No module named 'attumamba'" in log.read_text()
    ui.startBackendButton.clicked.emit()  # again: a fresh start, a fresh log
    _drive(panel.panel)
    assert panel.facade.backend.log_file != log and log.is_file()
    assert ui.startBackendButton.enabled and "exited with code 1" in ui.backendStatusLabel.text


def test_stop_never_waits_and_a_lingering_backend_is_killed_from_the_timer(panel, tmp_path, monkeypatch, logic):
    process_module = importlib.import_module("AttUMambaSegLib.logic.backend_process")
    monkeypatch.setattr(process_module, "STOP_GRACE_S", 0.5)
    ui = panel.ui
    ui.backendPythonPathLineEdit.currentPath = str(_python(tmp_path, STUBBORN))
    ui.startBackendButton.clicked.emit()
    backend = panel.facade.backend
    deadline = time.monotonic() + 20
    while "up" not in backend.log_tail():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process = backend.process
    clicked = time.monotonic()
    ui.stopBackendButton.clicked.emit()
    assert time.monotonic() - clicked < 0.2, "Stop waited on the GUI thread"
    assert "stopping" in ui.backendStatusLabel.text and not ui.startBackendButton.enabled
    _drive(panel.panel, 5)
    assert process.poll() is not None  # killed once its grace time was over
    assert "stopped (its log:" in ui.backendStatusLabel.text and ui.startBackendButton.enabled


def test_the_folder_button_puts_the_chosen_folder_in_the_python_field(panel, qt_stub, tmp_path):  # noqa: F811
    asked = []
    qt_stub.QDir = SimpleNamespace(homePath=lambda: "/home/user")
    qt_stub.QFileDialog = SimpleNamespace(
        ShowDirsOnly=1, DontResolveSymlinks=2,
        getExistingDirectory=lambda parent, title, start, options: (asked.append((start, options)), str(tmp_path))[1])
    panel.ui.backendPythonFolderButton.clicked.emit()
    assert panel.ui.backendPythonPathLineEdit.currentPath == str(tmp_path)
    assert asked == [("/home/user", 3)]  # links not resolved: a venv's python is one
