"""The patient: body outline along z and the organs, as analytic solids in LPS millimetres.

z runs from mid-thigh (0) to the top of the head, x to the patient's left, y to the back.
A reference adult is scaled by height (z) and girth (x, y); organs move with the scaling.
Structures are painted in order, later ones over earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import Grid, paint
from .shapes import Cylinder, Ellipsoid, rotation_z
from .tissues import Tissue

# Body outline of the reference adult: z (mm) -> half-width a, half-depth b, centre y (mm).
OUTLINE_Z = np.array([150, 190, 330, 460, 560, 760, 800, 815, 835, 880, 900, 960, 1030, 1080])
OUTLINE_A = np.array([170, 175, 175, 160, 165, 180, 200, 120, 62, 62, 72, 78, 72, 20])
OUTLINE_B = np.array([110, 115, 118, 112, 112, 118, 115, 80, 60, 62, 90, 96, 88, 20])
OUTLINE_Y = np.array([5, 5, 5, 0, 0, 5, 10, 10, 15, 10, 0, 0, 0, 0])
HEAD_TOP = 1080.0
THIGH_TOP = 170.0


@dataclass(frozen=True)
class Patient:
    sex: str
    age_years: int
    height_scale: float
    girth_scale: float
    fat_mm: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Patient:
        return cls(
            sex=str(rng.choice(["M", "F"])),
            age_years=int(rng.integers(35, 86)),
            height_scale=float(rng.uniform(0.9, 1.08)),
            girth_scale=float(rng.uniform(0.85, 1.15)),
            fat_mm=float(rng.uniform(6.0, 28.0)),
        )

    @property
    def length_mm(self) -> float:
        return HEAD_TOP * self.height_scale

    @property
    def height_m(self) -> float:
        return round(1.72 * self.height_scale * (0.95 if self.sex == "F" else 1.0), 2)

    @property
    def weight_kg(self) -> float:
        return round(72.0 * self.height_scale * self.girth_scale**2 * (0.88 if self.sex == "F" else 1.0), 1)

    def to_json(self) -> dict:
        return {
            "sex": self.sex, "age_years": self.age_years, "height_m": self.height_m,
            "weight_kg": self.weight_kg, "girth_scale": round(self.girth_scale, 4),
            "subcutaneous_fat_mm": round(self.fat_mm, 2),
        }

    def point(self, x, y, z) -> np.ndarray:
        """Reference-adult coordinates (mm) -> this patient's."""
        return np.array([x * self.girth_scale, y * self.girth_scale, z * self.height_scale])

    def size(self, a, b, c) -> np.ndarray:
        return np.array([a * self.girth_scale, b * self.girth_scale, c * self.height_scale])

    def ellipsoid(self, centre, semi_axes, angle_deg: float = 0.0) -> Ellipsoid:
        return Ellipsoid(self.point(*centre), self.size(*semi_axes), rotation_z(np.radians(angle_deg)))


def body_outline(patient: Patient, grid: Grid, shrink_mm: float = 0.0) -> np.ndarray:
    """Boolean [z, y, x] mask of the body (or of the body shrunk by ``shrink_mm``)."""
    g, h = patient.girth_scale, patient.height_scale
    z = grid.axis(2) / h
    a = np.interp(z, OUTLINE_Z, OUTLINE_A) * g - shrink_mm
    b = np.interp(z, OUTLINE_Z, OUTLINE_B) * g - shrink_mm
    yc = np.interp(z, OUTLINE_Z, OUTLINE_Y) * g
    x = grid.axis(0)[None, None, :]
    y = grid.axis(1)[None, :, None]
    a, b, yc = (np.maximum(v, 1e-3)[:, None, None] for v in (a, b, yc))
    trunk = ((x / a) ** 2 + ((y - yc) / b) ** 2 <= 1.0) & ((z >= OUTLINE_Z[0]) & (z <= HEAD_TOP))[:, None, None]
    # thighs: two ellipses below the pelvis, merging into it
    ta, tb = 78 * g - shrink_mm, 82 * g - shrink_mm
    thigh = (((np.abs(x) - 88 * g) / ta) ** 2 + ((y - 5 * g) / tb) ** 2 <= 1.0) & (z <= THIGH_TOP)[:, None, None]
    return trunk | thigh


