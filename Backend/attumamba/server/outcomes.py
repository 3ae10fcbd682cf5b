"""How a background run (job, batch, response, sample) ends: one rule for every worker.

Done with the work's own message; cancelled; failed with the reason a user can act on (an
``InputError`` or a holdings ``Refusal``); or failed with "internal error" and the traceback in
the server log — a worker thread must survive anything the work does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import CancelledError, InputError
from .holdings import Refusal


def outcome_of(work: Callable[[], str], log: logging.Logger, what: str, *,
               cancelled: str | None = None) -> tuple[str, str]:
    """Run ``work`` (it returns the done message) and say how it ended: (state, message)."""
    try:
        return "done", work()
    except CancelledError as error:
        return "cancelled", cancelled or str(error) or "cancelled"
    except (InputError, Refusal) as error:
        return "failed", str(error)
    except Exception as error:  # noqa: BLE001 — see the module docstring
        log.exception("%s failed", what)
        return "failed", f"internal error ({type(error).__name__}); see the server log"
