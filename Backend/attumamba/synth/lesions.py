"""Lesions: where they grow, their shapes, uptake and CT appearance.

Types follow what whole-body PET/CT readers see: nodal (the usual chains, some beside hot
kidneys, bladder or salivary glands), bone (spine, pelvis, femur, ribs; lytic or
sclerotic), liver (hypodense, often barely above the hot liver background) and lung.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Patient, body_outline
from .grid import Grid
from .shapes import Ellipsoid, Lobulated, random_rotation

# Reference-adult node stations (x, y, z in mm) and hot-organ neighbours for nodes.
NODE_STATIONS = {
    "cervical": [(-45, -5, 862), (45, -5, 862)],
    "supraclavicular": [(-60, 10, 812), (60, 10, 812)],
    "axillary": [(-125, 15, 745), (125, 15, 745)],
    "mediastinal": [(8, -8, 705), (-15, 10, 690)],
    "para-aortic": [(-22, 35, 430), (30, 35, 420)],
    "mesenteric": [(25, -25, 395)],
    "iliac": [(-55, 15, 290), (55, 15, 290)],
    "inguinal": [(-80, -45, 185), (80, -45, 185)],
}
# (station, organ it touches, reference point on that organ's surface, outward direction)
HOT_NEIGHBOURS = [
    ("para-renal", "kidney", (-92, 58, 450), (-1, 0, 0)),
    ("para-renal", "kidney", (92, 58, 460), (1, 0, 0)),
    ("perivesical", "bladder", (-42, -30, 245), (-1, 0, 0)),
    ("perivesical", "bladder", (42, -30, 245), (1, 0, 0)),
    ("parotid", "salivary gland", (-55, 10, 903), (0, 0, -1)),
]
DIAMETER_MM = {"nodal": (6, 30), "bone": (8, 40), "liver": (8, 60), "lung": (4, 30)}
TYPE_WEIGHTS = {"nodal": 0.45, "bone": 0.25, "liver": 0.15, "lung": 0.15}


@dataclass
class Lesion:
    id: int
    type: str
    organ: str
    shape: str
    solid: object
    suv: float
    hu: float
    touching: str | None

    @property
    def volume_ml(self) -> float:
        return self.solid.volume_mm3 / 1000.0

    def to_json(self) -> dict:
        return {
            "id": self.id, "type": self.type, "organ": self.organ, "shape": self.shape,
            **self.solid.to_json(), "volume_ml": round(self.volume_ml, 4),
            "suv": round(self.suv, 3), "ct_hu": round(self.hu, 1), "touching": self.touching,
        }


def _make_solid(centre, diameter, shape, rng) -> Ellipsoid | Lobulated:
    radius = diameter / 2.0
    if shape == "sphere":
        return Ellipsoid(centre, [radius] * 3)
    ratios = np.sort(rng.uniform(0.55, 1.0, size=3))[::-1]
    ratios[0] = 1.0
    main = Ellipsoid(centre, radius * ratios, random_rotation(rng))
    if shape == "ellipsoid":
        return main
    lobes = []
    for _ in range(int(rng.integers(2, 5))):
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        # point on the main surface along ``direction`` (in the ellipsoid's own frame)
        local = main.rotation.T @ direction
        t = 1.0 / np.sqrt(((local / main.semi_axes) ** 2).sum())
        lobes.append(Ellipsoid(main.centre + t * direction, [radius * rng.uniform(0.35, 0.6)] * 3))
    return Lobulated(main, lobes)


def _extent(solid) -> float:
    low, high = solid.bbox()
    return float(np.max(high - low) / 2.0)


def _inside_body(patient: Patient, point, margin: float) -> bool:
    probe = Grid((1, 1, 1), (1.0, 1.0, 1.0), tuple(float(v) for v in point))
    return bool(body_outline(patient, probe, shrink_mm=margin)[0, 0, 0])


def _place(kind: str, patient: Patient, rng) -> tuple[np.ndarray, str, str | None, float, np.ndarray | None]:
    """A lesion centre (mm), its organ/station, the hot organ it touches, a size cap (mm), and
    for a node beside a hot organ the outward direction from that organ's surface."""
    p = patient
    jitter = lambda s: rng.normal(0.0, s, size=3)  # noqa: E731
    if kind == "nodal":
        if rng.random() < 0.25:
            station, organ, point, outward = HOT_NEIGHBOURS[rng.integers(len(HOT_NEIGHBOURS))]
            return p.point(*point), station, organ, 22.0, np.asarray(outward, float)
        station = list(NODE_STATIONS)[rng.integers(len(NODE_STATIONS))]
        options = NODE_STATIONS[station]
        return p.point(*options[rng.integers(len(options))]) + jitter(6.0), station, None, 30.0, None
    if kind == "bone":
        site = rng.choice(["vertebra", "pelvis", "femur", "vertebra"])
        if site == "vertebra":
            z = rng.uniform(200, 840)
            return p.point(0, 62 if z < 560 else 55, z) + jitter(2.0), "vertebra", None, 30.0, None
        if site == "pelvis":
            side = rng.choice([-1, 1])
            return p.point(98 * side, 38, 300) + jitter(8.0), "ilium", None, 32.0, None
        side = rng.choice([-1, 1])
        return p.point(88 * side, 5, rng.uniform(60, 200)) + jitter(2.0), "femur", None, 24.0, None
    if kind == "liver":
        u = rng.uniform(-0.6, 0.6, size=3)
        return p.point(-68 + 92 * u[0], 5 + 82 * u[1], 535 + 78 * u[2]), "liver", None, 60.0, None
    side = rng.choice([-1, 1])
    u = rng.uniform(-0.65, 0.65, size=3)
    return p.point(76 * side + 60 * u[0], 10 + 76 * u[1], 692 + 110 * u[2]), "lung", None, 30.0, None


