"""Tissue classes of the phantom, their CT numbers, and their tracer uptake.

CT numbers are typical HU values; uptake ranges are typical SUVs of normal tissue for PSMA
ligands and FDG (sampled per study, so organs vary between patients like real ones do).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    AIR = 0
    FAT = 1
    MUSCLE = 2
    LUNG = 3
    CORTICAL_BONE = 4
    MARROW = 5
    BRAIN = 6
    HEART = 7
    LIVER = 8
    SPLEEN = 9
    KIDNEY = 10
    BLADDER = 11
    BOWEL = 12
    SALIVARY = 13
    LACRIMAL = 14
    BLOOD = 15


HU = {
    Tissue.AIR: -1000, Tissue.FAT: -100, Tissue.MUSCLE: 45, Tissue.LUNG: -850,
    Tissue.CORTICAL_BONE: 900, Tissue.MARROW: 250, Tissue.BRAIN: 35, Tissue.HEART: 40,
    Tissue.LIVER: 60, Tissue.SPLEEN: 50, Tissue.KIDNEY: 35, Tissue.BLADDER: 10,
    Tissue.BOWEL: 20, Tissue.SALIVARY: 30, Tissue.LACRIMAL: 40, Tissue.BLOOD: 40,
}

# (low, high) SUV of normal tissue per tracer; one value per study is drawn from each range.
UPTAKE = {
    "psma": {
        Tissue.AIR: (0, 0), Tissue.FAT: (0.2, 0.4), Tissue.MUSCLE: (0.5, 0.8), Tissue.LUNG: (0.2, 0.4),
        Tissue.CORTICAL_BONE: (0.3, 0.5), Tissue.MARROW: (0.6, 1.0), Tissue.BRAIN: (0.1, 0.3),
        Tissue.HEART: (1.2, 2.0), Tissue.LIVER: (4.0, 7.0), Tissue.SPLEEN: (5.0, 9.0),
        Tissue.KIDNEY: (25.0, 45.0), Tissue.BLADDER: (10.0, 80.0), Tissue.BOWEL: (3.0, 10.0),
        Tissue.SALIVARY: (12.0, 20.0), Tissue.LACRIMAL: (6.0, 10.0), Tissue.BLOOD: (1.2, 1.8),
    },
    "fdg": {
        Tissue.AIR: (0, 0), Tissue.FAT: (0.3, 0.5), Tissue.MUSCLE: (0.6, 0.9), Tissue.LUNG: (0.4, 0.6),
        Tissue.CORTICAL_BONE: (0.4, 0.6), Tissue.MARROW: (1.2, 2.0), Tissue.BRAIN: (7.0, 11.0),
        Tissue.HEART: (1.5, 10.0), Tissue.LIVER: (2.0, 3.0), Tissue.SPLEEN: (1.8, 2.5),
        Tissue.KIDNEY: (3.0, 8.0), Tissue.BLADDER: (10.0, 60.0), Tissue.BOWEL: (1.5, 4.0),
        Tissue.SALIVARY: (2.0, 3.0), Tissue.LACRIMAL: (1.2, 1.8), Tissue.BLOOD: (1.5, 2.0),
    },
}

# Organs whose uptake is patchy (bowel loops) get a stronger texture.
PATCHY = (Tissue.BOWEL,)


def lookup_table(values: dict, dtype=np.float32) -> np.ndarray:
    table = np.zeros(max(Tissue) + 1, dtype)
    for tissue, value in values.items():
        table[int(tissue)] = value
    return table


def sample_uptake(tracer: str, rng: np.random.Generator) -> dict[Tissue, float]:
    return {tissue: float(rng.uniform(*bounds)) for tissue, bounds in UPTAKE[tracer].items()}
