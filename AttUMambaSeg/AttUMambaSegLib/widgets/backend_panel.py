"""The Backend and Model sections: start/stop a local backend or connect to one, the status light, the models.

Nothing here waits: starting the backend returns at once and :meth:`BackendPanel.poll`, called
from the module's timer, notices when it answers or exits (the end of its log then shows in the
status, the log is kept, and Start is enabled again); Stop terminates it and ``poll`` sees it
gone (killing it if it lingers); the connection check runs on a worker thread and ``poll``
collects its result. The URL, the backend Python and the mode are kept
in Slicer's settings; the token is kept for the session only, never written anywhere. A backend
reached over plain HTTP on another computer gets a red warning under the status light, and
:func:`confirmPlainHttp` asks before volumes first go to it (the decision is the Logic's).
"""

import html

import qt
import slicer
from slicer.i18n import tr as _

SETTINGS_GROUP = "AttUMambaSeg/"
DEFAULT_URL = "http://127.0.0.1:8765"
STATUS_COLORS = {"off": "#9e9e9e", "busy": "#f0a000", "ok": "#2e7d32", "error": "#c62828"}
MANAGED, REMOTE = 0, 1  # backendModeComboBox entries


def setting(key, default=""):
    return qt.QSettings().value(SETTINGS_GROUP + key, default)


def saveSetting(key, value):
    qt.QSettings().setValue(SETTINGS_GROUP + key, value)


def confirmPlainHttp(client):
    """True when volumes may go to ``client``'s backend: encrypted, on this computer, or the user agrees
    (asked once per backend and session)."""
    warning = client.plain_http_consent_needed() if client is not None else ""
    if not warning:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            _("{warning}\n\nSend the volumes over plain HTTP anyway? (Asked once per backend in this session.)").format(
                warning=warning),
            windowTitle=_("Unencrypted connection")):
        return False
    client.consent_to_plain_http()
    return True


