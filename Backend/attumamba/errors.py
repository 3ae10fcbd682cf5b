"""Errors a user can act on.

Anything raised as :class:`InputError` is shown to the user as one clear message
(what was wrong, what to do) by the CLI and the HTTP service, never as a traceback.
"""


class InputError(ValueError):
    """A bad input the user can fix: a missing tag, an unreadable file, a wrong folder."""


class CancelledError(RuntimeError):
    """A long operation was stopped on request; nothing half-made was left behind."""
