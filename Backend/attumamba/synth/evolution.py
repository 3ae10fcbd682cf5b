"""How lesions change between baseline and follow-up: one response scenario per patient.

    complete    every lesion gone
    partial     every lesion shrinks to 40–60 % of its size, uptake falls to 25–45 %;
                small ones fall below detection
    stable      sizes within ±6 %, uptake within ±12 %
    growth      every lesion grows to 140–170 % of its size, uptake rises 50–90 %
    new         sizes and uptake as for stable, plus 1–3 new lesions

The ranges keep each scenario's true category clear of the criteria's thresholds (−30 %,
+20 % and 5 mm, PERCIST's 30 % and 0.8 SUL) whatever the measurement noise, so that the true
category of a pair is defined by the truth alone. A study without lesions at baseline draws
"new" or stays without lesions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .anatomy import Patient
from .lesions import Lesion, sample_lesions
from .shapes import Ellipsoid, Lobulated

SCENARIOS = ("complete", "partial", "stable", "growth", "new")
_SIZE = {"partial": (0.4, 0.6), "stable": (0.94, 1.06), "growth": (1.4, 1.7), "new": (0.94, 1.06)}
_UPTAKE = {"partial": (0.25, 0.45), "stable": (0.88, 1.12), "growth": (1.5, 1.9), "new": (0.88, 1.12)}


@dataclass
class Evolution:
    scenario: str
    follow_up: list[Lesion]            # ids: baseline id kept for a lesion that persists; new ones after
    baseline_of: dict[int, int | None]  # follow-up id -> baseline id (None: new)
    size_factor: dict[int, float]      # baseline id -> linear size factor (0: gone)
    uptake_factor: dict[int, float]    # baseline id -> SUV factor


def sample_scenario(rng: np.random.Generator, has_lesions: bool) -> str:
    if not has_lesions:
        return "new" if rng.random() < 0.5 else "stable"
    return str(rng.choice(SCENARIOS))


def evolve(lesions: list[Lesion], patient: Patient, scenario: str, rng: np.random.Generator, *,
           liver_suv: float, background_suv: float = 1.0) -> Evolution:
    """The follow-up's lesions (analytic, in the patient frame) under ``scenario``."""
    follow_up: list[Lesion] = []
    baseline_of: dict[int, int | None] = {}
    size, uptake = {}, {}
    for lesion in lesions:
        if scenario == "complete":
            size[lesion.id], uptake[lesion.id] = 0.0, 0.0
            continue
        s = float(rng.uniform(*_SIZE[scenario]))
        u = float(rng.uniform(*_UPTAKE[scenario]))
        size[lesion.id], uptake[lesion.id] = s, u
        changed = copy.deepcopy(lesion)
        changed.solid = scaled(lesion.solid, s)
        # uptake never falls below the surrounding background: a "lesion" colder than its
        # neighbourhood is not a PET lesion any more
        changed.suv = max(background_suv, lesion.suv * u)
        follow_up.append(changed)
        baseline_of[changed.id] = lesion.id
    if scenario == "new":
        wanted, added = int(rng.integers(1, 4)), 0
        taken = [l.solid for l in follow_up] + [l.solid for l in lesions]
        next_id = max([l.id for l in lesions], default=0) + 1
        for _ in range(10):                       # a draw may hold no lesion, or only overlapping ones
            for candidate in sample_lesions(patient, rng, liver_suv=liver_suv):
                if added == wanted or any(_overlaps(candidate.solid, other) for other in taken):
                    continue
                candidate.id, next_id, added = next_id, next_id + 1, added + 1
                follow_up.append(candidate)
                baseline_of[candidate.id] = None
                taken.append(candidate.solid)
            if added == wanted:
                break
    return Evolution(scenario, follow_up, baseline_of, size, uptake)


def scaled(solid, factor: float):
    """``solid`` grown or shrunk by ``factor`` about its centre (lobes move with the surface)."""
    if isinstance(solid, Ellipsoid):
        return Ellipsoid(solid.centre.copy(), solid.semi_axes * factor, solid.rotation.copy())
    main = scaled(solid.main, factor)
    lobes = [Ellipsoid(solid.main.centre + factor * (lobe.centre - solid.main.centre), lobe.semi_axes * factor,
                       lobe.rotation.copy()) for lobe in solid.lobes]
    return Lobulated(main, lobes)


def moved(solid, centre_map, rotation: np.ndarray):
    """``solid`` carried by a pose: each centre through ``centre_map``, orientations rotated."""
    if isinstance(solid, Ellipsoid):
        return Ellipsoid(centre_map(solid.centre), solid.semi_axes.copy(), rotation @ solid.rotation)
    return Lobulated(moved(solid.main, centre_map, rotation), [moved(lobe, centre_map, rotation) for lobe in solid.lobes])


def _overlaps(a, b, margin_mm: float = 3.0) -> bool:
    low_a, high_a = a.bbox()
    low_b, high_b = b.bbox()
    return bool(np.all(low_a - margin_mm <= high_b) and np.all(low_b - margin_mm <= high_a))