class BackendPanel:
    """``parameterNode()`` gives the module's parameter node (or None); ``changed()`` is called when
    the connection state changes, ``wake()`` when there is something for :meth:`poll` to watch."""

    def __init__(self, ui, logic, parameterNode, changed, wake):
        self.ui, self.logic = ui, logic
        self.parameterNode, self.changed, self.wake = parameterNode, changed, wake
        self.connected = False
        self.starting = False
        self.stopping = None  # the ManagedBackend terminated by Stop, until it is gone
        self.check = None  # Future of the running connection check
        self.models = {}

        self.ui.backendModeComboBox.currentIndex = int(setting("BackendMode", MANAGED))
        self.ui.backendPythonPathLineEdit.currentPath = setting("BackendPython", "")
        self.ui.backendUrlLineEdit.text = setting("BackendURL", DEFAULT_URL)
        self.ui.backendCaFilePathLineEdit.currentPath = setting("BackendCAFile", "")
        self.ui.backendModeComboBox.currentIndexChanged.connect(self.onModeChanged)
        self.ui.backendPythonPathLineEdit.currentPathChanged.connect(lambda path: saveSetting("BackendPython", path))
        self.ui.backendCaFilePathLineEdit.currentPathChanged.connect(lambda path: saveSetting("BackendCAFile", path))
        self.ui.backendUrlLineEdit.editingFinished.connect(
            lambda: saveSetting("BackendURL", self.ui.backendUrlLineEdit.text))
        self.ui.backendPythonFolderButton.clicked.connect(self.onChooseBackendFolder)
        self.ui.startBackendButton.clicked.connect(self.onStart)
        self.ui.stopBackendButton.clicked.connect(self.onStop)
        self.ui.testConnectionButton.clicked.connect(self.onTestConnection)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        self.onModeChanged()
        self.setStatus("off", _("not connected"))
        self.updateButtons()

    # --- status ----------------------------------------------------------------------------------
    def setStatus(self, kind, text, warning=""):
        """The light and ``text``; ``warning`` in red below (an unencrypted connection)."""
        light = f'<span style="color:{STATUS_COLORS[kind]}">&#9679;</span>'
        red = f'<br><span style="color:{STATUS_COLORS["error"]}">&#9888; {html.escape(warning)}</span>'
        self.ui.backendStatusLabel.text = (light + " " + html.escape(text).replace("\n", "<br>")
                                           + (red if warning else ""))

    def setConnected(self, connected, kind, text):
        self.connected = connected
        client = self.logic.client  # its warning while it is checked or in use
        inUse = client is not None and (kind == "ok" or self.check is not None)
        self.setStatus(kind, text, client.plain_http_warning if inUse else "")
        self.updateButtons()
        self.changed()

    def updateButtons(self):
        running = self.logic.backend is not None and self.logic.backend.alive
        self.ui.startBackendButton.enabled = not running and self.stopping is None
        self.ui.stopBackendButton.enabled = running
        self.ui.testConnectionButton.enabled = self.check is None and not self.starting

    # --- user actions ------------------------------------------------------------------------------
    def onModeChanged(self, index=None):
        index = self.ui.backendModeComboBox.currentIndex  # not the argument: the signal is overloaded in Qt 5
        self.ui.managedBackendWidget.setVisible(index == MANAGED)
        self.ui.remoteBackendWidget.setVisible(index == REMOTE)
        saveSetting("BackendMode", index)

    def onStart(self):
        parameterNode = self.parameterNode()
        device = parameterNode.device if parameterNode is not None else "auto"
        with slicer.util.tryWithErrorDisplay(_("Could not start the backend."), waitCursor=True):
            backend = self.logic.startBackend(self.ui.backendPythonPathLineEdit.currentPath, device=device)
            self.starting = True
            self.setConnected(False, "busy", _("starting on {url} (the first start can take a minute)").format(
                url=backend.url))
            self.wake()

    def onChooseBackendFolder(self):
        """A folder, not a file: ``.venv`` is hidden in native file dialogs, and the environment's
        python is a link that a file dialog may resolve to the base interpreter."""
        start = self.ui.backendPythonPathLineEdit.currentPath or qt.QDir.homePath()
        folder = qt.QFileDialog.getExistingDirectory(
            None, "The AttUMambaSeg repository or the backend's environment", start,
            qt.QFileDialog.ShowDirsOnly | qt.QFileDialog.DontResolveSymlinks)
        if folder:
            self.ui.backendPythonPathLineEdit.currentPath = folder

    def onStop(self):
        self.starting = False
        backend = self.logic.backend
        self.logic.stopBackend()  # terminates; poll() sees it gone
        if backend is not None and not backend.ended():
            self.stopping = backend
            self.setConnected(False, "busy", _("stopping ..."))
            self.wake()
        else:
            self.setConnected(False, "off", _stoppedText(backend))

    def onTestConnection(self):
        with slicer.util.tryWithErrorDisplay(_("Could not connect to the backend."), waitCursor=True):
            if self.ui.backendModeComboBox.currentIndex == REMOTE:
                self.logic.connect(self.ui.backendUrlLineEdit.text, self.ui.backendTokenLineEdit.text,
                                   self.ui.backendCaFilePathLineEdit.currentPath)
            elif self.logic.backend is not None and self.logic.backend.state() == "running":
                self.logic.useManagedBackend()
            else:
                raise ValueError(_("Start the local backend first, or choose 'Connect to a running backend'."))
            self.startCheck()

    def startCheck(self):
        self.check = self.logic.checkConnectionInBackground()
        self.setConnected(False, "busy", _("checking the backend ..."))
        self.wake()

    # --- polled from the module's timer ----------------------------------------------------------
    def poll(self):
        """Look at the starting or stopping backend and the running check; True while one goes on."""
        if self.stopping is not None and self.stopping.ended():
            backend, self.stopping = self.stopping, None
            self.setConnected(False, "off", _stoppedText(backend))
        if self.starting:
            backend = self.logic.backend
            state = backend.state() if backend is not None else "stopped"
            if state != "starting":
                self.starting = False
                if state == "running":
                    self.logic.useManagedBackend()
                    self.startCheck()
                else:
                    self.setConnected(False, "error", backend.failure() if state in ("exited", "foreign") else state)
        if self.check is not None and self.check.done():
            future, self.check = self.check, None
            try:
                status = future.result()
            except Exception as error:  # noqa: BLE001 - shown to the user: the message says what to do
                self.setConnected(False, "error", str(error))
            else:
                self.fillModels(status.models)
                self.setConnected(True, "ok", _("{summary} ({url})").format(
                    summary=status.summary(), url=self.logic.client.url))
        return self.starting or self.stopping is not None or self.check is not None

    # --- models ------------------------------------------------------------------------------------
    def fillModels(self, models):
        self.models = {model["name"]: model for model in models}
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for name, label in self.logic.modelChoices(models):
            combo.addItem(label, name)
        parameterNode = self.parameterNode()
        wanted = parameterNode.model if parameterNode is not None else ""
        combo.currentIndex = max(combo.findData(wanted), 0) if wanted else 0
        combo.blockSignals(wasBlocked)
        self.onModelChanged()

    def onModelChanged(self, index=None):
        index = self.ui.modelComboBox.currentIndex  # not the argument: the signal is overloaded in Qt 5
        name = self.ui.modelComboBox.itemData(index) if index >= 0 else None
        parameterNode = self.parameterNode()
        if parameterNode is not None and name:
            parameterNode.model = name
        self.ui.modelDescriptionLabel.text = self.logic.describeModel(self.models.get(name))


def _stoppedText(backend):
    """'stopped', and where the stopped backend's log was kept."""
    if backend is not None and backend.folder is not None:
        return _("stopped (its log: {log_file})").format(log_file=backend.log_file)
    return _("stopped")
