"""What every response criterion returns: the category, the rule that decided it, and its numbers.

A reader must be able to check each call by hand, so an assessment never carries a bare
category: ``rule`` says in words which condition fired, ``numbers`` holds every value the rule
compared, and ``notes`` lists what limited the assessment (an unknown organ, a reference region
that moved too much between scans).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Relative tolerance for threshold comparisons: a change of exactly -30 % computed in floating
# point (e.g. 70/100 - 1) must count as -30 %, as a reader with a calculator would count it.
EPSILON = 1e-9


@dataclass
class Assessment:
    system: str                       # "RECIST 1.1", "PERCIST 1.0", "Deauville (Lugano 2014)"
    category: str                     # e.g. "PR", "PMD", "3"
    rule: str                         # the condition that decided the category, in words
    numbers: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def percent_change(before: float, after: float) -> float | None:
    """(after − before) / before in %, None when ``before`` is 0 (no relative change is defined)."""
    if before == 0:
        return None
    return 100.0 * (after - before) / before


def at_least(value: float | None, bound: float) -> bool:
    """``value >= bound`` with the floating-point tolerance of :data:`EPSILON`."""
    return value is not None and value >= bound - EPSILON * max(1.0, abs(bound))


def more_than(value: float | None, bound: float) -> bool:
    """``value > bound`` beyond the floating-point tolerance of :data:`EPSILON`."""
    return value is not None and value > bound + EPSILON * max(1.0, abs(bound))