def organs(patient: Patient) -> list[tuple[Tissue, object]]:
    """The internal structures in painting order: (tissue, solid)."""
    p = patient
    structures: list[tuple[Tissue, object]] = [
        # head
        (Tissue.CORTICAL_BONE, p.ellipsoid((0, 0, 985), (70, 88, 78))),
        (Tissue.BRAIN, p.ellipsoid((0, 2, 990), (63, 81, 70))),
        (Tissue.LACRIMAL, p.ellipsoid((-30, -72, 975), (8, 6, 5))),
        (Tissue.LACRIMAL, p.ellipsoid((30, -72, 975), (8, 6, 5))),
        (Tissue.SALIVARY, p.ellipsoid((-55, 10, 925), (13, 20, 22))),
        (Tissue.SALIVARY, p.ellipsoid((55, 10, 925), (13, 20, 22))),
        (Tissue.SALIVARY, p.ellipsoid((-35, -30, 893), (10, 12, 10))),
        (Tissue.SALIVARY, p.ellipsoid((35, -30, 893), (10, 12, 10))),
        # thorax
        (Tissue.LUNG, p.ellipsoid((-78, 10, 690), (62, 78, 115))),
        (Tissue.LUNG, p.ellipsoid((75, 10, 695), (58, 76, 110))),
        (Tissue.HEART, p.ellipsoid((18, -22, 640), (58, 52, 58), angle_deg=-20)),
        (Tissue.BLOOD, Cylinder(*p.point(12, 35, 0)[:2], 12 * p.girth_scale, 12 * p.girth_scale, 380 * p.height_scale, 700 * p.height_scale)),
        # abdomen
        (Tissue.LIVER, p.ellipsoid((-68, 5, 535), (92, 82, 78), angle_deg=10)),
        (Tissue.SPLEEN, p.ellipsoid((88, 45, 555), (33, 24, 52), angle_deg=-30)),
        (Tissue.BOWEL, p.ellipsoid((0, -38, 380), (88, 42, 62))),
        (Tissue.KIDNEY, p.ellipsoid((-65, 58, 450), (27, 22, 55), angle_deg=20)),
        (Tissue.KIDNEY, p.ellipsoid((65, 58, 460), (27, 22, 55), angle_deg=-20)),
        (Tissue.BLADDER, p.ellipsoid((0, -30, 245), (42, 34, 32))),
    ]
    return structures


def skeleton(patient: Patient) -> list[tuple[object, float]]:
    """Bones as (solid, cortical rim in mm): painted cortical, then marrow inside the rim."""
    p = patient
    bones: list[tuple[object, float]] = []
    for k in range(26):  # vertebral bodies with 5-mm discs, sacrum to C2
        z = (160 + k * 27) * p.height_scale
        y = (62 if z < 560 * p.height_scale else 55) * p.girth_scale
        if z > 860 * p.height_scale:
            break
        bones.append((Cylinder(0.0, y, 19 * p.girth_scale, 15 * p.girth_scale, z, z + 22 * p.height_scale), 2.5))
    bones += [
        (p.ellipsoid((-98, 38, 300), (17, 52, 58), angle_deg=35), 3.0),   # iliac wings
        (p.ellipsoid((98, 38, 300), (17, 52, 58), angle_deg=-35), 3.0),
        (p.ellipsoid((0, 72, 290), (34, 17, 45)), 3.0),                    # sacrum
        (p.ellipsoid((-88, 5, 200), (23, 23, 23)), 3.0),                   # femoral heads
        (p.ellipsoid((88, 5, 200), (23, 23, 23)), 3.0),
        (Cylinder(*p.point(-88, 5, 0)[:2], 14 * p.girth_scale, 14 * p.girth_scale, -50, 185 * p.height_scale), 4.0),
        (Cylinder(*p.point(88, 5, 0)[:2], 14 * p.girth_scale, 14 * p.girth_scale, -50, 185 * p.height_scale), 4.0),
    ]
    return bones


def paint_ribs(volume: np.ndarray, patient: Patient, grid: Grid, body: np.ndarray) -> None:
    """Rib arcs: a bony ring inside the chest wall every 25 mm, open at the sternum."""
    z = grid.axis(2) / patient.height_scale
    slab = np.nonzero((z >= 585) & (z <= 790) & ((z - 585) % 25 < 8))[0]
    if slab.size == 0:
        return
    g = patient.girth_scale
    a = np.interp(z[slab], OUTLINE_Z, OUTLINE_A) * g - patient.fat_mm
    b = np.interp(z[slab], OUTLINE_Z, OUTLINE_B) * g - patient.fat_mm
    yc = np.interp(z[slab], OUTLINE_Z, OUTLINE_Y) * g
    x = grid.axis(0)[None, None, :]
    y = grid.axis(1)[None, :, None]
    a, b, yc = a[:, None, None], b[:, None, None], yc[:, None, None]
    r = np.sqrt((x / a) ** 2 + ((y - yc) / b) ** 2)
    ring = (r <= 0.97) & (r >= 0.97 - 9.0 / a) & ((np.abs(x) > 25 * g) | (y > yc))
    sub = volume[slab]
    sub[ring & body[slab]] = Tissue.CORTICAL_BONE
    volume[slab] = sub


def tissue_map(patient: Patient, grid: Grid) -> np.ndarray:
    """uint8 [z, y, x] tissue classes of ``patient`` on ``grid``."""
    body = body_outline(patient, grid)
    volume = np.where(body, np.uint8(Tissue.FAT), np.uint8(Tissue.AIR))
    volume[body_outline(patient, grid, shrink_mm=patient.fat_mm)] = Tissue.MUSCLE
    paint_ribs(volume, patient, grid, body)
    for solid, rim in skeleton(patient):
        low, high = solid.bbox()
        paint(volume, grid, solid.inside, low, high, Tissue.CORTICAL_BONE, only_where=body)
        inner = _shrunk(solid, rim)
        paint(volume, grid, inner.inside, *inner.bbox(), Tissue.MARROW, only_where=body)
    for tissue, solid in organs(patient):
        paint(volume, grid, solid.inside, *solid.bbox(), tissue, only_where=body)
    return volume


def _shrunk(solid, rim_mm: float):
    if isinstance(solid, Cylinder):
        return Cylinder(solid.cx, solid.cy, solid.a - rim_mm, solid.b - rim_mm, solid.z0, solid.z1)
    return Ellipsoid(solid.centre, np.maximum(solid.semi_axes - rim_mm, 1.0), solid.rotation)
