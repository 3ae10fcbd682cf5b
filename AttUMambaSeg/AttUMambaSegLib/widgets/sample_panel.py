"""Load sample study (Inputs section): a synthetic whole-body PET/CT from the backend, chosen as the inputs.

For a new user without data: the backend makes the study (its ``synth`` generator, compact grids:
seconds on a CPU), the module downloads it and selects its CT and PET, ready for Segment. Each
press loads the next synthetic patient. It is stepped from the module's timer by
:meth:`SamplePanel.poll`; the button cancels meanwhile and the scene stays as it was.
"""

import importlib

import slicer
from slicer.i18n import tr as _

from .backend_panel import confirmPlainHttp

TOOLTIP = (_("Ask the backend for a synthetic whole-body PET/CT with known lesions (made by its generator) and choose "
           "its CT and PET as the inputs, to try Segment without data of your own."))


class SamplePanel:
    """``parameterNode()`` gives the module's parameter node (or None), ``connected()`` whether a checked
    backend is in use; ``changed()`` is called when loading starts or ends, ``wake()`` when there is
    something for :meth:`poll` to step."""

    def __init__(self, ui, logic, parameterNode, connected, changed, wake):
        self.ui, self.logic, self.parameterNode = ui, logic, parameterNode
        self.connected, self.changed, self.wake = connected, changed, wake
        self.loading = None  # the SampleLoading in progress
        self.seed = 0        # the next synthetic patient
        self.ui.loadSampleButton.clicked.connect(self.onLoadSample)

    def updateButtons(self):
        button = self.ui.loadSampleButton
        if self.loading is not None:
            button.text, button.enabled = _("Cancel loading the sample"), True
            button.toolTip = _("Stop; nothing is added.")
            return
        button.text = _("Load sample study")
        button.enabled = self.connected()
        button.toolTip = TOOLTIP if self.connected() else (
            _("Start or connect to a backend and test the connection (Backend): it makes the sample study."))

    def onLoadSample(self):
        if self.loading is not None:
            self.cancel()
            return
        if not confirmPlainHttp(self.logic.client):
            return
        sample = importlib.import_module(f"{self.logic.package.__name__}.sample")
        with slicer.util.tryWithErrorDisplay(_("Could not load a sample study."), waitCursor=True):
            self.loading = sample.SampleLoading(self.logic.requireClient(), slicer.mrmlScene, seed=self.seed,
                                                on_progress=self.onProgress)
            self.changed()
            self.wake()

    def onProgress(self, stage, progress, message):
        self.ui.stageLabel.text = _("Sample study ({percent:.0f}%): {message}").format(
            percent=100 * progress, message=message)

    def poll(self):
        """Step the loading; True while it goes on."""
        if self.loading is None or self.loading.step():
            return self.loading is not None
        loading, self.loading = self.loading, None
        if loading.state == "done":
            self.seed += 1
            p = self.parameterNode()
            if p is not None:
                p.ct, p.pet = loading.ct, loading.pet
            slicer.util.setSliceViewerLayers(background=loading.ct, foreground=loading.pet, foregroundOpacity=0.4,
                                             fit=True)
            self.ui.stageLabel.text = _("Loaded {message}. Press Segment.").format(message=loading.message)
        elif loading.state == "failed":
            self.ui.stageLabel.text = _("Loading the sample study failed; nothing was added.")
            slicer.util.errorDisplay(_("Could not load a sample study: {error}").format(error=loading.error))
        self.changed()
        return False

    def cancel(self):
        """Stop loading (the user, a scene closing, the module closing); nothing is added."""
        if self.loading is not None:
            self.loading.cancel()
            self.loading = None
            self.ui.stageLabel.text = _("Loading the sample study was cancelled; nothing was added.")
            self.changed()