def sample_lesions(patient: Patient, rng: np.random.Generator, *, liver_suv: float) -> list[Lesion]:
    """0–15 non-overlapping lesions inside the body, numbered 1..K."""
    count = 0 if rng.random() < 0.1 else int(rng.integers(1, 16))
    kinds, weights = zip(*TYPE_WEIGHTS.items())
    lesions: list[Lesion] = []
    attempts = 0
    while len(lesions) < count and attempts < 40 * (count + 1):
        attempts += 1
        kind = str(rng.choice(kinds, p=weights))
        centre, organ, touching, cap, outward = _place(kind, patient, rng)
        low, high = DIAMETER_MM[kind]
        diameter = float(np.exp(rng.uniform(np.log(low), np.log(min(high, cap)))))
        shape = str(rng.choice(["sphere", "ellipsoid", "lobulated"], p=[0.35, 0.35, 0.3]))
        if outward is not None:  # sit just outside the hot organ's surface
            centre = centre + outward * (diameter / 2.0 + 1.0)
        solid = _make_solid(centre, diameter, shape, rng)
        extent = _extent(solid)
        if not _inside_body(patient, solid.centre, extent + 3.0):
            continue
        if any(np.linalg.norm(solid.centre - other.solid.centre) < extent + _extent(other.solid) + 2.0 for other in lesions):
            continue
        suv, hu = _appearance(kind, rng, liver_suv)
        lesions.append(Lesion(len(lesions) + 1, kind, organ, shape, solid, suv, hu, touching))
    return lesions


def _appearance(kind: str, rng, liver_suv: float) -> tuple[float, float]:
    """True SUV (2–30, skewed low) and CT number of a lesion."""
    suv = float(np.exp(rng.uniform(np.log(2.0), np.log(30.0))))
    if kind == "liver":  # often only modestly above the hot liver
        suv = float(min(30.0, liver_suv + rng.uniform(1.0, 8.0)))
        return suv, float(rng.uniform(20, 40))
    if kind == "bone":
        return suv, float(rng.uniform(-50, 30) if rng.random() < 0.5 else rng.uniform(600, 1200))
    if kind == "lung":
        return suv, float(rng.uniform(0, 40))
    return suv, float(rng.uniform(30, 50))
