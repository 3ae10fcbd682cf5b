"""The Segment button: one segmentation run at a time, its progress, and its result selected under Results.

The run is stepped from the module's timer (:meth:`SegmentPanel.poll`); a step never waits:
network and disk work run on the run's worker thread. The Inputs section's *Load sample study*
(:mod:`.sample_panel`, which fills the inputs Segment takes) is stepped along with it.
"""

import slicer
from slicer.i18n import tr as _

from .backend_panel import confirmPlainHttp
from .sample_panel import SamplePanel


class SegmentPanel:
    """``parameterNode()`` gives the module's parameter node (or None), ``connected()`` whether a
    checked backend is in use; ``changed()`` is called when a run starts or ends, ``wake()`` when
    there is something for :meth:`poll` to step."""

    def __init__(self, ui, logic, parameterNode, resultsPanel, connected, changed, wake):
        self.ui, self.logic, self.parameterNode, self.resultsPanel = ui, logic, parameterNode, resultsPanel
        self.connected, self.changed, self.wake = connected, changed, wake
        self.run = None  # the SegmentationRun in progress
        self.sample = SamplePanel(ui, logic, parameterNode, connected, changed, wake)
        self.ui.segmentButton.clicked.connect(self.onSegmentButton)
        self.ui.progressBar.hide()

    def updateButtons(self):
        self.sample.updateButtons()
        p = self.parameterNode()
        running = self.run is not None
        missing = "" if p and p.ct and p.pet else _("Choose a CT and a PET volume (Inputs).")
        if not missing and not self.connected():
            missing = _("Start or connect to a backend and test the connection (Backend).")
        self.ui.segmentButton.text = _("Cancel") if running else _("Segment")
        self.ui.segmentButton.enabled = running or not missing
        self.ui.segmentButton.toolTip = _("Stop the segmentation.") if running else (
            missing or _("Segment the lesions on the backend; each run makes a new segmentation."))

    def cancel(self):
        """Stop the run and the sample loading going on, if any (a scene closing, the module closing)."""
        self.sample.cancel()
        self.cancelRun()

    def cancelRun(self):
        if self.run is not None:
            self.run.cancel()
            self.onRunFinished()

    def onSegmentButton(self):
        if self.run is not None:
            self.cancelRun()
            return
        p = self.parameterNode()
        replace = p.result if p.replaceExisting and p.result else None
        if replace is not None and not slicer.util.confirmOkCancelDisplay(
                _("Replace the segments of '{name}'? Any edits made to them are lost.\n\nUncheck "
                  "'Replace existing result' (Options) to keep it and make a new segmentation.").format(
                    name=replace.GetName()),
                windowTitle=_("Replace result")):
            return
        if not confirmPlainHttp(self.logic.client):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            self.run = self.logic.startSegmentation(
                p.ct, p.pet, model=p.model, device=p.device, tta=p.tta, reference=p.reference,
                minVolumeMl=p.minVolumeMl, replace=replace, onProgress=self.onProgress)
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
            self.changed()
            self.wake()

    def onProgress(self, stage, progress, message):
        self.ui.progressBar.value = round(100 * progress)
        self.ui.stageLabel.text = _("{stage}: {message}").format(stage=stage, message=message)

    def poll(self):
        """Step the run and the sample loading; True while either goes on."""
        loading = self.sample.poll()
        if self.run is not None:
            self.run.step()
            if self.run.finished:
                self.onRunFinished()
        return self.run is not None or loading

    def onRunFinished(self):
        run, self.run = self.run, None
        self.ui.progressBar.hide()
        prefix = {"done": "Done", "cancelled": "Cancelled"}.get(run.state, "Failed")
        self.ui.stageLabel.text = _("{prefix}: {message}").format(prefix=prefix, message=run.message)
        p = self.parameterNode()
        if run.state == "done" and p is not None:
            p.result = run.result.segmentation
            self.resultsPanel.show(force=True)
        elif run.state == "failed":
            slicer.util.errorDisplay(_("The segmentation failed: {message}").format(message=run.message))
        self.changed()
