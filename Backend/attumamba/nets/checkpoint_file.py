"""Read a PyTorch checkpoint file without running pickled code.

``torch.load(weights_only=True)`` refuses every global it does not know. nnU-Net's
``save_checkpoint`` stores numpy scalars (its logger's losses and Dice values, ``_best_ema``),
which pickle as ``numpy._core.multiarray.scalar`` plus a ``numpy.dtype`` and the dtype's class,
so a plain weights-only load refuses every checkpoint nnU-Net writes. Exactly these numpy
constructors are allowed, through torch's ``safe_globals`` context for the one load (nothing
process-wide); ``weights_only`` stays on. Anything else a file asks for (a function such as
``os.system``, a custom class) is refused with its name.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError

_SCALAR = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar

#: What nnU-Net 2.x checkpoints need: float32/float64 numpy scalars, under numpy 2's and numpy 1's names.
NNUNET_NUMPY_GLOBALS = [
    (_SCALAR, "numpy._core.multiarray.scalar"),
    (_SCALAR, "numpy.core.multiarray.scalar"),
    np.dtype,
    type(np.dtype(np.float32)),  # the dtype's own class, which unpickling sets the state of
    type(np.dtype(np.float64)),
]

_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL (\S+) was not an allowed global")


def read_checkpoint(path: str | Path) -> Any:
    """The object saved in ``path`` (on the CPU), loaded weights-only with nnU-Net's numpy scalars allowed."""
    try:
        with torch.serialization.safe_globals(NNUNET_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _unsafe_globals(path, error)
        if not unsafe:
            raise _unreadable(path, error) from error
        raise InputError(
            f"{path} needs {', '.join(unsafe)} to load, which could run code; it is refused (only tensors, "
            "plain Python values and numpy scalars are read). Only if you trust where it came from, load it "
            "yourself with torch.load(path, weights_only=False) and save its weights alone: "
            "torch.save({'network_weights': checkpoint['network_weights']}, 'weights.pth')"
        ) from error
    except Exception as error:  # torch raises many types for a missing, truncated or foreign file
        raise _unreadable(path, error) from error


def _unreadable(path: str | Path, error: Exception) -> InputError:
    detail = str(error).split("WeightsUnpickler error:")[-1].strip().split("\n")[0]  # torch's essential line
    return InputError(f"cannot read {path} ({type(error).__name__}: {detail}). Give a PyTorch checkpoint "
                      "(e.g. an nnU-Net fold's checkpoint_final.pth)")


def _unsafe_globals(path: str | Path, error: Exception) -> list[str]:
    """Every global the file names that is not allowed (read statically), else the one torch stopped at."""
    try:
        with torch.serialization.safe_globals(NNUNET_NUMPY_GLOBALS):
            found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 (an old-format or damaged file: fall back to torch's message)
        found = []
    return found or _GLOBAL_IN_MESSAGE.findall(str(error))
