"""Where the per-study tasks run: here, in local worker processes, or on a Ray cluster.

All three take the same task (:func:`.task.segment_study`) and report to the same two
callbacks: ``on_progress(study_id, fraction, stage)`` while a study runs and
``on_done(study, outcome)`` when it ends, always in the calling thread, so the driver alone
writes outputs. Cancelling (``should_cancel`` or Ctrl-C) stops queued studies and asks running
ones to stop between tiles; studies already finished stay written.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..errors import CancelledError, InputError
from ..io.study_types import Study
from .task import BatchSettings, StudyOutcome, segment_study

OnProgress = Callable[[str, float, str], None]
OnDone = Callable[[Study, StudyOutcome], None]
ShouldCancel = Callable[[], bool]
POLL_SECONDS = 0.2


def throttled(send: Callable[[tuple], None], study_id: str, step: float = 0.01) -> Callable[[float, str], None]:
    """A progress callback that sends only when the stage changes or the fraction moves by ``step``."""
    last = {"fraction": -1.0, "stage": None}

    def progress(fraction: float, stage: str) -> None:
        if stage != last["stage"] or fraction - last["fraction"] >= step or fraction >= 1.0:
            last.update(fraction=fraction, stage=stage)
            send((study_id, float(fraction), stage))

    return progress


def run_here(studies: list[Study], settings: BatchSettings, on_progress: OnProgress, on_done: OnDone,
             should_cancel: ShouldCancel) -> None:
    """One study after another in this process (the model is loaded once)."""
    for study in studies:
        if should_cancel():
            raise CancelledError("batch cancelled; run it again with --resume to finish")
        outcome = segment_study(study, settings, lambda f, stage, i=study.study_id: on_progress(i, f, stage),
                                should_cancel)
        on_done(study, outcome)


# -- local worker processes ---------------------------------------------------------------

_WORKER: dict = {}


def _start_worker(slots, progress_queue, cancel_event, gpus: int) -> None:
    """Runs once in each worker: take a slot, pin it to one GPU if there are any."""
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    _WORKER.update(progress=progress_queue, cancel=cancel_event)


def _worker_task(study: Study, settings: BatchSettings) -> StudyOutcome:
    progress = throttled(_WORKER["progress"].put, study.study_id)
    return segment_study(study, settings, progress, _WORKER["cancel"].is_set)


def run_in_workers(studies: list[Study], settings: BatchSettings, workers: int, on_progress: OnProgress,
                   on_done: OnDone, should_cancel: ShouldCancel) -> None:
    """``workers`` local processes, each with its share of the CPU threads or its own GPU."""
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    slots, progress_queue, cancel_event = context.Queue(), context.Queue(), context.Event()
    for slot in range(workers):
        slots.put(slot)
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                                   initargs=(slots, progress_queue, cancel_event, _local_gpus(settings)))
    pending = {executor.submit(_worker_task, study, settings): study for study in studies}
    try:
        while pending:
            finished, _ = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            _drain(progress_queue, on_progress)
            for future in finished:
                study = pending.pop(future)
                on_done(study, _result_or_failure(future.result, study))
            if should_cancel():
                raise CancelledError("batch cancelled; run it again with --resume to finish")
    except BaseException:
        cancel_event.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _local_gpus(settings: BatchSettings) -> int:
    if settings.device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


def _drain(progress_queue, on_progress: OnProgress) -> None:
    """Pass on every queued progress message (a multiprocessing or Ray queue; both raise queue.Empty)."""
    while True:
        try:
            study_id, fraction, stage = progress_queue.get_nowait()
        except queue_module.Empty:
            return
        on_progress(study_id, fraction, stage)


def _result_or_failure(result: Callable[[], StudyOutcome], study: Study) -> StudyOutcome:
    """The task's outcome, or a failure when its worker died (killed, out of memory)."""
    try:
        return result()
    except CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 (BrokenProcessPool, RayTaskError, WorkerCrashedError...)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return StudyOutcome(study.study_id, ok=False, error=f"its worker failed ({type(error).__name__}: {reason}); "
                            "a study that needs more memory than a worker has can be re-run with fewer --workers")


# -- Ray ----------------------------------------------------------------------------------

def _ray_task(study: Study, settings: BatchSettings, progress_queue) -> StudyOutcome:
    return segment_study(study, settings, throttled(progress_queue.put, study.study_id))


def run_on_ray(studies: list[Study], settings: BatchSettings, address: str, on_progress: OnProgress,
               on_done: OnDone, should_cancel: ShouldCancel) -> None:
    """One Ray task per study (one GPU each where the cluster has GPUs); ``local`` starts a local instance.

    Workers need this package installed and the study folders readable; outputs come back to
    this process, so the cluster needs no shared output storage.
    """
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError as error:
        raise InputError("--ray needs Ray: pip install 'ray>=2.50' in the backend environment") from error

    started_here = not ray.is_initialized()
    if started_here:
        local = address in ("local", "")
        ray.init(address=None if local else address, include_dashboard=False, log_to_driver=False,
                 num_cpus=os.cpu_count() if local else None)
    try:
        gpus = 0 if settings.device == "cpu" else int(ray.cluster_resources().get("GPU", 0))
        if settings.device == "cuda" and not gpus:
            raise InputError("--device cuda, but the Ray cluster has no GPU")
        threads = settings.threads or 1
        remote = ray.remote(num_cpus=threads, num_gpus=1 if gpus else 0, max_retries=0)(_ray_task)
        progress_queue = Queue()
        pending = {remote.remote(study, settings, progress_queue): study for study in studies}
        try:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                _drain(progress_queue, on_progress)
                for reference in finished:
                    study = pending.pop(reference)
                    on_done(study, _result_or_failure(lambda r=reference: ray.get(r), study))
                if should_cancel():
                    raise CancelledError("batch cancelled; run it again with --resume to finish")
        except BaseException:
            for reference in pending:
                ray.cancel(reference, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
