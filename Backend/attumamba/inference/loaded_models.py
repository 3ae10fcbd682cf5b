"""Loaded models shared by everything in this process that segments: the service's job queue and
batch runs take one model per (package, device, TTA) from here, one segmentation at a time per
device, so a job and a batch never hold two copies of a model, or two sets of activations, on
one GPU. A job waits for the study the batch is on (not the whole batch), and waiting stays
cancellable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..devices import resolve_device
from ..errors import CancelledError
from .package import locate_model, open_model
from .segmenter import Segmenter

Key = tuple[str, str, bool]  # (package folder or zip, device, TTA)
WAIT_POLL_S = 0.1


class LoadedModels:
    """Segmenters by (package, device, TTA), at most ``keep_per_device`` per device (least recently used out)."""

    def __init__(self, factory: Callable[[str, str, bool], Segmenter] | None = None, keep_per_device: int = 2):
        self._factory = factory or (lambda path, device, tta: Segmenter(open_model(path), device, tta=tta))
        self.keep_per_device = keep_per_device
        self._models: OrderedDict[Key, Segmenter] = OrderedDict()
        self._devices: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0  # models loaded so far (what a shared cache saves shows here)

    @contextmanager
    def using(self, model: str | None, device: str, tta: bool, *, should_cancel: Callable[[], bool] | None = None,
              on_wait: Callable[[], None] | None = None) -> Iterator[Segmenter]:
        """The loaded model, this device held for the caller until the block ends.

        ``on_wait`` is called once if the device is busy; ``should_cancel`` is polled while waiting
        (CancelledError when it says so)."""
        path = str(locate_model(model).resolve())
        device_name = str(resolve_device(device))
        busy = self._device_lock(device_name)
        if not busy.acquire(blocking=False):
            if on_wait is not None:
                on_wait()
            while not busy.acquire(timeout=WAIT_POLL_S):
                if should_cancel is not None and should_cancel():
                    raise CancelledError("cancelled while waiting for the device")
        try:
            yield self._loaded((path, device_name, tta))
        finally:
            busy.release()

    def describe(self) -> list[dict]:
        with self._lock:
            return [{"model": path, "device": device, "tta": tta} for path, device, tta in self._models]

    def _device_lock(self, device: str) -> threading.Lock:
        with self._lock:
            return self._devices.setdefault(device, threading.Lock())

    def _loaded(self, key: Key) -> Segmenter:
        """Called with the key's device held: nothing else uses that device's models meanwhile."""
        with self._lock:
            segmenter = self._models.get(key)
            if segmenter is not None:
                self._models.move_to_end(key)
                return segmenter
            same_device = [k for k in self._models if k[1] == key[1]]
            for old in same_device[: max(0, len(same_device) - self.keep_per_device + 1)]:
                del self._models[old]
        if key[1].startswith("cuda"):
            import torch

            torch.cuda.empty_cache()  # give the dropped model's memory back before loading the next
        segmenter = self._factory(*key)
        with self._lock:
            self._models[key] = segmenter
            self.loads += 1
        return segmenter


#: the one shared by the service's job queue and by batch runs in this process
LOADED_MODELS = LoadedModels()
