"""Baseline vs follow-up from two results the module made: export -> send -> assess -> build.

Stepped from the module's timer like :mod:`.run`: MRML is read (segments exported as labelmaps)
and written (:mod:`.response_scene` builds the nodes) only in :meth:`ResponseAssessment.step`,
the caller's thread; files go to and come from the backend in a helper process (:mod:`.transfers`),
other requests to one worker thread, and a step only looks whether they finished.
Each time point's segments go to the backend as a labelmap of the study the result was made
from (its ``STUDY_ATTRIBUTE``); a study the backend lost is uploaded again from the result's CT
and PET, written on their own grid (a follow-up shown under the registration's transform keeps
its own coordinates). A re-assessment of the same two studies reuses the registration.
Cancelling, or a failure, leaves the scene as it was.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import vtk

from .client import BackendClient, BackendError
from .geometry import from_vtk_matrix
from .response_scene import WHEN, ResponseResult, build_response
from .results import CT_ROLE, PET_ROLE, STUDY_ATTRIBUTE
from .staged import RunCancelled, StagedWork  # noqa: F401 (RunCancelled: this module's API too)
from .segments import export_labelmap, label_values
from .volumes import image_data_array, shifted, write_image

#: Overall progress at the start of each stage; "assess" spans the backend's progress.
STAGE_START = {"send": 0.0, "submit": 0.1, "assess": 0.12, "download": 0.92, "build": 0.96}


class ResponseAssessment(StagedWork):
    """One assessment of ``baseline`` vs ``follow_up`` (lesion segmentation nodes made by the module).

    ``reader``: the reader's choices (the keys of ``compare --reader``); ``previous``: the
    :class:`ResponseResult` to refresh in place (its registration is reused when the studies are
    the same). ``on_progress(stage, progress, message)`` is called from :meth:`step`.
    """

    STAGE_START = STAGE_START
    WHAT = "the assessment"
    CANCELLED = "cancelled; the scene is unchanged"

    def __init__(self, client: BackendClient, baseline, follow_up, *, reader: dict | None = None,
                 deformable: bool = True, previous: ResponseResult | None = None, on_progress=None,
                 poll_interval_s: float = 0.5):
        segmentations = {"baseline": baseline, "follow_up": follow_up}
        for when, node in segmentations.items():
            if node is None:
                raise ValueError(f"choose the {when.replace('_', '-')} result (a lesion segmentation)")
            if not node.GetAttribute(STUDY_ATTRIBUTE) and not (node.GetNodeReference(CT_ROLE) and
                                                               node.GetNodeReference(PET_ROLE)):
                raise ValueError(f"{node.GetName()} was not made by AttUMambaSeg (it names no backend study and "
                                 "no CT and PET); segment the study with the module first")
        if baseline is follow_up:
            raise ValueError("the baseline and the follow-up are the same result; choose two time points")
        self.client, self.segmentations, self.reader = client, segmentations, dict(reader or {})
        self.deformable, self.previous = deformable, previous
        self.poll_interval_s = poll_interval_s
        super().__init__("send", "exporting the segments", on_progress, "attumamba-response")
        self.result: ResponseResult | None = None
        self.response_id: str | None = None
        self._studies = {when: node.GetAttribute(STUDY_ATTRIBUTE) or None for when, node in segmentations.items()}
        self._sent: dict[str, dict] = {}            # time point -> the backend's answer to its labelmap
        self._volumes: dict[str, tuple[Path, Path]] = {}  # time points whose study is to be sent (again)
        self._resent: set[str] = set()              # time points whose study was sent by this assessment
        self._piece: tuple[str, str] | None = None  # (time point, "study" or "labelmap") on its way
        self._status: dict | None = None
        self._next_poll = 0.0
        self._folder = Path(tempfile.mkdtemp(prefix="attumamba-response-"))
        try:
            self._labelmaps = {}
            for when, node in segmentations.items():   # MRML: this thread
                labels, ijk_to_ras = export_labelmap(node, label_values(node.GetSegmentation()))
                self._labelmaps[when] = write_image(labels, ijk_to_ras, self._folder / f"{when}.nrrd")
        except BaseException:
            self._close()
            raise

    # --- stages ---------------------------------------------------------------------------------
    def _start_work(self) -> None:
        if self.stage == "send":
            self._send_next()
        elif self.stage == "assess" and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.poll_interval_s
            self._run(self.client.response, self.response_id)
        elif self.stage == "build":
            transform = self._folder / "transform.h5" if (self._folder / "transform.h5").exists() else None
            self.result = build_response(self.segmentations["baseline"].GetScene(), self.segmentations,
                                         self._status["response"], {w: self._sent[w]["report"] for w in WHEN},
                                         self.reader, self.response_id, transform_file=transform,
                                         previous=self.previous)
            for when, node in self.segmentations.items():
                node.SetAttribute(STUDY_ATTRIBUTE, self._studies[when])
            self._finish("done", "; ".join(f"{c['system']}: {c['category']}"
                                           for c in self._status["response"]["categories"].values() if c))

    def _finished_work(self, future: Future) -> None:
        if self.stage == "send":
            self._piece_sent(future)
            if not self._send_next():
                self._enter("submit", "starting the assessment")
                self._run(self.client.submit_response, self._body())
            return
        value = future.result()
        if self.stage == "submit":
            self.response_id = value["response_id"]
            self._enter("assess", "queued")
        elif self.stage == "assess":
            self._assessed(value)
        elif self.stage == "download":
            self._enter("build", "making the table and the reference regions")

    def _assessed(self, status: dict) -> None:
        state = status.get("state")
        if state == "done":
            self._status = status
            if self._reused_registration():
                self._enter("build", "making the table and the reference regions")
            else:
                self._enter("download", "downloading the registration")
                self._transfer(("download_response_transform", self.response_id, self._folder / "transform.h5"))
        elif state == "failed":
            raise BackendError(f"the response assessment failed: {status.get('message') or 'no reason given'}")
        elif state == "cancelled":
            self._finish("cancelled", "the backend's assessment was cancelled; the scene is unchanged")
        else:
            span = STAGE_START["download"] - STAGE_START["assess"]
            self._say(STAGE_START["assess"] + span * float(status.get("progress") or 0.0),
                         status.get("stage") or state or "running")

    def _body(self) -> dict:
        body = {when: {"study_id": self._studies[when], "labelmap_id": self._sent[when]["labelmap_id"]} for when in WHEN}
        body.update(reader=self.reader, deformable=self.deformable)
        reuse = self._reusable_response()
        if reuse:
            body["reuse_registration"] = reuse
        return body

    def _reusable_response(self) -> str | None:
        previous = self.previous
        if previous is None or previous.table.GetScene() is None or previous.transform is None:
            return None
        same = all(previous.segmentations.get(w) is self.segmentations[w] for w in WHEN)
        sources = previous.response.get("baseline", "") + previous.response.get("follow_up", "")
        studies_same = all(f"study {self._studies[w]}," in sources for w in WHEN)
        return previous.response_id if same and studies_same else None

    def _reused_registration(self) -> bool:
        notes = self._status["response"]["registration"].get("notes") or []
        return "reused from an earlier assessment" in notes and self.previous is not None

    # --- sending each time point (MRML only to write a lost study's volumes) -------------------------
    def _send_next(self) -> bool:
        """Start what a time point still needs: its study (when lost), then its labelmap; False once all is sent."""
        for when in WHEN:
            if not self._studies[when] and when not in self._volumes:
                self._volumes[when] = self._write_volumes(when)
            if when in self._volumes:
                self._piece = (when, "study")
                self._transfer(("upload_study", *self._volumes[when], {"source": "AttUMambaSeg response"}))
                return True
            if when not in self._sent:
                self._piece = (when, "labelmap")
                self._transfer(("send_labelmap", self._studies[when], self._labelmaps[when]))
                return True
        return False

    def _piece_sent(self, transfer) -> None:
        when, what = self._piece
        try:
            value = transfer.result()
        except BackendError as error:
            if what == "labelmap" and error.status == 404 and when not in self._resent:
                self._volumes[when] = self._write_volumes(when)  # the backend lost the study: send it once again
                return
            raise
        if what == "study":
            self._studies[when] = value["study_id"]
            self._resent.add(when)
            del self._volumes[when]
        else:
            self._sent[when] = value

    def _cancel_backend(self, pending: Future | None) -> None:
        response_id = self.response_id
        if response_id is None and pending is not None and pending.done() and pending.exception() is None:
            value = pending.result()
            response_id = value.get("response_id") if isinstance(value, dict) else None
        if response_id is not None:
            try:
                self.client.cancel_response(response_id)
            except BackendError:
                pass  # finished or gone already

    # --- main-thread helpers ----------------------------------------------------------------------
    def _write_volumes(self, when: str) -> tuple[Path, Path]:
        node = self.segmentations[when]
        ct, pet = node.GetNodeReference(CT_ROLE), node.GetNodeReference(PET_ROLE)
        if ct is None or pet is None:
            raise ValueError(f"the backend no longer holds the {when.replace('_', '-')} study and {node.GetName()} "
                             "names no CT and PET to send again; segment that study again")
        return tuple(_write_own_grid(volume, self._folder / f"{when}_{name}.nrrd")
                     for volume, name in ((ct, "ct"), (pet, "pet")))



def _write_own_grid(volume_node, path: Path) -> Path:
    """A volume on its own grid, parent transforms not applied: the study as the backend had it."""
    array, first = image_data_array(volume_node.GetImageData())
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return write_image(array, shifted(from_vtk_matrix(matrix), first), path, compress=False)
